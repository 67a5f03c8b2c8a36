"""The child side of the sandbox: load one candidate and serve calls from the parent.

Runs in its own process so that a candidate that crashes, hangs or eats memory
takes only this process down. The process is locked down (``lockdown``) before
the candidate is imported. Everything it receives and sends goes over one pipe;
tensors travel as shared memory (CPU) or CUDA IPC handles, so the parent sees
exactly what the candidate wrote, its inputs included.

Answers: ``("ready", info)``, ``("ok", payload)``, ``("raised", exception)`` or
``("violated", (rule, message))`` when the lockdown caught something, which
overrides whatever the request produced.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection, path: str, task_name: str, cuda: bool,
          memory_limit_bytes: int, protected: list[str]) -> None:
    """Entry point of the child process."""
    if not cuda:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton can be imported
        if memory_limit_bytes:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    import torch
    import torch.multiprocessing  # noqa: F401  (registers the tensor-sharing reducers)

    from .lockdown import Lockdown
    from ..tasks import get_task
    from .timer import GPU_PLAN, INTERPRETER_PLAN, Rounds, run_rounds

    task = get_task(task_name)
    if cuda:
        torch.cuda.init()  # lazily initialised state would otherwise change under the snapshot
    else:
        from .interpreter import mend

        mend()
    lockdown = Lockdown(path, protected)
    try:
        lockdown.install(task.forbidden, task.forbidden_ops)
        fn = _load(path, task.entry)
    except BaseException as exc:  # the candidate's import may raise anything, SystemExit too
        caught = lockdown.check()
        conn.send(("violated", caught) if caught else ("raised", _describe(exc)))
        return
    caught = lockdown.check()
    if caught:
        conn.send(("violated", caught))
        return
    conn.send(("ready", {"pid": os.getpid()}))
    plan = GPU_PLAN if cuda else INTERPRETER_PLAN
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        kind, payload = request
        if kind == "exit":
            return
        try:
            if kind == "call":
                args, kwargs = payload
                if cuda:
                    _poison_allocator(args)
                out = fn(*args, **kwargs)
                # Snapshot at return, then again once every stream and thread had time to
                # finish: the parent compares the two, so late writes cannot hide.
                checked = _checked(out)
                early = checked.clone() if isinstance(checked, torch.Tensor) else None
                if cuda:
                    torch.cuda.synchronize()
                else:
                    time.sleep(0.02)
                answer: Any = (checked, early)
                caught = lockdown.check() or _aliased(out, args)
            else:  # "time"
                run = run_rounds(fn, Rounds(**payload), cuda=cuda, plan=plan)
                answer = (run.times, run.host_times,
                          {i: _checked(o) for i, o in run.kept.items()}, run.executed)
                caught = lockdown.check()
            conn.send(("violated", caught) if caught else ("ok", answer))
        except BaseException as exc:
            caught = lockdown.check()
            conn.send(("violated", caught) if caught else ("raised", _describe(exc)))
        del request, payload


def _load(path: str, entry: str) -> Any:
    # Helpers import as they would for a script run from the project: beside the candidate
    # (``_common``) or from the folder that holds ``candidates/`` (``candidates.x._common``).
    # Appended, so they cannot shadow a module of the standard library or torch.
    folder = os.path.dirname(os.path.abspath(path))
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


def _poison_allocator(args: tuple[Any, ...]) -> None:
    """Leave NaN in the caching allocator's free blocks, so ``torch.empty`` output that
    the candidate never writes reads as NaN, not as an earlier (correct) result."""
    import torch

    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is not None and first.is_floating_point():
        poison = torch.full((2 * first.numel(),), float("nan"), dtype=first.dtype,
                            device=first.device)
        del poison


def _checked(out: Any) -> Any:
    """Only plain strided tensors cross back; anything else is described, not pickled."""
    import torch

    if type(out) is not torch.Tensor:
        return {"not_a_tensor": f"{type(out).__module__}.{type(out).__qualname__}"}
    if out.layout != torch.strided:
        return {"layout": str(out.layout)}
    return out.detach()


def _aliased(out: Any, args: tuple[Any, ...]) -> tuple[str, str] | None:
    """The contract asks for a new tensor: a view of an input (``v.expand(...)`` where
    that happens to be right) would change the input when the caller writes to it."""
    import torch

    # Other layouts (sparse...) have no storage to share; the parent rejects them by layout.
    if type(out) is not torch.Tensor or out.layout != torch.strided \
            or not out.untyped_storage().data_ptr():
        return None
    storage = out.untyped_storage().data_ptr()
    for i, arg in enumerate(args):
        if isinstance(arg, torch.Tensor) and arg.untyped_storage().data_ptr() == storage:
            return ("output-aliases-input", f"the output shares memory with input {i} "
                    f"(of shape {tuple(arg.shape)}); return a new tensor")
    return None


def _describe(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__qualname__, "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(exc))[-8000:]}
