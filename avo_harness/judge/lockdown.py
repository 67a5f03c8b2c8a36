"""The candidate's process, locked down before the candidate is imported.

Three run-time defences, each a backstop for a static rule in ``scan``:

- tripwires: the task's forbidden callables are replaced by ones that raise, its
  forbidden ATen operators get a raising kernel in the dispatcher (so a call that
  reaches them by any route, ``torch.ops``, ``torch._C`` or a string assembled at
  run time, still fails), and forbidden modules cannot be imported;
- an audit hook (``sys.addaudithook``: it cannot be removed) that refuses, when the
  candidate's own code asks: frames (``sys._getframe``, ``tb_frame``,
  ``gi_frame``), the garbage collector's object lists, ``id()``, ``ctypes``,
  tracing hooks, function surgery and writes by relative paths; and, from anyone in
  this process, processes not started by Triton, inductor or cpp_extension (their
  compilers), signals to other processes, sockets, reads of other processes'
  memory, and writes or deletions under the protected paths (the project, the
  lineage, the reports). The candidate's code is its file, anything under
  ``candidates/`` (its helpers), and code compiled at run time;
- an integrity snapshot of the modules the harness relies on (its own, ``time``,
  ``torch``, ``torch.cuda``, ``builtins``...): a replaced attribute is tampering.

Every refusal is also recorded, and the worker reports it after the request, so
a candidate that catches the exception is still caught.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import sysconfig
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any


class Refused(RuntimeError):
    """Raised into the candidate when it does something the harness forbids."""


_FRAME_ATTRS = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back", "f_globals",
                "f_locals", "f_builtins"}
# Events refused when the candidate's own code is the direct caller.
_CANDIDATE_EVENTS = {
    "sys._getframe": "reads interpreter frames (sys._getframe)",
    "sys._current_frames": "reads interpreter frames (sys._current_frames)",
    "gc.get_objects": "searches the garbage collector (gc.get_objects)",
    "gc.get_referrers": "searches the garbage collector (gc.get_referrers)",
    "gc.get_referents": "searches the garbage collector (gc.get_referents)",
    "builtins.id": "keys on object identity (id())",
    "sys.settrace": "installs a tracing hook",
    "sys.setprofile": "installs a profiling hook",
    "ctypes.dlopen": "loads a library through ctypes",
    "ctypes.dlsym": "looks up symbols through ctypes",
    "ctypes.addressof": "takes raw addresses through ctypes",
    "ctypes.cdata": "reads raw memory through ctypes",
    "ctypes.string_at": "reads raw memory through ctypes",
    "ctypes.PyObj_FromPtr": "forges objects from pointers through ctypes",
    "object.__setattr__": "rewrites a function or class attribute",
    "object.__delattr__": "deletes a function or class attribute",
    "code.__new__": "builds code objects",
    "function.__new__": "builds function objects",
}
# Processes, refused unless Triton, inductor or cpp_extension start them (their compilers).
_PROCESS_EVENTS = {
    "os.system": "runs a shell command",
    "os.exec": "replaces its process with another program",
    "os.fork": "forks its process",
    "os.forkpty": "forks its process",
    "os.posix_spawn": "starts a process",
    "os.spawn": "starts a process",
    "subprocess.Popen": "starts a process",
}
_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
# Without a virtual environment, site-packages lies inside the standard library's folder.
_SITE = tuple({os.path.realpath(sysconfig.get_paths()[key]) + os.sep
               for key in ("purelib", "platlib")})


def _package_dir(name: str) -> str | None:
    """The real folder of an installed package, with a trailing separator; None if absent."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return None
    return os.path.realpath(os.path.dirname(spec.origin)) + os.sep


_TORCH_DIR = _package_dir("torch")
_TRITON_DIR = _package_dir("triton")
# Where the code that may start processes lives: Triton (ptxas, the launcher's C compiler,
# ldconfig), inductor's compilers and workers, and cpp_extension's builds.
_SPAWNERS = tuple(
    ([_TRITON_DIR] if _TRITON_DIR else [])
    + ([_TORCH_DIR + "_inductor", os.path.join(_TORCH_DIR, "utils", "cpp_extension.py")]
       if _TORCH_DIR else []))
