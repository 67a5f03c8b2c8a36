"""The child side of the sandbox: load one candidate and serve calls from the parent.

Runs in its own process so that a candidate that crashes, hangs or eats memory
takes only this process down. Everything it receives and sends goes over one
pipe; tensors travel as shared memory (CPU) or CUDA IPC handles, so the parent
sees exactly what the candidate wrote, its inputs included.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection, path: str, task_name: str, cuda: bool,
          memory_limit_bytes: int) -> None:
    """Entry point of the child process."""
    if not cuda:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton can be imported
        if memory_limit_bytes:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    import torch
    import torch.multiprocessing  # noqa: F401  (registers the tensor-sharing reducers)

    from .guard import install_tripwires
    from .tasks import get_task
    from .timer import GPU_PLAN, INTERPRETER_PLAN, time_calls

    task = get_task(task_name)
    try:
        install_tripwires(task.forbidden)
        fn = _load(path, task.entry)
    except BaseException as exc:  # the candidate's import may raise anything, SystemExit too
        conn.send(("raised", _describe(exc)))
        return
    conn.send(("ready", {"pid": os.getpid()}))
    plan = GPU_PLAN if cuda else INTERPRETER_PLAN
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        kind, args, kwargs = request
        if kind == "exit":
            return
        try:
            if kind == "call":
                out = fn(*args, **kwargs)
                if cuda:
                    torch.cuda.synchronize()
                conn.send(("ok", _checked(out)))
            else:  # "time"
                times, out = time_calls(lambda: fn(*args, **kwargs), cuda=cuda, plan=plan)
                conn.send(("ok", (times, _checked(out))))
        except BaseException as exc:
            conn.send(("raised", _describe(exc)))
        del request, args, kwargs


def _load(path: str, entry: str) -> Any:
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


def _checked(out: Any) -> Any:
    """Only plain tensors cross back; anything else is described, not pickled."""
    import torch

    if type(out) is torch.Tensor:
        return out.detach()
    return {"not_a_tensor": f"{type(out).__module__}.{type(out).__qualname__}"}


def _describe(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__qualname__, "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(exc))[-8000:]}
