"""The child's side of the trusted compile path (``compile_server``).

Installed in a candidate's process on a GPU before the candidate is imported: Triton's
CUDA backend then runs a kernel's first stage itself (``ttir``, or ``ttgir`` for Gluon)
and asks the server for the rest, which it writes into its own Triton cache as if it had
compiled them; Triton loads the kernel from there as usual. A kernel whose options the
server does not take, or an answer that is an error, compiles here, as without a server,
so a kernel compiles to the same thing either way (the same IR, the same options).

Nothing here is trusted by the parent: a candidate that undoes it only compiles its own
kernels, slower; what it sends the server is hostile input there.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .compile_server import FORWARDED, binary

#: The largest answer read (the server's limit, and its JSON around it).
_MAX_ANSWER = 192 << 20


class Client:
    """Requests to the server over one connection, one at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._gone = False

    def ask(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The server's answer, or None once it is gone (the kernel then compiles here)."""
        with self._lock:
            if self._gone:
                return None
            try:
                self._conn.send_bytes(json.dumps(request).encode())
                answer = json.loads(self._conn.recv_bytes(_MAX_ANSWER))
            except (EOFError, OSError, ValueError):
                self._gone = True
                return None
        return answer if isinstance(answer, dict) and "asm" in answer else None


def install(conn: Connection) -> Callable[[], None]:
    """Route the CUDA backend's later stages through the server; returns the undo."""
    try:
        from triton.backends.nvidia.compiler import CUDABackend
    except ImportError:  # no Triton, or one without the CUDA backend: nothing to route
        return lambda: None

    client = Client(conn)
    original = CUDABackend.add_stages

    def add_stages(self: Any, stages: dict[str, Any], options: Any, language: Any) -> None:
        original(self, stages, options, language)
        remote_stages(stages, self, options, client)

    CUDABackend.add_stages = add_stages  # type: ignore[method-assign]

    def undo() -> None:
        CUDABackend.add_stages = original  # type: ignore[method-assign]

    return undo


def remote_stages(stages: dict[str, Any], backend: Any, options: Any, client: Client) -> None:
    """Replace every stage after the first by the server's answer for the first's output."""
    names = list(stages)
    if len(names) < 2 or not forwardable(backend, options):
        return
    first, rest = names[0], names[1:]
    local = dict(stages)
    answer: dict[str, Any] = {}

    def stage(ext: str) -> Callable[[Any, dict[str, Any]], Any]:
        def run(src: Any, metadata: dict[str, Any]) -> Any:
            if ext == rest[0]:
                target = backend.target
                got = client.ask({"ext": first, "ir": str(src),
                                  "target": [target.backend, target.arch, target.warp_size],
                                  "options": {k: _wire(getattr(options, k)) for k in FORWARDED
                                              if hasattr(options, k)}})
                if got is not None and all(e in got["asm"] for e in rest):
                    answer.update(got)
                    metadata.update({k: v for k, v in got["metadata"].items()
                                     if k not in ("hash", "target")})
            if not answer:
                return local[ext](src, metadata)
            return binary(answer, ext)
        return run

    for ext in rest:
        stages[ext] = stage(ext)


def forwardable(backend: Any, options: Any) -> bool:
    """Whether the server compiles with exactly these options: those it takes give them."""
    try:
        taken = {k: getattr(options, k) for k in FORWARDED if hasattr(options, k)}
        return vars(backend.parse_options(taken)) == vars(options)
    except Exception:  # an option Triton's own parse refuses: the kernel compiles here
        return False


def _wire(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
