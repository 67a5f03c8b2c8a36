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
  compilers) or naming a program that is not a compiler (``confine``'s allow-list),
  signals to other processes, sockets, reads of other processes' memory, and writes
  or deletions (a link's destination too) under the protected paths (the project, the
  lineage, the reports). The candidate's code is any code from outside the
  interpreter's own folders, its packages and the harness: its file, its helpers, a
  payload it wrote and imported, code compiled at run time. A frame reached through
  the standard library (``logging.currentframe``) counts as its caller's;
- an integrity check after the import and after every request: the modules and
  classes the harness relies on (its own, ``time``, ``torch``, ``torch.Tensor`` along
  its bases, ``builtins``...) unchanged, the tripwires in place, and no torch
  function or dispatch mode left on.

This is the second line: the OS sandbox (``confine``) holds whatever this process
does, and the parent owns every figure a verdict rests on.

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
import types
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any


class Refused(RuntimeError):
    """Raised into the candidate when it does something the harness forbids."""


_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back",
                          "f_globals", "f_locals", "f_builtins"})
# Events refused when the candidate's own code is the direct caller.
_CANDIDATE_EVENTS = MappingProxyType({
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
})
# Processes, refused unless Triton, inductor or cpp_extension start them (their compilers).
_PROCESS_EVENTS = MappingProxyType({
    "os.system": "runs a shell command",
    "os.exec": "replaces its process with another program",
    "os.fork": "forks its process",
    "os.forkpty": "forks its process",
    "os.posix_spawn": "starts a process",
    "os.spawn": "starts a process",
    "subprocess.Popen": "starts a process",
})
_DUP_COMMANDS = frozenset(getattr(__import__("fcntl"), name) for name in
                          ("F_DUPFD", "F_DUPFD_CLOEXEC"))
# Events that hand out a frame, and the standard library's functions that pass one on.
_FRAME_EVENTS = frozenset({"sys._getframe", "sys._current_frames", "object.__getattr__"})
_FRAME_GETTERS = frozenset({"currentframe", "<lambda>", "stack", "getouterframes",
                            "getinnerframes", "trace", "walk_stack", "walk_tb"})
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
_HARNESS_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep
# Code from these folders is not the candidate's: the interpreter's, its packages', ours.
_TRUSTED = (_STDLIB, *_SITE, _HARNESS_DIR)
_TRITON_DIR = _package_dir("triton")
# Where the code that may start processes lives: Triton (ptxas, the launcher's C compiler,
# ldconfig), inductor's compilers and workers, cpp_extension's builds, and dynamo's
# debug_utils, which runs `nvcc --version` while torch.compile compiles (seen on an H200,
# torch 2.11: the honest compiled_math candidate was refused for it).
_SPAWNERS = tuple(
    ([_TRITON_DIR] if _TRITON_DIR else [])
    + ([_TORCH_DIR + "_inductor", os.path.join(_TORCH_DIR, "utils", "cpp_extension.py"),
        os.path.join(_TORCH_DIR, "_dynamo", "debug_utils.py")] if _TORCH_DIR else []))
# Events refused whoever asks: nothing in this process has a reason to do them.
_ALWAYS = MappingProxyType({
    "os.kill": "sends a signal to a process",
    "os.killpg": "sends a signal to a process group",
    "sys.addaudithook": "installs an audit hook",
    "socket.connect": "opens a network connection",
    "socket.bind": "opens a network socket",
})
# Events that write or delete a path (argument 0); refused under a protected path.
_WRITES = frozenset({"os.remove", "os.rename", "os.rmdir", "shutil.rmtree", "os.truncate",
                     "os.chmod", "os.link", "os.symlink", "os.utime", "os.mkdir"})
