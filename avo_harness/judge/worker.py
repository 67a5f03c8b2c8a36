"""The child: import one candidate, call it on the arena's tensors, say what it returned.

Started by the parent (``sandbox``) as ``python -m avo_harness.judge.worker CONFIG``
inside the OS sandbox (``confine``); it restricts itself further (Landlock), locks
down its interpreter (``lockdown``) and only then imports the candidate. It does
none of the judge's work: the parent writes the inputs into the arena before each
request, owns the schedule and the clock, and verifies the output slot. The child
copies the candidate's output into that slot and answers in JSON, so nothing it
sends is ever unpickled. Everything it says about itself (device time, the shape
of what it returned, a violation) is cross-checked or can only hurt it.

Answers: ``ready``; to a call ``ok`` (with a description of the output when it does
not fit the slot, and the device seconds on a GPU) as soon as the output is in the
slot, then, outside the parent's clock, ``clean`` or ``violated`` once the checks of
the process ran; ``raised`` or ``violated`` instead of ``ok`` when the call failed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

#: Longest message the parent sends (descriptors, and a CUDA IPC handle).
_MAX_REQUEST = 1 << 20


def main(config: dict[str, Any]) -> None:
    conn = Connection(config["socket"])
    cuda = config["cuda"]
    if not cuda and config["memory_limit_bytes"]:
        import resource

        limit = config["memory_limit_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from pathlib import Path

    from . import confine

    # The parent's layers: bwrap's private /tmp is writable, as a candidate's temporaries are.
    confine.restrict_self(confine.Confinement(config["bwrap"], config["landlock_abi"], None),
                          scratch=Path(config["scratch"]), cuda=cuda,
                          profiler_ports=config.get("profiler_ports", ()))
    import torch
    import torch.multiprocessing  # noqa: F401  (rebuilds the CUDA arena the parent shares)

    _import_early()

    from ..tasks import get_task
    from .arena import ChildArena, Place
    from .lockdown import Lockdown

    task = get_task(config["task"])
    if cuda:
        torch.cuda.init()  # lazily initialised state would otherwise change under the snapshot
        if config["candidate"]:
            _count_compile_time()
            if config.get("compile_socket") is not None:
                from .compile_client import install

                install(Connection(config["compile_socket"]))
    else:
        from .interpreter import mend

        mend()
    arena = ChildArena(config.get("memfd"))
    _send(conn, {"status": "booted"})  # what fails after this is the candidate's
    lockdown = Lockdown(config["candidate"] or __file__, config["protected"], cuda=cuda)
    try:
        lockdown.install(task.forbidden, task.forbidden_ops, task.silenced)
        fn = _load(config["candidate"], task.entry) if config["candidate"] else _null
        caught = lockdown.check()
    except BaseException as exc:  # the candidate's import may raise anything, SystemExit too
        caught = lockdown.check()
        _send(conn, _violated(caught) if caught else _raised(exc))
        return
    if caught:
        _send(conn, _violated(caught))
        return
    _send(conn, {"status": "ready", "pid": os.getpid()})
    while True:
        try:
            kind, payload = pickle.loads(conn.recv_bytes(_MAX_REQUEST))
        except EOFError:
            return
        if kind == "exit":
            return
        if kind == "map":
            arena.map(payload)
            _send(conn, {"status": "ok"})
            continue
        try:
            args = [arena.tensor(Place(*a)) if tag == "tensor" else a
                    for tag, a in payload["args"]]
            slot = arena.tensor(Place(*payload["out"]))
            answer, out = _call(fn, args, payload["kwargs"], slot, cuda)
        except BaseException as exc:
            caught = lockdown.check()
            _send(conn, _violated(caught) if caught else _raised(exc))
            continue
        _send(conn, answer)
        # Outside the parent's clock: the checks, and poison for the next call's output.
        deferred = answer["output"] is None and not _same_bits(out, slot)
        caught = lockdown.check() or _aliased(out, arena) or (
            ("deferred-write", "the output changed after the call returned (work still "
             "running on another stream, in a thread, or deferred)") if deferred else None)
        if cuda and not caught:
            _poison_allocator(slot)
        _send(conn, _violated(caught) if caught else {"status": "clean"})
        del payload, args, out


def _call(fn: Any, args: list[Any], kwargs: dict[str, Any], slot: Any, cuda: bool
          ) -> tuple[dict[str, Any], Any]:
    """Call the candidate once; copy what it returned into ``slot`` if it fits there. The copy
    is queued right at return: work still running elsewhere then shows as a difference."""
    import torch

    from .lockdown import active_modes

    if fn is _null:
        _NULL_OUT[0] = torch.empty_like(slot)
    if cuda:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
    out = fn(*args, **kwargs)
    if cuda:
        end.record()
    modes = active_modes()
    if modes:
        raise _ModeLeft(modes)
    described = _describe(out, slot)
    if described is None:
        slot.copy_(out)
    if cuda:
        torch.cuda.synchronize()
    return {"status": "ok", "output": described,
            "device_s": begin.elapsed_time(end) / 1e3 if cuda else None,
            "compile_s": _take_compiled()}, out


#: Seconds Triton spent compiling since the last call answered (the listener adds to it).
_COMPILED = [0.0]


def _take_compiled() -> float:
    seconds, _COMPILED[0] = _COMPILED[0], 0.0
    return seconds


def _count_compile_time() -> None:
    """Count what Triton's compiler spends, so the parent can tell compiling from running.
    The figure is the child's word: the report shows it, no verdict uses it."""
    try:
        import triton
    except ImportError:
        return

    def listener(*, times: Any = None, cache_hit: bool = False, **_: Any) -> None:
        if cache_hit or times is None:
            return
        micros = getattr(times, "ir_initialization", 0) + getattr(times, "store_results", 0) \
            + sum(d for _, d in getattr(times, "lowering_stages", ()))
        _COMPILED[0] += micros / 1e6

    try:
        triton.knobs.compilation.listener = listener
    except AttributeError:  # a Triton without the listener: compile time counts as running
        pass


