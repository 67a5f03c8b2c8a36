"""One GPU, timed by one evaluation at a time.

Evaluations that share a GPU (``--avo-workers`` above the GPU count) compile and check
at once, but a timing run measures the GPU alone: the scheduler gives each evaluation its
GPU's lock file (``--avo-gpu-lock``) and the parent, never the candidate, holds it while it
times or measures the machine. ``flock`` is released by the kernel when the holder dies, so
a killed evaluation cannot leave its GPU locked.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str] | None,
              waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold ``path``'s lock for the block; no lock when ``path`` is None. ``waiting`` is
    called once, before this waits, if another process holds the lock."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