# Events refused whoever asks: nothing in this process has a reason to do them.
_ALWAYS = {
    "os.kill": "sends a signal to a process",
    "os.killpg": "sends a signal to a process group",
    "sys.addaudithook": "installs an audit hook",
    "socket.connect": "opens a network connection",
    "socket.bind": "opens a network socket",
}
# Events that write or delete a path (argument 0); refused under a protected path.
_WRITES = {"os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.truncate", "os.chmod",
           "os.link", "os.symlink", "os.utime", "os.mkdir"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Lockdown:
    """The defences of one candidate process; ``check()`` says what it caught."""

    def __init__(self, candidate: str, protected: Sequence[str]) -> None:
        self.candidate = os.path.realpath(candidate)
        # candidates/: the candidate's helpers live beside it or in a sibling folder.
        self.folder = os.path.dirname(os.path.dirname(self.candidate)) + os.sep
        self.protected = [os.path.realpath(p) for p in protected]
        self.violations: list[tuple[str, str]] = []  # (rule, what happened)
        self._local = threading.local()  # per thread: another thread's events stay seen
        self._snapshot: list[tuple[str, Any, dict[str, Any]]] = []

    def install(self, forbidden: Sequence[str], forbidden_ops: Sequence[str]) -> None:
        """Tripwires, then the snapshot, then the audit hook (last: it cannot be undone)."""
        _install_tripwires(forbidden, forbidden_ops, self.violations)
        # Functions and classes only: flags such as torch.cuda._initialized change honestly.
        self._snapshot = [(name, owner, {k: v for k, v in vars(owner).items() if callable(v)})
                          for name, owner in _watched()]
        sys.addaudithook(self._audit)

    def check(self) -> tuple[str, str] | None:
        """The first violation seen so far as (rule, message), if any."""
        if not self.violations:
            for name, owner, before in self._snapshot:
                now = vars(owner)
                for key, value in before.items():
                    if now.get(key, _MISSING) is not value \
                            and not _torch_wraps(now.get(key), value):
                        self.violations.append(("tampering", f"the candidate replaced "
                                                f"{name}.{key}"))
                        break
        return self.violations[0] if self.violations else None

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if getattr(self._local, "inside", False):
            return
        why = None
        if event in _ALWAYS:
            # Unix sockets (a str or bytes address) carry tensors to the parent; others do not.
            if not (event.startswith("socket.") and isinstance(args[-1], (str, bytes))):
                why = _ALWAYS[event]
        elif event in _CANDIDATE_EVENTS or event == "object.__getattr__":
            if event == "object.__getattr__" and (len(args) < 2 or args[1] not in _FRAME_ATTRS):
                return
            if self._called_by_candidate():
                why = (_CANDIDATE_EVENTS[event] if event in _CANDIDATE_EVENTS
                       else f"reads interpreter frames ({args[1]})")
        elif event in _PROCESS_EVENTS:
            if not self._started_by_a_compiler():
                why = _PROCESS_EVENTS[event]
        elif event == "open" and args and self._foreign_memory(args[0]):
            why = f"opens another process's memory or state ({os.fsdecode(args[0])})"
        elif event == "open" and len(args) >= 3 and self._writes(args[1], args[2]):
            why = self._protected_write(args[0])
            # A relative path may hang off a directory descriptor the event does not show.
            if why is None and isinstance(args[0], (str, bytes)) \
                    and not os.path.isabs(args[0]) and self._called_by_candidate():
                why = "writes a file by a relative path (absolute paths only)"
        elif event in _WRITES and args:
            why = self._protected_write(args[0])
            if why is None and event == "os.rename" and len(args) > 1:
                why = self._protected_write(args[1])
        if why is not None:
            self.violations.append(("tampering", f"the candidate {why}"))
            raise Refused(f"avo-harness refused: the candidate {why}")

    def _called_by_candidate(self) -> bool:
        self._local.inside = True
        try:
            caller = sys._getframe(2)  # 0: here, 1: _audit, 2: whoever raised the event
            return self._is_candidate_code(caller.f_code.co_filename)
        except ValueError:
            return False
        finally:
            self._local.inside = False

    def _started_by_a_compiler(self) -> bool:
        """Whether the first caller outside the standard library is Triton's, inductor's or
        cpp_extension's code; a process started from anything else (the candidate, a
        helper of some library, a thread of the standard library) is refused."""
        self._local.inside = True
        try:
            frame: FrameType | None = sys._getframe(2)
            while frame is not None:
                name = os.path.realpath(frame.f_code.co_filename)
                stdlib = frame.f_code.co_filename.startswith("<frozen ") or (
                    name.startswith(_STDLIB) and not name.startswith(_SITE))
                if not stdlib:
                    return name.startswith(_SPAWNERS)
                frame = frame.f_back
            return False
        except ValueError:
            return False
        finally:
            self._local.inside = False

    def _is_candidate_code(self, filename: str) -> bool:
        """The candidate's file, any file under ``candidates/`` (its helpers), or code compiled
        at run time (``<string>``), which only the candidate has reason to make here."""
        if filename.startswith("<"):
            return not filename.startswith("<frozen ")
        real = os.path.realpath(filename)
        return real == self.candidate or real.startswith(self.folder)

    @staticmethod
    def _writes(mode: Any, flags: Any) -> bool:
        if isinstance(mode, str):
            return any(c in mode for c in "wax+")
        return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)

    def _real(self, path: Any) -> str | None:
        """The resolved path an event names (None for a descriptor or nothing), resolved
        with this hook quiet, since resolving raises events of its own."""
        if not isinstance(path, (str, bytes)):
            return None
        self._local.inside = True
        try:
            return os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        finally:
            self._local.inside = False

    def _foreign_memory(self, path: Any) -> bool:
        """``/proc/<pid>/...`` of any other process (the parent's memory holds the private
        seeds and the references), or the machine's memory devices."""
        real = self._real(path)
        if real is None:
            return False
        parts = real.split(os.sep)
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
            return int(parts[2]) != os.getpid()
        # The event does not say whether a directory descriptor anchors a relative path
        # (``os.open("<pid>/mem", dir_fd=<fd of /proc>)``): a leading number is refused.
        first = os.path.normpath(os.fsdecode(path)).split(os.sep)[0]
        if first.isdigit() and int(first) != os.getpid():
            return True
        return real in _MEMORY_DEVICES

    def _protected_write(self, path: Any) -> str | None:
        real = self._real(path)
        if real is None:
            return None
        for root in self.protected:
            if real == root or real.startswith(root + os.sep):
                return f"writes to a protected path ({real})"
        return None


