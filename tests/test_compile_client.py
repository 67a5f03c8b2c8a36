"""In a candidate's process, Triton's CUDA backend compiles through the server and gets the
very kernel it would have compiled itself; whatever the server cannot do compiles here."""
from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from avo_harness.judge import compile_client
from avo_harness.judge.compile_server import CompileServer
from sm90_kernel import compile_here

BLOCK = 256


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The kernel compiled here, without a server."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "plain"))
    return compile_here(BLOCK)


class Served:
    """A compile server on a thread, and this process's backend routed to it."""

    def __init__(self, server: CompileServer) -> None:
        self.server = server
        self.counts: Counter[str] = Counter()
        self._ours, theirs = socket.socketpair()
        threading.Thread(target=server.serve, daemon=True, args=(
            Connection(os.dup(self._ours.fileno())), self.counts)).start()
        self.undo = compile_client.install(Connection(theirs.detach()))

    def hang_up(self) -> None:
        """The server's end goes away, as when its process ends."""
        self._ours.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def served(plain: Any, tmp_path: Path) -> Iterator[Served]:
    served = Served(CompileServer(tmp_path / "cache", jobs=2))
    try:
        yield served
    finally:
        served.undo()


def in_a_new_process(monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
    """What a new candidate process has: a Triton cache of its own, empty."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(where))


def test_a_kernel_compiles_through_the_server_to_what_it_compiles_to_here(
        plain: Any, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_a_new_process(monkeypatch, tmp_path / "first")
    first = compile_here(BLOCK)
    assert first.asm["cubin"] == plain.asm["cubin"] and first.asm["ttgir"] == plain.asm["ttgir"]
    assert first.metadata.name == plain.metadata.name == "_add"
    assert first.metadata.shared == plain.metadata.shared
    assert served.counts == Counter(compiles=1)
    # Another candidate's process is answered from the server's cache.
    in_a_new_process(monkeypatch, tmp_path / "second")
    assert compile_here(BLOCK).asm["cubin"] == plain.asm["cubin"]
    assert served.counts == Counter(compiles=1, hits=1)
    # The same process finds it in its own Triton cache: no request at all.
    compile_here(BLOCK)
    assert served.counts == Counter(compiles=1, hits=1)


def test_options_the_server_does_not_take_compile_here(
        served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_a_new_process(monkeypatch, tmp_path / "own")
    kernel = compile_here(BLOCK, ptx_options="--allow-expensive-optimizations=true")
    assert kernel.asm["cubin"] and kernel.metadata.ptx_options.startswith("--allow")
    assert served.counts == Counter()


def test_a_compile_the_server_fails_compiles_here(
        plain: Any, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served.server, "_run", lambda request: {"error": "out of disk"})
    in_a_new_process(monkeypatch, tmp_path / "own")
    assert compile_here(BLOCK).asm["cubin"] == plain.asm["cubin"]
    assert served.counts == Counter(failures=1)


def test_with_the_server_gone_kernels_compile_here(
        plain: Any, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served.hang_up()
    in_a_new_process(monkeypatch, tmp_path / "own")
    assert compile_here(BLOCK).asm["cubin"] == plain.asm["cubin"]
    in_a_new_process(monkeypatch, tmp_path / "again")
    assert compile_here(BLOCK).asm["cubin"] == plain.asm["cubin"]
    assert served.counts == Counter()


def test_undo_gives_back_the_backend_s_own_stages(plain: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served(CompileServer(tmp_path / "cache"))
    served.undo()
    in_a_new_process(monkeypatch, tmp_path / "own")
    assert compile_here(BLOCK).asm["cubin"] == plain.asm["cubin"]
    assert served.counts == Counter()