# Events whose second argument is a path written too (a link's or a rename's destination).
_TWO_PATHS = frozenset({"os.rename", "os.link", "os.symlink"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Lockdown:
    """The defences of one candidate process; ``check()`` says what it caught.

    The audit hook's state (its tables, its per-thread quiet flag, the tripwires'
    library) lives in the closures ``install`` builds, not on this object or in module
    globals that the candidate could reach through ``sys.modules`` and rebind.
    """

    def __init__(self, candidate: str, protected: Sequence[str], *, cuda: bool = False) -> None:
        self.candidate = os.path.realpath(candidate)
        self.protected = tuple(os.path.realpath(p) for p in protected)
        self.cuda = cuda
        self.violations: list[tuple[str, str]] = []  # (rule, what happened)
        self._checks: tuple[Any, ...] = ()

    def install(self, forbidden: Sequence[str], forbidden_ops: Sequence[str],
                silenced: Sequence[str] = ()) -> None:
        """Tripwires, then the snapshot, then the audit hook (last: it cannot be undone).
        ``silenced``: torch's functions that would put a forbidden kernel into honest code
        (a compiler pass), made to do nothing."""
        library = _install_tripwires(forbidden, forbidden_ops, self.violations, silenced)
        # Functions and classes only: flags such as torch.cuda._initialized change honestly.
        snapshot = tuple((name, owner, {k: v for k, v in vars(owner).items() if callable(v)})
                         for name, owner in _watched())
        record = self.violations
        dispatch = harness_kernels()

        def intact() -> tuple[str, str] | None:
            for name, owner, before in snapshot:
                now = vars(owner)
                for key, value in before.items():
                    if now.get(key, _MISSING) is not value and not _torch_wraps(now.get(key),
                                                                                value):
                        return ("tampering", f"the candidate replaced {name}.{key}")
                if not isinstance(owner, types.ModuleType):
                    # A class (or object) gains an attribute that shadows its class's or
                    # base's (``Tensor.copy_`` set on Tensor while TensorBase defines it).
                    added = [k for k, v in now.items() if k not in before and callable(v)]
                    if added:
                        return ("tampering", f"the candidate set {name}.{added[0]}")
            changed = next((op for op, table in harness_kernels().items()
                            if table != dispatch[op]), None)
            if changed is not None:
                return ("tampering", f"the candidate registered a kernel of its own for {changed},"
                        " which the harness's code in its process runs (the output's copy, the "
                        "checks)")
            if library is not None and getattr(library, "m", None) is None:
                return ("tampering", "the candidate removed the forbidden operators' tripwires")
            modes = active_modes()
            if modes:
                return ("tampering", f"the candidate left {modes} active (it would see the "
                        "harness's own tensor work)")
            return None

        self._checks = (intact,)
        sys.addaudithook(_audit_hook(self.candidate, self.protected, record,
                                     _allowed_executables(self.cuda)))

    def check(self) -> tuple[str, str] | None:
        """The first violation seen so far as (rule, message), if any."""
        if not self.violations:
            for check in self._checks:
                found = check()
                if found is not None:
                    self.violations.append(found)
                    break
        return self.violations[0] if self.violations else None


#: The operators the harness's own code in the child dispatches on the candidate's tensors
#: and the arena's (``worker._call``, ``checker.same_bits``, ``arena.view``, the allocator's
#: poison). A kernel the candidate registers for one of them (``torch.library`` in Python, or
#: ``TORCH_LIBRARY_IMPL`` in an extension) runs inside the harness's work: ``copy_`` after the
#: end event would hide the candidate's work from the device clock.
HARNESS_OPS = ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous",
               "aten::equal", "aten::view.dtype", "aten::as_strided", "aten::slice.Tensor",
               "aten::transpose.int", "aten::detach", "aten::alias", "aten::empty_like",
               "aten::empty.memory_format", "aten::empty_strided", "aten::full",
               "aten::fill_.Scalar")


def harness_kernels() -> dict[str, str]:
    """Each of ``HARNESS_OPS``'s dispatch table, every kernel and fallback with where it was
    registered: a registration the candidate made anywhere shows as a changed line."""
    import torch

    return {op: torch._C._dispatch_dump_table(op) for op in HARNESS_OPS}


def active_modes() -> str | None:
    """The torch function and dispatch modes on their stacks now, named; None if none."""
    import torch

    found = []
    if torch._C._len_torch_function_stack():
        found.append("a TorchFunctionMode")
    if torch._C._len_torch_dispatch_stack():
        found.append("a TorchDispatchMode")
    return " and ".join(found) or None


def _allowed_executables(cuda: bool) -> frozenset[str]:
    from .confine import allowed_executables

    return frozenset(allowed_executables(cuda))


def _audit_hook(candidate: str, protected: tuple[str, ...], record: list[tuple[str, str]],
                executables: frozenset[str]) -> Any:
    """The audit hook, with everything it reads bound here (see :class:`Lockdown`)."""
    local = threading.local()  # per thread: another thread's events stay seen
    candidate_events, always, process_events = _CANDIDATE_EVENTS, _ALWAYS, _PROCESS_EVENTS
    frame_attrs, writes, two_paths = _FRAME_ATTRS, _WRITES, _TWO_PATHS
    getframe, realpath, fsdecode = sys._getframe, os.path.realpath, os.fsdecode
    my_pid = os.getpid()

    def quietly(fn: Any, *args: Any) -> Any:
        local.inside = True
        try:
            return fn(*args)
        except (TypeError, ValueError):
            return None
        finally:
            local.inside = False

    def caller(unwrap: bool) -> str | None:
        """The file of the code that raised the event; with ``unwrap``, past the standard
        library's functions that hand a frame to their caller (``logging.currentframe``,
        ``inspect.stack``), so a frame fetched through them counts as the fetcher's."""
        frame = getframe(4)  # here, quietly, by_candidate, the hook, the caller
        while unwrap and frame is not None and frame.f_code.co_name in _FRAME_GETTERS \
                and _is_stdlib(frame.f_code.co_filename):
            frame = frame.f_back
        return frame.f_code.co_filename if frame is not None else None

    def first_outside_stdlib(depth: int = 4) -> str | None:
        """The file of the nearest caller outside the standard library (``depth``: frames
        between here and the caller: here, quietly, by_candidate or by_compiler, the hook)."""
        frame = getframe(depth)
        while frame is not None:
            name = frame.f_code.co_filename
            if not _is_stdlib(name):
                return name
            frame = frame.f_back
        return None

    def by_candidate(event: str) -> bool:
        if event.startswith("ctypes."):
            # ctypes is the standard library's: the code that uses it is its caller's.
            name = quietly(first_outside_stdlib)
        else:
            name = quietly(caller, event in _FRAME_EVENTS)
        return name is not None and _is_candidate_code(name, candidate)

    def by_compiler() -> bool:
        name = quietly(first_outside_stdlib)
        return name is not None and quietly(realpath, name).startswith(_SPAWNERS)

    def executable(event: str, args: tuple[Any, ...]) -> str | None:
        """The real path of the program an event starts; None if it names none."""
        import shutil

        path = {"subprocess.Popen": 0, "os.exec": 0, "os.posix_spawn": 0,
                "os.spawn": 1}.get(event)
        if path is None or len(args) <= path or args[path] is None:
            return None
        name = fsdecode(args[path])
        found = name if os.sep in name else quietly(shutil.which, name)
        return quietly(realpath, found) if found else None

    def command(event: str, args: tuple[Any, ...]) -> str:
        """The command line an event starts, cut short, for the message."""
        index = {"os.spawn": 2}.get(event, 1)
        argv = args[index] if len(args) > index else None
        if isinstance(argv, (str, bytes)):
            return fsdecode(argv)[:120]
        try:
            return " ".join(fsdecode(a) for a in list(argv or ())[:6])[:120]
        except TypeError:
            return "?"

    def protected_write(path: Any) -> str | None:
        if not isinstance(path, (str, bytes)):
            return None
        real = quietly(realpath, fsdecode(path))
        if real is None:
            return None
        for root in protected:
            if real == root or real.startswith(root + os.sep):
                return f"writes to a protected path ({real})"
        return None

    def foreign_memory(path: Any) -> bool:
        """``/proc/<pid>/...`` of any other process, or the machine's memory devices."""
        if not isinstance(path, (str, bytes)):
            return False
        real = quietly(realpath, fsdecode(path))
        if real is None:
            return False
        parts = real.split(os.sep)
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
            return int(parts[2]) != my_pid
        # The event does not say whether a directory descriptor anchors a relative path
        # (``os.open("<pid>/mem", dir_fd=<fd of /proc>)``): a leading number is refused.
        first = os.path.normpath(fsdecode(path)).split(os.sep)[0]
        if first.isdigit() and int(first) != my_pid:
            return True
        return real in _MEMORY_DEVICES

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if getattr(local, "inside", False):
            return
        why = None
        if event in always:
            # The worker talks over a socket it inherited: nothing here connects or binds one
            # (a Unix address reaches the host's services through bwrap's network namespace).
            why = always[event]
        elif event in candidate_events or event == "object.__getattr__":
            if event == "object.__getattr__" and (len(args) < 2 or args[1] not in frame_attrs):
                return
            if by_candidate(event):
                why = (candidate_events[event] if event in candidate_events
                       else f"reads interpreter frames ({args[1]})")
        elif event in process_events:
            program = executable(event, args)
            if event == "os.system" or not by_compiler():
                origin = quietly(first_outside_stdlib, 3)  # here, quietly, the hook
                why = (f"{process_events[event]} ({command(event, args)}, from "
                       f"{os.path.basename(origin) if origin else 'the standard library'})")
            elif program is not None and program not in executables:
                why = f"starts {program} ({command(event, args)}), which is not a compiler"
        elif event == "open" and args and isinstance(args[0], int) and by_candidate(event):
            why = f"opens file descriptor {args[0]} it did not open (the worker's socket?)"
        elif event == "fcntl.fcntl" and len(args) > 1 and args[1] in _DUP_COMMANDS \
                and by_candidate(event):
            why = f"duplicates file descriptor {args[0]}"
        elif event == "open" and args and foreign_memory(args[0]):
            why = f"opens another process's memory or state ({fsdecode(args[0])})"
        elif event == "open" and len(args) >= 3 and _writes(args[1], args[2]):
            why = protected_write(args[0])
            # A relative path may hang off a directory descriptor the event does not show.
            if why is None and isinstance(args[0], (str, bytes)) \
                    and not os.path.isabs(args[0]) and by_candidate(event):
                why = "writes a file by a relative path (absolute paths only)"
        elif event in writes and args:
            why = protected_write(args[0])
            if why is None and event in two_paths and len(args) > 1:
                why = protected_write(args[1])
        if why is not None:
            record.append(("tampering", f"the candidate {why}"))
            raise Refused(f"avo-harness refused: the candidate {why}")

    return audit


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    real = os.path.realpath(filename)
    return real.startswith(_STDLIB) and not real.startswith(_SITE)


def _is_candidate_code(filename: str, candidate: str) -> bool:
    """Code from anywhere but the installed interpreter, its packages and the harness: the
    candidate's file and helpers, a payload it wrote and imported, code compiled at run time
    (``<string>``)."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen ")
    real = os.path.realpath(filename)
    if real == candidate:
        return True
    return not real.startswith(_TRUSTED)


def _writes(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


_MISSING = object()
_MEMORY_DEVICES = {"/dev/mem", "/dev/kmem", "/dev/port", "/proc/kcore"}


def _watched() -> list[tuple[str, Any]]:
    """Namespaces whose attributes nothing may replace once the candidate is loaded."""
    import builtins
    import json
    import math
    import random
    import time

    import torch

    owners: list[tuple[str, Any]] = [
        ("builtins", builtins), ("time", time), ("math", math), ("random", random),
        ("json", json), ("json.JSONEncoder", json.JSONEncoder),
        ("json._default_encoder", json._default_encoder),
        ("torch", torch), ("torch.Tensor", torch.Tensor), ("torch.cuda", torch.cuda),
        ("torch.cuda.Event", torch.cuda.Event), ("torch.nn.functional", torch.nn.functional),
        ("torch.testing", torch.testing),
    ]
    # Along the whole inheritance chain: an attribute set on a subclass shadows its base's.
    for cls in (torch.Tensor, torch.cuda.Event, torch.cuda.Stream, torch.storage.UntypedStorage):
        owners += [(f"{c.__module__}.{c.__qualname__}", c) for c in cls.__mro__
                   if c is not object and (f"{c.__module__}.{c.__qualname__}", c) not in owners]
    owners += [(name, module) for name, module in sorted(sys.modules.items())
               if name == "avo_harness" or name.startswith("avo_harness.")]
    main = sys.modules.get("__main__")  # the worker itself, run as ``python -m``
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.startswith("avo_harness."):
        owners.append((spec.name, main))
    return owners


def _torch_wraps(new: Any, old: Any) -> bool:
    """Torch wrapping one of its own functions when a module of it is first imported
    (``torch._dynamo`` puts ``torch.manual_seed`` under ``_disable_dynamo``): the
    wrapper's code is torch's and it calls exactly the function it replaced."""
    code = getattr(new, "__code__", None)
    return getattr(new, "__wrapped__", None) is old and code is not None \
        and _TORCH_DIR is not None and os.path.realpath(code.co_filename).startswith(_TORCH_DIR)


def _install_tripwires(forbidden: Sequence[str], forbidden_ops: Sequence[str],
                       record: list[tuple[str, str]], silenced: Sequence[str] = ()) -> Any:
    """Returns the library that holds the raising kernels (None if the task has no forbidden
    operators): whoever keeps it alive keeps the overrides, and it is kept in a closure."""
    blocked = [name for name in forbidden if "." not in name]
    # Modules not imported yet (torch.nn.attention.flex_attention, .varlen): their names are
    # tripped when they are imported, by the candidate or by torch, not imported here (some
    # cost seconds and bring in dynamo and inductor).
    pending: dict[str, list[str]] = {}
    sys.meta_path.insert(0, _ImportBlocker(blocked, record, pending, frozenset(silenced)))
    for name in silenced:
        owner_name, attr = name.rsplit(".", 1)
        owner = _resolve(owner_name)
        if owner is None:
            pending.setdefault(owner_name, []).append(name)
        else:
            setattr(owner, attr, _silent)
    for name in forbidden:
        # ATen operators stay as they are (torch's own modules read their overloads at
        # import, torch.compile's among them): the dispatcher override below trips them.
        if "." not in name or name.startswith("torch.ops."):
            continue
        owner_name, attr = name.rsplit(".", 1)
        owner = _resolve(owner_name)
        if owner is None and owner_name not in sys.modules:
            pending.setdefault(owner_name, []).append(name)
        elif owner is not None:
            _trip(owner, attr, name, record)
    if not forbidden_ops:
        return None
    import torch

    import warnings

    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel": we are
        for op in forbidden_ops:
            packet = getattr(torch.ops.aten, op, None)
            overloads = packet.overloads() if packet is not None else []
            # A composite kernel too where the operator has one: a decomposition
            # (``OpOverload.decompose``) calls it without passing the backend's. Not where it
            # has none: inductor would take an added one for a decomposition.
            for overload in overloads:
                name = op if overload == "default" else f"{op}.{overload}"
                composite = [key for key in ("CompositeImplicitAutograd",
                                             "CompositeExplicitAutograd")
                             if torch._C._dispatch_has_kernel_for_dispatch_key(
                                 f"aten::{name}", key)]
                for key in ("CPU", "CUDA", *composite):
                    try:
                        library.impl(name, _tripwire(f"torch.ops.aten.{name}", record, None),
                                     key)
                    except RuntimeError:
                        pass  # not registrable at this key, or absent in this torch
    return library


def _resolve(dotted: str) -> object | None:
    """What a dotted name names now, None if nothing (yet). Modules come from sys.modules,
    not from their package's attribute, which may shadow them: torch._higher_order_ops's
    attribute flex_attention is the operator, not the module of that name."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        obj = sys.modules.get(".".join(parts[:i]))
        if obj is not None:
            break
    else:
        return None
    for part in parts[i:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _trip(owner: object, attr: str, name: str, record: list[tuple[str, str]]) -> None:
    original = getattr(owner, attr, None)
    if original is None:
        return
    if _is_higher_order_operator(original):
        _neutralise(original, name, record)
        return
    try:
        setattr(owner, attr, _tripwire(name, record, original))
    except (AttributeError, TypeError):
        pass  # a read-only owner: the dispatcher override and the static scan remain


def _is_higher_order_operator(obj: object) -> bool:
    ops = sys.modules.get("torch._ops")
    return ops is not None and isinstance(obj, ops.HigherOrderOperator)


def _neutralise(op: Any, name: str, record: list[tuple[str, str]]) -> None:
    """A higher-order operator (flex attention's) is one object that torch holds under many
    names (torch.ops.higher_order, every module that imported it, dynamo's and inductor's
    tables) and that torch.compile calls while it traces: replacing one name would leave the
    others, and it is no ATen operator for the dispatcher override. So the object itself
    refuses: its calls, and its kernels for a caller that dispatches around ``__call__``."""
    refuse = _tripwire(name, record, None)
    for table in ("py_kernels", "python_key_table", "functorch_table"):
        kernels = getattr(op, table, None)
        if isinstance(kernels, dict):
            for key in list(kernels):
                kernels[key] = refuse
    cache = getattr(op, "_dispatch_cache", None)
    if isinstance(cache, dict):
        cache.clear()
    cls = type(op)
    op.__class__ = type(cls.__name__, (cls,), {
        "__call__": lambda self, *args, **kwargs: refuse(*args, **kwargs),
        "__init__": refuse, "__module__": cls.__module__})


def _silent(*args: object, **kwargs: object) -> None:
    """What a silenced function becomes."""


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
    """Refuses the forbidden top-level packages; trips the forbidden names of a pending
    module (one not imported when the tripwires went in) as soon as it is imported."""

    def __init__(self, names: list[str], record: list[tuple[str, str]],
                 pending: dict[str, list[str]], silenced: frozenset[str]) -> None:
        self._names = names
        self._record = record
        self._pending = pending
        self._silenced = silenced

    def find_spec(self, fullname: str, path: object, target: object = None) -> Any:
        if fullname.split(".")[0] in self._names:
            self._record.append(("forbidden-call", f"the candidate imported forbidden "
                                 f"{fullname}"))
            raise ForbiddenCall(f"forbidden import: {fullname}")
        names = self._pending.get(fullname)
        if not names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            del self._pending[fullname]
            spec.loader = _TrippingLoader(spec.loader, names, self._record, self._silenced)
        return spec


class _TrippingLoader(importlib.abc.Loader):
    """Runs a module's real loader, then trips its forbidden names."""

    def __init__(self, loader: Any, names: list[str], record: list[tuple[str, str]],
                 silenced: frozenset[str]) -> None:
        self._loader = loader
        self._names = names
        self._record = record
        self._silenced = silenced

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        for name in self._names:
            if name in self._silenced:
                setattr(module, name.rsplit(".", 1)[1], _silent)
            else:
                _trip(module, name.rsplit(".", 1)[1], name, self._record)

    def __getattr__(self, attr: str) -> Any:  # get_source, get_filename, is_package...
        return getattr(self._loader, attr)
