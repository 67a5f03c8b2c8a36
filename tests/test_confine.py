"""The OS sandbox, layer by layer: small child programs started through ``wrap`` that call
``restrict_self`` first, each trying one thing the candidate's process must not do.

Each layer is tested alone and together, so one that silently does nothing fails here
even while the other still holds.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from avo_harness.judge import confine
from avo_harness.judge.confine import Confinement, allowed_executables, detect, wrap

ROOT = Path(__file__).resolve().parents[1]
# The child loads confine.py by path: nothing else of the harness, so it starts fast.
PRELUDE = f"""
import errno, importlib.util, json, os, shutil, socket, subprocess, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("confine", {confine.__file__!r})
confine = sys.modules["confine"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(confine)
confine.restrict_self(confine.{{conf!r}}, scratch=Path({{scratch!r}}), cuda={{cuda!r}},
                      profiler_ports={{ports!r}})

def attempt(action, *args):
    try:
        action(*args)
        return "done"
    except OSError as exc:
        return errno.errorcode[exc.errno]
"""
NONE = Confinement(None, 0, None)


def layers(name: str) -> Confinement:
    """This machine's layers, ``name`` alone ("bwrap", "landlock") or both; else skip."""
    found = detect()
    want_bwrap, want_landlock = "bwrap" in name, "landlock" in name
    if (want_bwrap and not found.bwrap) or (want_landlock and not found.landlock_abi):
        pytest.skip(f"needs {name}: {found.reason}")
    return Confinement(found.bwrap if want_bwrap else None,
                       found.landlock_abi if want_landlock else 0, None)


def run_child(conf: Confinement, scratch: Path, body: str, *, cuda: bool = False,
              pass_fds: tuple[int, ...] = (), ports: tuple[int, ...] = (),
              parent: tuple[str, ...] = ()) -> Any:
    """Run ``body`` confined in a child (started by ``parent`` inside the sandbox, as a
    profiler starts it, with ``ports`` opened); it prints one JSON value, returned."""
    code = (PRELUDE.format(conf=conf, scratch=str(scratch), cuda=cuda, ports=ports)
            + textwrap.dedent(body))
    argv = wrap([*parent, sys.executable, "-c", code], conf, scratch=scratch, cuda=cuda)
    done = subprocess.run(argv, pass_fds=pass_fds, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture
def redetect() -> Iterator[None]:
    """A fresh probe under the test's environment, and again for whoever comes after."""
    detect.cache_clear()
    yield
    detect.cache_clear()


@pytest.mark.parametrize("name", ["bwrap", "landlock", "bwrap+landlock"])
def test_writes_stay_in_scratch(name: str, scratch: Path, tmp_path: Path) -> None:
    conf = layers(name)
    (tmp_path / "sibling").mkdir()
    tag = uuid.uuid4().hex
    targets = {"scratch": scratch / "mine", "sibling": tmp_path / "sibling" / "x",
               "repo": ROOT / "tests" / f".confine-{tag}", "tmp": Path("/tmp") / f"avo-{tag}",
               "devnull": Path("/dev/null")}
    try:
        got = run_child(conf, scratch, f"""
            paths = {{k: Path(v) for k, v in {({k: str(v) for k, v in targets.items()})!r}.items()}}
            print(json.dumps({{k: attempt(p.write_text, "x") for k, p in paths.items()}}))
        """)
        leaked = [k for k in ("sibling", "repo", "tmp") if targets[k].exists()]
    finally:
        for key in ("repo", "tmp"):
            targets[key].unlink(missing_ok=True)
    assert got["scratch"] == got["devnull"] == "done" and (scratch / "mine").read_text() == "x"
    assert got["repo"] in {"EROFS", "EACCES"}
    # bwrap: /tmp is a private tmpfs, holding only the way to the scratch folder.
    assert got["sibling"] == ("ENOENT" if conf.bwrap else "EACCES")
    assert got["tmp"] == ("done" if conf.bwrap else "EACCES")
    assert leaked == []


@pytest.mark.parametrize("name", ["landlock", "bwrap+landlock"])
def test_only_compilers_and_the_interpreter_execute(name: str, scratch: Path) -> None:
    got = run_child(layers(name), scratch, """
        def run(*cmd):
            subprocess.run(cmd, check=True, capture_output=True)
        shells = [p for p in ("/bin/sh", shutil.which("bash"), shutil.which("dash")) if p]
        print(json.dumps({"shells": [attempt(run, p, "-c", "true") for p in shells],
                          "cc": attempt(run, "cc", "--version"),
                          "python": attempt(run, sys.executable, "-c", "pass")}))
    """)
    assert got == {"shells": ["EACCES"] * len(got["shells"]), "cc": "done", "python": "done"}
    assert got["shells"]


def test_no_shell_among_the_allowed_executables() -> None:
    allowed = allowed_executables(cuda=True)
    assert os.path.realpath(sys.executable) in allowed
    for shell in filter(None, ("/bin/sh", shutil.which("bash"), shutil.which("dash"))):
        real = os.path.realpath(shell)
        assert not any(real == a or real.startswith(a + os.sep) for a in allowed), real


@pytest.mark.parametrize("name", ["none", "bwrap", "landlock", "bwrap+landlock"])
def test_no_network(name: str, scratch: Path) -> None:
    conf = NONE if name == "none" else layers(name)
    if name == "landlock" and conf.landlock_abi < 4:
        pytest.skip(f"Landlock ABI {conf.landlock_abi} has no network rules (needs 4)")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        got = run_child(conf, scratch, f"""
            print(json.dumps(attempt(socket.create_connection, ("127.0.0.1", {port}), 5)))
        """)
    # The unconfined control reaches the listener: the others fail for their own reason.
    assert got == {"none": "done", "bwrap": "ECONNREFUSED"}.get(name, "EACCES")


#: A profiler's stand-in: it listens where Nsight Compute would (a TCP port, an abstract
#: Unix socket) and on one more port, then starts the child inside the same sandbox.
PROFILER = """
import os, socket, subprocess, sys
ours = socket.create_server(("127.0.0.1", 49152))
other = socket.create_server(("127.0.0.1", 0))
unix = socket.socket(socket.AF_UNIX)
unix.bind("\\0avo-profiler")
unix.listen()
env = {**os.environ, "OTHER_PORT": str(other.getsockname()[1])}
sys.exit(subprocess.run(sys.argv[1:], env=env).returncode)
"""


@pytest.mark.parametrize("opened", [False, True])
def test_a_profiler_inside_the_sandbox_reaches_only_its_ports(opened: bool,
                                                               scratch: Path) -> None:
    conf = layers("bwrap+landlock")
    if conf.landlock_abi < 6:
        pytest.skip(f"Landlock ABI {conf.landlock_abi} has no scopes (needs 6)")
    got = run_child(conf, scratch, """
        def unix():
            socket.socket(socket.AF_UNIX).connect("\\0avo-profiler")
        print(json.dumps({
            "ours": attempt(socket.create_connection, ("127.0.0.1", 49152), 5),
            "other": attempt(socket.create_connection,
                             ("127.0.0.1", int(os.environ["OTHER_PORT"])), 5),
            "unix": attempt(unix)}))
    """, ports=(49152,) if opened else (), parent=(sys.executable, "-c", PROFILER))
    # Opened: the profiler's port and its socket, and still no other port.
    assert got == ({"ours": "done", "other": "EACCES", "unix": "done"} if opened
                   else {"ours": "EACCES", "other": "EACCES", "unix": "EPERM"})


def test_pid_namespace_hides_the_parent(scratch: Path) -> None:
    got = run_child(layers("bwrap"), scratch, """
        print(json.dumps({"ppid": os.getppid(), "ns": os.readlink("/proc/self/ns/pid"),
                          "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
    """)
    assert got["ns"] != os.readlink("/proc/self/ns/pid")
    assert os.getpid() not in got["pids"] and got["ppid"] != os.getpid()
    assert len(got["pids"]) <= 3  # bwrap's init, the child, and nothing else


@pytest.mark.parametrize("name", ["none", "landlock"])
def test_no_signals_out_of_the_sandbox(name: str, scratch: Path) -> None:
    conf = NONE if name == "none" else layers(name)
    if name == "landlock" and conf.landlock_abi < 6:
        pytest.skip(f"Landlock ABI {conf.landlock_abi} has no signal scope (needs 6)")
    got = run_child(conf, scratch, """
        print(json.dumps(attempt(os.kill, os.getppid(), 0)))
    """)
    assert got == ("done" if name == "none" else "EPERM")


@pytest.mark.parametrize("name", ["bwrap", "bwrap+landlock"])
def test_a_passed_descriptor_works_inside(name: str, scratch: Path) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(b"ping")
        got = run_child(layers(name), scratch, f"""
            os.write({theirs.fileno()}, os.read({theirs.fileno()}, 4).upper())
            print(json.dumps("sent"))
        """, pass_fds=(theirs.fileno(),))
        assert got == "sent" and ours.recv(4) == b"PING"


@pytest.mark.parametrize("cuda", [False, True])
def test_dev_shm_is_the_hosts_only_on_cuda(cuda: bool, scratch: Path) -> None:
    """Off CPU, torch's CUDA IPC counters live in /dev/shm and the parent must see them."""
    name = Path("/dev/shm") / f"avo-{uuid.uuid4().hex}"
    try:
        got = run_child(layers("bwrap+landlock"), scratch, f"""
            print(json.dumps(attempt(Path({str(name)!r}).write_text, "x")))
        """, cuda=cuda)
        assert got == "done" and name.exists() == cuda
    finally:
        name.unlink(missing_ok=True)


def test_torch_imports_and_shares_memory_inside(scratch: Path) -> None:
    got = run_child(layers("bwrap+landlock"), scratch, """
        import torch
        print(json.dumps(float(torch.ones(3).share_memory_().sum())))
    """)
    assert got == 3.0


def test_off_switch(monkeypatch: pytest.MonkeyPatch, redetect: None) -> None:
    monkeypatch.setenv("AVO_SANDBOX", "off")
    found = detect()
    assert found == Confinement(None, 0, "AVO_SANDBOX=off")
    assert found.label == "in-process only"


def test_missing_bwrap_is_named(monkeypatch: pytest.MonkeyPatch, redetect: None,
                                tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bwrap"
    monkeypatch.setenv("AVO_BWRAP", str(missing))
    found = detect()
    assert found.bwrap is None
    assert found.reason is not None and f"AVO_BWRAP={missing} does not exist" in found.reason
    assert found.label == ("landlock" if found.landlock_abi else "in-process only")


def test_labels_and_passthrough(scratch: Path) -> None:
    assert [Confinement(b, abi, None).label for b, abi in
            [("/b", 7), ("/b", 0), (None, 7), (None, 0)]] == [
        "bwrap+landlock", "bwrap", "landlock", "in-process only"]
    argv = [sys.executable, "-c", "pass"]
    assert wrap(argv, Confinement(None, 7, None), scratch=scratch, cuda=True) == argv