def _null(*args: Any, **kwargs: Any) -> Any:
    """The harness's own stand-in for a candidate (``sandbox.calibration_box``): it returns a
    new tensor of the output's shape at once, so that the parent can measure what a round
    costs beside the call itself."""
    return _NULL_OUT[0]


_NULL_OUT: list[Any] = [None]


class _ModeLeft(Exception):
    """A torch function or dispatch mode outlived the call: it sees the harness's work."""


def _describe(out: Any, slot: Any) -> dict[str, str] | None:
    """None if ``out`` is a plain strided tensor of the slot's shape, dtype and device; else
    what it is instead (the parent names the rule)."""
    import torch

    if type(out) is not torch.Tensor:
        return {"type": f"{type(out).__module__}.{type(out).__qualname__}"}
    if out.layout != torch.strided:
        return {"layout": str(out.layout)}
    for what, got, want in (("shape", tuple(out.shape), tuple(slot.shape)),
                            ("dtype", out.dtype, slot.dtype), ("device", out.device, slot.device)):
        if got != want:
            return {what: str(got)}
    return None


def _aliased(out: Any, arena: Any) -> tuple[str, str] | None:
    """The contract asks for a new tensor: a view of an input (``v.expand(...)`` where that
    happens to be right) would change when the caller writes the input."""
    import torch

    if type(out) is not torch.Tensor or out.layout != torch.strided or arena.base is None:
        return None
    if out.untyped_storage().data_ptr() == arena.base.untyped_storage().data_ptr():
        return ("output-aliases-input", "the output shares memory with an input; return a "
                "new tensor")
    return None


def _poison_allocator(like: Any) -> None:
    """Leave NaN in the caching allocator's free blocks, so ``torch.empty`` output that
    the candidate never writes reads as NaN, not as an earlier (correct) result."""
    import torch

    if like.is_floating_point():
        torch.full((2 * like.numel(),), float("nan"), dtype=like.dtype, device=like.device)


def _same_bits(a: Any, b: Any) -> bool:
    from .checker import same_bits

    return same_bits(a, b)


def _load(path: str, entry: str) -> Any:
    # Helpers import as they would for a script run from the project: beside the candidate
    # (``_common``) or from the folder that holds ``candidates/`` (``candidates.x._common``).
    # Appended, so they cannot shadow a module of the standard library or torch.
    # By its absolute path, as its helpers' are: the compile server names both by it.
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    sys.path += [folder, os.path.dirname(os.path.dirname(folder))]
    spec = importlib.util.spec_from_file_location(f"avo_candidate_{os.getpid()}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, entry, None)
    if not callable(fn):
        raise AttributeError(f"{path} defines no function {entry!r}")
    return fn


#: Libraries that add an audit hook of their own when first imported, which the lockdown
#: refuses whoever asks: filelock (torch.compile's caches take its locks) does from 3.30 on
#: Python 3.12 and later. Imported before the lockdown, an honest candidate's use finds them.
_EARLY_IMPORTS = ("filelock",)


def _import_early() -> None:
    for name in _EARLY_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(_ENCODE(message).encode())


# Bound before any candidate code runs: json's shared default encoder is the candidate's to
# rebind (the lockdown's snapshot watches json too).
_ENCODE = json.JSONEncoder().encode


def _violated(caught: tuple[str, str]) -> dict[str, Any]:
    return {"status": "violated", "rule": caught[0], "message": caught[1]}


def _raised(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, _ModeLeft):
        return {"status": "violated", "rule": "tampering", "message": "the candidate left "
                f"{exc} active after its call (it would see the harness's own tensor work)"}
    return {"status": "raised", "type": type(exc).__qualname__, "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(exc))[-8000:]}


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
