"""One GPU, timed by one evaluation at a time; locks that no candidate can take.

Evaluations that share a GPU (``--avo-workers`` above the GPU count) compile and check
at once, but a timing run measures the GPU alone: the scheduler gives each evaluation its
GPU's lock file (``--avo-gpu-lock``) and the parent, never the candidate, holds it while it
times or measures the machine. The calibration file is written under such a lock too
(``machine.Machine.keep``).

The lock is POSIX's (``lockf``), whose exclusive form needs the file open for writing: a
sandboxed child sees every file read-only (bubblewrap, Landlock), so it cannot take it and
hold the other slots' timings (or its own) hostage, as it could ``flock``, which any
reader may take. The kernel releases it when the holder dies, so a killed evaluation cannot
leave its GPU locked. POSIX locks do not exclude the threads of one process from each
other, so a lock per path in this process does (the workbench's timings, a test's threads).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator

_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str] | None,
              waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold ``path``'s lock for the block; no lock when ``path`` is None. ``waiting`` is
    called once, before this waits, if another holder has it."""
    if path is None:
        yield
        return
    with held(path, waiting=waiting):
        yield


@contextlib.contextmanager
def held(path: str | os.PathLike[str], *, wait_s: float | None = None,
         waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """``path``'s lock (the file made if need be) for the block, against other processes and
    this one's other threads; TimeoutError after ``wait_s`` seconds of waiting, if given."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    with _LOCAL_GUARD:
        local = _LOCAL.setdefault(os.path.realpath(path), threading.Lock())
    if not local.acquire(blocking=False):
        if waiting is not None:
            waiting()
            waiting = None
        if not local.acquire(timeout=-1 if deadline is None
                             else max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"{path} stayed locked for {wait_s:g} s")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _lock(fd, path, deadline, wait_s, waiting)
            yield
        finally:
            os.close(fd)  # closing this process's only descriptor of it releases the lock
    finally:
        local.release()


def _lock(fd: int, path: str | os.PathLike[str], deadline: float | None,
          wait_s: float | None, waiting: Callable[[], None] | None) -> None:
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another holder
            pass
        if deadline is None:
            if waiting is not None:
                waiting()
            fcntl.lockf(fd, fcntl.LOCK_EX)
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} stayed locked for {wait_s:g} s")
        time.sleep(0.05)
