"""The OS sandbox around the candidate's process: bubblewrap outside, Landlock inside.

Two independent layers, each used where this machine has it (``detect``):

- bubblewrap (``wrap``) starts the child in new namespaces: the whole filesystem
  read-only but for its scratch folder, a private ``/tmp``, a fresh ``/dev``, no
  network, no capabilities, and (on CPU) its own pid namespace;
- Landlock (``restrict_self``, called by the child before the candidate is imported)
  denies writes outside the scratch folder, ``/dev/shm``, a few ``/dev`` nodes and
  bwrap's private ``/tmp``; TCP; signals and ptrace out of the sandbox; and executing
  anything but the compilers and the interpreter that Triton and inductor start. It
  holds with or without bubblewrap. (A profiled child, the agent's ``profile`` under
  Nsight Compute inside its bwrap, may use ncu's ports: ``restrict_self``.)

The exec rule narrows what starts directly; it is not a boundary on its own: the
interpreter itself must run (inductor's compile workers), and the dynamic loader that
every program needs can map any binary (``ld.so /bin/sh``). The boundary is what every
process started inside inherits: the write, network, signal and namespace rules.
"""
from __future__ import annotations

import ctypes
import errno
import functools
import glob
import importlib.util
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_BWRAP_NEEDS = "unprivileged user, mount, pid and net namespaces"
_LANDLOCK_NEEDS = "Linux >= 5.13 with landlock among the enabled LSMs"

# linux/landlock.h; the syscall numbers are the same on x86_64 and aarch64.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE = 1 << 14  # ABI 3
# Access rights that a rule on a file (not a folder) may grant.
_FILE_ACCESS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE
# Every filesystem right but reading: writing, making, removing, renaming (REFER), truncating.
_ALL_WRITES = ((1 << 15) - 1) & ~(_EXECUTE | _READ_FILE | _READ_DIR)
_NET_TCP = 0b11  # BIND_TCP | CONNECT_TCP, ABI 4
_RULE_NET_PORT = 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 0b01, 0b10  # ABI 6

# What bwrap's fresh /dev holds: the child may write to these.
_DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
_COMPILERS = ("cc", "gcc", "g++", "c++", "as", "ld", "ld.bfd", "ld.gold", "collect2",
              "openssl")  # openssl: inductor hashes its precompiled headers with it
_COMPILER_PARTS = ("/usr/lib/gcc", "/usr/libexec/gcc", "/sbin/ldconfig", "/sbin/ldconfig.real")
# Probes the compilers' own code runs: the standard library's platform.architecture() runs
# ``file -b <the interpreter>`` (seen from Triton's nvidia backend on an H200).
_PROBES = ("file",)
#: Size of each tmpfs the child gets (/tmp, and /dev/shm on a CPU).
_TMPFS_BYTES = 256 << 20
# What torch.utils.cpp_extension builds a candidate's own C++ or CUDA kernel with.
_EXTENSION_TOOLS = ("ninja", "nvcc")
_NVCC_STAGES = ("ptxas", "fatbinary", "nvlink", "cudafe++", "bin2c", "nvprune")


@dataclass(frozen=True)
class Confinement:
    """What this machine can confine a child with, and why a layer is missing."""

    bwrap: str | None  # a bubblewrap that ran here with ``wrap``'s flags
    landlock_abi: int  # 0 if Landlock is unavailable
    reason: str | None  # what is missing and why; None if nothing is

    @property
    def label(self) -> str:
        layers = [n for n, on in (("bwrap", self.bwrap), ("landlock", self.landlock_abi)) if on]
        return "+".join(layers) or "in-process only"


@functools.cache
def detect() -> Confinement:
    """Probe once per process: a machine may lack bwrap, forbid namespaces or run an old
    kernel, and the report should say which layer is missing rather than fail."""
    if os.environ.get("AVO_SANDBOX") == "off":
        return Confinement(None, 0, "AVO_SANDBOX=off")
    bwrap, bwrap_why = _probe_bwrap()
    abi, landlock_why = _probe_landlock()
    return Confinement(bwrap, abi, "; ".join(r for r in (bwrap_why, landlock_why) if r) or None)