_MISSING = object()
_MEMORY_DEVICES = {"/dev/mem", "/dev/kmem", "/dev/port", "/proc/kcore"}


def _watched() -> list[tuple[str, Any]]:
    """Namespaces whose attributes nothing may replace once the candidate is loaded."""
    import builtins
    import math
    import random
    import time

    import torch

    owners: list[tuple[str, Any]] = [
        ("builtins", builtins), ("time", time), ("math", math), ("random", random),
        ("torch", torch), ("torch.Tensor", torch.Tensor), ("torch.cuda", torch.cuda),
        ("torch.cuda.Event", torch.cuda.Event), ("torch.nn.functional", torch.nn.functional),
        ("torch.testing", torch.testing),
    ]
    owners += [(name, module) for name, module in sorted(sys.modules.items())
               if name == "avo_harness" or name.startswith("avo_harness.")]
    return owners


def _torch_wraps(new: Any, old: Any) -> bool:
    """Torch wrapping one of its own functions when a module of it is first imported
    (``torch._dynamo`` puts ``torch.manual_seed`` under ``_disable_dynamo``): the
    wrapper's code is torch's and it calls exactly the function it replaced."""
    code = getattr(new, "__code__", None)
    return getattr(new, "__wrapped__", None) is old and code is not None \
        and _TORCH_DIR is not None and os.path.realpath(code.co_filename).startswith(_TORCH_DIR)


def _install_tripwires(forbidden: Sequence[str], forbidden_ops: Sequence[str],
                       record: list[tuple[str, str]]) -> None:
    blocked = [name for name in forbidden if "." not in name]
    sys.meta_path.insert(0, _ImportBlocker(blocked, record))
    for name in forbidden:
        # ATen operators stay as they are (torch's own modules read their overloads at
        # import, torch.compile's among them): the dispatcher override below trips them.
        if "." not in name or name.startswith("torch.ops."):
            continue
        owner_name, attr = name.rsplit(".", 1)
        owner = _resolve(owner_name)
        if owner is not None and hasattr(owner, attr):
            try:
                setattr(owner, attr, _tripwire(name, record, getattr(owner, attr)))
            except (AttributeError, TypeError):
                pass  # a read-only owner: the dispatcher override and the static scan remain
    if forbidden_ops:
        import torch

        global _LIBRARY
        _LIBRARY = torch.library.Library("aten", "IMPL")
        for op in forbidden_ops:
            for key in ("CPU", "CUDA"):
                try:
                    _LIBRARY.impl(op, _tripwire(f"torch.ops.aten.{op}", record, None), key)
                except RuntimeError:
                    pass  # an operator this torch version does not have


# Kept alive for the life of the process: dropping it would undo the overrides.
_LIBRARY: Any = None


def _resolve(dotted: str) -> object | None:
    parts = dotted.split(".")
    try:
        obj: object = importlib.import_module(parts[0])
    except ImportError:
        return None
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _tripwire(name: str, record: list[tuple[str, str]], original: object) -> object:
    """A function that refuses to run; for a class, a subclass that refuses to be made
    (torch's own modules subclass some of them at import)."""
    def refuse(*args: object, **kwargs: object) -> None:
        record.append(("forbidden-call", f"the candidate called forbidden {name}"))
        raise ForbiddenCall(f"forbidden call: {name}")

    if isinstance(original, type):
        return type(original.__name__, (original,), {"__init__": refuse,
                                                     "__module__": original.__module__})
    return refuse


class ForbiddenCall(Exception):
    """A candidate reached for something its task forbids."""


class _ImportBlocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: list[str], record: list[tuple[str, str]]) -> None:
        self._names = names
        self._record = record

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] in self._names:
            self._record.append(("forbidden-call", f"the candidate imported forbidden "
                                 f"{fullname}"))
            raise ForbiddenCall(f"forbidden import: {fullname}")
        return None
