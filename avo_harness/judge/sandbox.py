"""The parent side of the sandbox: the one place that runs a candidate.

The candidate lives in a spawned child (see ``_worker``); the parent sends it
inputs, waits with a time limit, and reads back only plain tensors through a
restricted unpickler, so nothing the child sends can run code here. A crash, a
hang or an exhausted memory limit becomes a :class:`CandidateFault`, and the next
request starts a fresh child.
"""
from __future__ import annotations

import io
import multiprocessing
import pickle
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tasks import Call
from .timer import Rounds

# What the child may send back: torch's shared-memory / CUDA IPC tensor rebuilders
# and the plain types they take. A tensor subclass or any other class is refused.
_ALLOWED = {
    ("torch", "Size"), ("torch", "Tensor"), ("torch", "device"),
    ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
    ("torch.multiprocessing.reductions", "rebuild_tensor"),
    ("torch.multiprocessing.reductions", "rebuild_cuda_tensor"),
    ("torch.multiprocessing.reductions", "rebuild_storage_fd"),
    ("torch.multiprocessing.reductions", "rebuild_storage_filename"),
    ("torch.multiprocessing.reductions", "rebuild_typed_storage"),
    ("torch.multiprocessing.reductions", "rebuild_typed_storage_child"),
    ("torch.multiprocessing.reductions", "rebuild_storage_empty"),
    ("multiprocessing.resource_sharer", "DupFd"),
}
_DTYPES = {"float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "bool", "float8_e4m3fn", "float8_e5m2", "complex64", "complex128"}


class CandidateFault(Exception):
    """The candidate raised, crashed, hung, or sent something it may not."""

    def __init__(self, kind: str, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.traceback = traceback


@dataclass(frozen=True)
class SandboxSettings:
    cuda: bool
    timeout_s: float
    memory_limit_bytes: int
    #: Paths the candidate's process may not write to (the project, the store, the report).
    protected: tuple[str, ...] = ()


class Sandbox:
    """One candidate in one child process, started on first use."""

    def __init__(self, path: Path, task_name: str, settings: SandboxSettings) -> None:
        self.path = path
        self.task_name = task_name
        self.settings = settings
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None

    def start(self) -> None:
        """Import the candidate now unless its process is up: an import that fails is the
        candidate's fault whatever the input, so callers can report it without one."""
        if self._proc is None or not self._proc.is_alive():
            self._start()

    def call(self, call: Call) -> tuple[Any, Any]:
        """The candidate's output on ``call`` after synchronizing, and a copy taken at return."""
        return self._request("call", (call.args, call.kwargs))

    def time(self, rounds: Rounds) -> tuple[list[float], list[float], dict[int, Any], int]:
        """Device and host seconds per timed round, the kept outputs, and rounds executed."""
        return self._request("time", dict(vars(rounds)))

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._conn.send(("exit", None))
            self._proc.join(timeout=5)
        except (OSError, BrokenPipeError):
            pass
        self._kill()

    def _start(self) -> None:
        import torch.multiprocessing  # noqa: F401  (registers the tensor-sharing reducers)

        from . import worker as _worker

        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_worker.serve, daemon=True, name=f"avo-candidate:{self.path.name}",
            args=(child_conn, str(self.path), self.task_name, self.settings.cuda,
                  self.settings.memory_limit_bytes, list(self.settings.protected)))
        self._proc.start()
        child_conn.close()
        kind, payload = self._receive(self.settings.timeout_s, "import")
        if kind == "violated":
            self._kill()
            raise CandidateFault(payload[0], f"while importing: {payload[1]}")
        if kind != "ready":
            self._kill()
            raise CandidateFault("import", f"importing the candidate raised {payload['type']}: "
                                 f"{payload['message']}", payload["traceback"])

    def _request(self, kind: str, payload: Any) -> Any:
        self.start()
        try:
            self._conn.send((kind, payload))
        except (OSError, BrokenPipeError):
            self._fault_from_exit("call")
        status, payload = self._receive(self.settings.timeout_s, kind)
        if status == "violated":
            # The process may be in any state now: never reuse it.
            self._kill()
            raise CandidateFault(payload[0], payload[1])
        if status == "raised":
            raise CandidateFault("raised", f"the candidate raised {payload['type']}: "
                                 f"{payload['message']}", payload["traceback"])
        return payload

    def _receive(self, timeout_s: float, doing: str) -> tuple[str, Any]:
        assert self._proc is not None
        if not self._conn.poll(timeout_s):
            self._kill()
            raise CandidateFault("timeout", f"timed out: no answer to {doing!r} within "
                                 f"{timeout_s:g} s; the candidate was killed")
        try:
            data = self._conn.recv_bytes()
        except (EOFError, OSError):
            self._fault_from_exit(doing)
        try:
            return _RestrictedUnpickler(io.BytesIO(data)).load()
        except pickle.UnpicklingError as exc:
            self._kill()
            raise CandidateFault("protocol", f"the candidate's process sent a forbidden object: "
                                 f"{exc}") from None

    def _fault_from_exit(self, doing: str) -> None:
        assert self._proc is not None
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        self._kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            why = f"exited with status {code}"
        raise CandidateFault("crash", f"the candidate's process died during {doing!r}: {why}")

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = None
        self._conn = None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module == "torch" and name in _DTYPES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")