def wrap(argv: Sequence[str], conf: Confinement, *, scratch: Path, cuda: bool,
         readable: Sequence[Path] = (), writable: Sequence[Path] = ()) -> list[str]:
    """``argv`` as a command line that starts it inside bubblewrap (unchanged without one).

    ``readable``: folders the child must read that may lie under ``/tmp`` (a project made
    by a test, the candidate's), bound read-only over the private tmpfs, as the interpreter
    and the harness are; ``writable``: folders bound writable (a profiler's report; Landlock
    still keeps the candidate's process out of them). bwrap passes every descriptor it
    inherits through to the command (the caller's ``pass_fds``).
    """
    if conf.bwrap is None:
        return list(argv)
    where = str(Path(scratch).resolve())
    # The tmpfs mounts are memory the address-space limit does not count: sized.
    cmd = [conf.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--size", str(_TMPFS_BYTES),
           "--tmpfs", "/tmp"]
    # The interpreter, its packages, the harness the child imports and their bytecode (this
    # process's, ``bytecode.read_only``), wherever they live (a checkout and its venv under
    # /tmp). This module imports nothing of the harness: the tests load it alone.
    interpreter = (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                   Path(__file__).resolve().parents[2], *filter(None, [sys.pycache_prefix]))
    for path in sorted({str(Path(p).resolve()) for p in (*readable, *interpreter)}):
        if path.startswith("/tmp/"):
            cmd += ["--ro-bind", path, path]
    for path in writable:
        cmd += ["--bind", str(Path(path).resolve()), str(Path(path).resolve())]
    cmd += ["--bind", where, where]  # scratch may lie under /tmp (or a readable folder): last
    if cuda:
        for node in sorted(glob.glob("/dev/nvidia*")):  # the nodes, and /dev/nvidia-caps
            cmd += ["--dev-bind", node, node]
        # torch's CUDA IPC keeps its reference counters in the host's /dev/shm, and a
        # legacy CUDA IPC handle opens only in the pid namespace it was made in: the pid
        # namespace is shared, and Landlock keeps ptrace (from ABI 6 signals too) inside.
        # A procfs of its own (the same pid namespace): under the host's, read-only through
        # the root bind, cudaGetDeviceCount fails with error 304 (seen on an H200).
        cmd += ["--bind", "/dev/shm", "/dev/shm", "--proc", "/proc"]
    else:
        cmd += ["--size", str(_TMPFS_BYTES), "--tmpfs", "/dev/shm", "--unshare-pid", "--proc",
                "/proc"]
    return cmd + ["--unshare-user-try", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                  "--unshare-cgroup-try", "--die-with-parent", "--new-session",
                  "--cap-drop", "ALL", "--chdir", where, "--", *argv]


def restrict_self(conf: Confinement, *, scratch: Path, cuda: bool,
                  profiler_ports: Sequence[int] = (), devices: bool | None = None) -> None:
    """Put this process, and all it starts from now on, under one Landlock ruleset.

    Landlock binds the calling thread and what it starts from then on: call this before
    other threads start, so that none is left outside. ``conf`` is the parent's: inside
    bwrap, ``detect`` would find no usable bwrap, and ``/tmp`` is writable only under one.

    ``profiler_ports``: a profiler (Nsight Compute) runs as this process's parent inside
    the same sandbox and talks to its injection over these TCP ports and abstract Unix
    sockets; both are opened. Only inside bwrap's network namespace, where they reach
    nothing but that profiler: without bwrap the parent starts no profiled child
    (``sandbox.Sandbox``).

    ``cuda``: the CUDA compilers may run; ``devices`` (``cuda`` unless given): the GPU's
    nodes may be opened (a compile job, ``compile_job``, runs ptxas and opens none).
    """
    devices = cuda if devices is None else devices
    abi = conf.landlock_abi
    if not abi:
        return
    known = (1 << {1: 13, 2: 14}.get(abi, 15)) - 1  # REFER came in ABI 2, TRUNCATE in 3
    handled = (_EXECUTE | _ALL_WRITES) & known
    scopes = _SCOPE_SIGNAL | (0 if profiler_ports else _SCOPE_ABSTRACT_UNIX)
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, scopes if abi >= 6 else 0)
    ruleset = _checked(_syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0),
                       "landlock_create_ruleset")
    try:
        # /tmp only where it is bwrap's private tmpfs (compilers write temporaries there);
        # /dev/shm for torch's shared-memory tensors and CUDA IPC counters (bwrap's is
        # private on CPU). Device nodes are only written; the driver opens the GPU's so.
        _add_rule(ruleset, str(scratch), handled & ~_EXECUTE)
        for path in ("/dev/shm", *(["/tmp"] if conf.bwrap else [])):
            if os.path.isdir(path):
                _add_rule(ruleset, path, handled & ~_EXECUTE)
        # The CUDA driver writes to its process's own /proc entry (seen on an H200: without
        # it, cudaGetDeviceCount fails with error 304).
        own = [os.path.realpath("/proc/self")] if devices else []
        for node in (*_DEV_NODES, *(glob.glob("/dev/nvidia*") if devices else ()), *own):
            if os.path.exists(node):
                _add_rule(ruleset, node, handled & (_WRITE_FILE | _TRUNCATE))
        for path in allowed_executables(cuda):
            _add_rule(ruleset, path, _EXECUTE)
        for port in profiler_ports if abi >= 4 else ():
            rule = _NetPortAttr(_NET_TCP, port)
            _checked(_syscall(_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(rule), 0),
                     f"landlock_add_rule(port {port})")
        _checked(_libc().prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
                               ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(PR_SET_NO_NEW_PRIVS)")
        _checked(_syscall(_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


def allowed_executables(cuda: bool) -> list[str]:
    """Real paths of what Triton and inductor legitimately start, and the dynamic loaders
    these name (the kernel executes the loader too). No shell: nothing here runs one."""
    found = [sys.executable, *_COMPILER_PARTS,
             *(shutil.which(name) for name in (*_COMPILERS, *_PROBES, *_EXTENSION_TOOLS))]
    nvcc = shutil.which("nvcc")
    cuda_home = Path(os.path.realpath(nvcc)).parent.parent if nvcc else None
    if cuda and cuda_home is not None and (cuda_home / "nvvm" / "bin").is_dir():
        # nvcc's own stages in a CUDA toolkit: cicc (nvvm/bin), ptxas, fatbinary, nvlink
        found += [str(cuda_home / "nvvm" / "bin"),
                  *(str(cuda_home / "bin" / tool) for tool in _NVCC_STAGES)]
    triton = importlib.util.find_spec("triton") if cuda else None
    if triton is not None and triton.submodule_search_locations:
        bin_dir = Path(triton.submodule_search_locations[0], "backends", "nvidia", "bin")
        found += glob.glob(str(bin_dir / "ptxas*"))
    paths = {os.path.realpath(p) for p in found if p and os.path.exists(p)}
    paths |= {os.path.realpath(loader) for p in paths if (loader := _elf_interpreter(p))}
    return sorted(paths)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _add_rule(ruleset: int, path: str, access: int) -> None:
    """Grant ``access`` beneath ``path`` (a file gets only the rights a file can have)."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ACCESS
        rule = _PathBeneathAttr(access, fd)
        _checked(_syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                 f"landlock_add_rule({path})")
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _syscall(number: int, *args: object) -> int:
    # syscall(2) is variadic and reads every argument as a long.
    return _libc().syscall(ctypes.c_long(number),
                           *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def _checked(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"Landlock: {what} failed: {os.strerror(err)}")
    return result


def _probe_bwrap() -> tuple[str | None, str | None]:
    """A bwrap that runs ``true`` with ``wrap``'s flags (CPU and GPU), or why there is none."""
    named = os.environ.get("AVO_BWRAP")
    path = named or shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap unusable: no bwrap on PATH (AVO_BWRAP may name one)"
    given = f"AVO_BWRAP={path}" if named else path
    if not os.path.exists(path):
        return None, f"bubblewrap unusable: {given} does not exist"
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        return None, f"bubblewrap unusable: {given} is not an executable file"
    with tempfile.TemporaryDirectory(prefix="avo-bwrap-probe-") as scratch:
        for cuda in (False, True):
            argv = wrap(["true"], Confinement(path, 0, None), scratch=Path(scratch), cuda=cuda)
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                return None, f"bubblewrap unusable: {path} did not run ({exc})"
            if done.returncode:
                said = (done.stderr.strip().splitlines() or [f"status {done.returncode}"])[-1]
                return None, (f"bubblewrap unusable: {path} failed ({said}); it needs "
                              f"{_BWRAP_NEEDS}, which this kernel or its settings may forbid")
    return path, None


def _probe_landlock() -> tuple[int, str | None]:
    if not sys.platform.startswith("linux"):
        return 0, f"Landlock unavailable: not Linux (it needs {_LANDLOCK_NEEDS})"
    abi = _syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    if abi > 0:
        return abi, None
    err = ctypes.get_errno()
    why = {errno.ENOSYS: "this kernel lacks it",
           errno.EOPNOTSUPP: "disabled at boot"}.get(err, os.strerror(err))
    return 0, f"Landlock unavailable ({why}): it needs {_LANDLOCK_NEEDS}"


def _elf_interpreter(path: str) -> str | None:
    """The dynamic loader a 64-bit ELF file names in its PT_INTERP header, if any."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:5] != b"\x7fELF\x02":
                return None
            order = "<" if head[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for at in range(0, len(table) - phentsize + 1, phentsize):
                p_type, _, offset = struct.unpack_from(order + "IIQ", table, at)
                if p_type == 3:  # PT_INTERP
                    (size,) = struct.unpack_from(order + "Q", table, at + 32)
                    f.seek(offset)
                    return f.read(size).rstrip(b"\0").decode()
    except (OSError, ValueError, struct.error):
        return None
    return None
