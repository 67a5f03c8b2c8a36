"""The parent's side of the child: the one place that runs a candidate.

The candidate lives in a child process started inside the OS sandbox (``confine``):
its filesystem read-only but for a scratch folder of its own (its Triton and
inductor caches too), no network, no other process visible. The parent and the
child share an :class:`~avo_harness.judge.arena.Arena`; for each call the parent
lays the arguments out there, writes them, asks the child to call, times the request
with its own clock, and copies the output slot at once. The child answers in JSON
only. A crash, a hang or an exhausted memory limit becomes a :class:`CandidateFault`,
and the next request starts a fresh child.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..tasks import Call
from . import bytecode, confine
from . import kernel_cache as kernels
from .arena import Arena

if TYPE_CHECKING:
    from .compile_server import CompileServer, Job

#: The longest answer the child may send (a traceback is cut to 8 kB).
_MAX_ANSWER = 64 << 10
#: Rules the child may report against itself; any other name it sends is a protocol fault
#: (a child must not be able to claim, say, a harness error and be evaluated again).
CHILD_RULES = frozenset({"tampering", "forbidden-call", "output-aliases-input",
                         "deferred-write"})
#: What the child's environment keeps of the parent's (an API key is not the candidate's).
ENV_KEPT = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH",
            "TRITON_INTERPRET", "TRITON_PTXAS_PATH", "TRITON_LIBCUDA_PATH",
            "NVIDIA_VISIBLE_DEVICES")


def _libcuda_dir() -> str | None:
    """The folder of libcuda.so.1 as Triton would find it, found here, outside the sandbox."""
    try:
        from triton.backends.nvidia.driver import libcuda_dirs

        return libcuda_dirs()[0]
    except Exception:  # no Triton, no CUDA driver: the child reports what it then lacks
        return None


class CandidateFault(Exception):
    """The candidate raised, crashed, hung, or sent something it may not."""

    def __init__(self, kind: str, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.traceback = traceback


class HarnessFault(Exception):
    """The child could not be started: the harness's fault (or the machine's), not the
    candidate's, which has not run yet."""


@dataclass(frozen=True)
class SandboxSettings:
    cuda: bool
    timeout_s: float
    memory_limit_bytes: int
    #: Paths the in-process line refuses writes to (the OS sandbox makes everything read-only).
    protected: tuple[str, ...] = ()


def candidate_settings(paths: Iterable[Path], *, cuda: bool, timeout_s: float,
                       memory_limit_bytes: int, protected: Iterable[Path]) -> SandboxSettings:
    """A candidate's sandbox as the collector and ``paired`` start one: the candidates folder
    of each of ``paths``, ``protected`` (the project, the outputs) and the harness itself
    refused to its writes."""
    harness = Path(__file__).resolve().parents[1]
    shared = [Path(p) for p in (bytecode.read_only(),) if p]  # what other processes load
    refused = [*(p.parent.parent for p in paths), *protected, harness, *shared]
    return SandboxSettings(cuda, timeout_s, memory_limit_bytes,
                           tuple(dict.fromkeys(str(p) for p in refused)))


@dataclass(frozen=True)
class Profiler:
    """A profiler that starts the child inside the child's own sandbox (``argv`` before its
    command), so that the two share the sandbox's network namespace, where ``ports`` are
    opened for them (``confine.restrict_self``); it writes its report into ``report_dir``."""

    argv: tuple[str, ...]
    ports: tuple[int, ...]
    report_dir: Path
    #: How long the child's exit may take: the profiler writes its report then.
    exit_s: float = 120.0


@dataclass
class Binding:
    """One call's arguments laid out in the arena: the parent's views of the live inputs
    (it writes them before each request) and of the output slot."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: torch.Tensor
    wire: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Returned:
    """What one request produced, as the parent established it."""

    #: The parent's copy of the output slot, taken as soon as the child answered; None if
    #: the output did not fit the slot (then ``described`` says what it was).
    out: torch.Tensor | None
    described: dict[str, str] | None
    #: The parent's clock: from the request sent to its copy of the output made.
    wall_s: float
    #: CUDA events around the call, recorded in the child (cross-checked by ``wall_s``).
    device_s: float | None
    #: What the child says Triton spent compiling during the call (within ``wall_s``): it
    #: only splits the report's phases, no verdict reads it.
    compile_s: float = 0.0


class Sandbox:
    """One candidate in one sandboxed child process, started on first use. Without a
    ``path`` the child calls the harness's own stand-in, which returns at once: the parent
    times it to learn what a round costs beside the call (see ``checker.calibrate``).

    ``kernel_cache``: where the kernels compiled for this very source are kept between
    evaluations (``kernel_cache.py``). ``sibling_of``: share that sandbox's scratch folder
    (the same candidate in another process, compiling into the same cache). ``profiler``:
    the child runs under it (the agent's ``profile``). ``compile_server``: on a GPU, the
    child's kernels compile there (``compile_server.py``; a sibling's is its box's)."""

    def __init__(self, path: Path | None, task_name: str, settings: SandboxSettings, *,
                 kernel_cache: Path | None = None, sibling_of: Sandbox | None = None,
                 profiler: Profiler | None = None,
                 compile_server: CompileServer | None = None) -> None:
        self.path = path
        self.profiler = profiler
        self.task_name = task_name
        self.settings = settings
        self.confinement = confine.detect()
        self.kernel_cache = kernel_cache
        self.compile_server = compile_server or (sibling_of.compile_server if sibling_of
                                                 else None)
        #: What the compile server did for this box's children (hits, compiles, ...).
        self.compiles: Counter[str] = Counter()
        #: The compiles the server ran for them.
        self.compile_jobs: list[Job] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._arena: Arena | None = None
        self._owns_scratch = sibling_of is None
        self._scratch: Path | None = None if sibling_of is None else sibling_of.scratch_folder()
        self._mapped = False
        self._booted = False  # a child of this box has booted before
        #: Seconds spent starting children, and what the children said they spent compiling.
        self.start_s = 0.0
        self.compile_s = 0.0

    @property
    def pid(self) -> int | None:
        """The child's process as this machine sees it (bubblewrap's, when it wraps it)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def scratch(self) -> Path | None:
        """The child's own folder: the one place it may write (its compilers' caches too)."""
        return self._scratch

    def scratch_folder(self) -> Path:
        """The scratch folder, made now if it is not yet (with the kept kernels in it)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="avo-box-"))
            if self.kernel_cache is not None:
                kernels.restore(self.kernel_cache, self._scratch / "triton")
        return self._scratch

    @property
    def device(self) -> str:
        return "cuda" if self.settings.cuda else "cpu"

    def start(self) -> None:
        """Import the candidate now unless its process is up: an import that fails is the
        candidate's fault whatever the input, so callers can report it without one."""
        if self._proc is not None and self._proc.poll() is not None:
            # Every death the parent saw was reported and the child dropped (``_kill``): this
            # one ended on its own between calls, which no honest candidate does.
            self._fault_from_exit("the wait for its next call")
        if self._proc is None:
            began = time.perf_counter()
            try:
                self._start()
            finally:
                self.start_s += time.perf_counter() - began

    def bind(self, call: Call, out_shape: tuple[int, ...], out_dtype: torch.dtype) -> Binding:
        """Lay ``call``'s tensors (shapes and strides kept) and the output out in the arena."""
        tensors = [a for a in call.args if isinstance(a, torch.Tensor)]
        out_like = torch.empty(out_shape, dtype=out_dtype, device="meta")
        places, needed = Arena.layout([*tensors, out_like])
        if self._arena is None or needed > self._arena.size:
            # A bigger arena. A GPU's is mapped into the running child; a CPU's is a memfd
            # sealed at its size that the child inherits when it starts: a new child then.
            grown = Arena(self.device, 2 * needed)
            if self._arena is not None:
                if grown.fd is not None:
                    self._kill()
                self._arena.close()
            self._arena = grown
            self._mapped = False
        self.start()
        assert self._arena is not None
        if not self._mapped:
            self._request("map", self._arena.handle())
            self._mapped = True
        it = iter(places)
        wire_args, live = [], []
        for arg in call.args:
            if isinstance(arg, torch.Tensor):
                place = next(it)
                wire_args.append(("tensor", tuple(vars(place).values())))
                live.append(self._arena.tensor(place))
            else:
                wire_args.append(("value", arg))
                live.append(arg)
        out_place = next(it)
        wire = {"args": wire_args, "kwargs": dict(call.kwargs),
                "out": tuple(vars(out_place).values())}
        return Binding(tuple(live), dict(call.kwargs), self._arena.tensor(out_place), wire)

    def invoke(self, binding: Binding) -> Returned:
        """One call of the candidate on the binding's live inputs, as they are now."""
        if self.settings.cuda:
            torch.cuda.synchronize()  # the parent's writes land before the child reads
        start = time.perf_counter()
        answer = self._request("call", binding.wire)
        described = answer.get("output")
        out = None
        if described is None:
            out = binding.out.clone()
            if self.settings.cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - start
        self._request_tail()
        # A device time only where there is a device clock; a CPU's figure is the parent's own.
        device_s = answer.get("device_s") if self.settings.cuda else None
        compiled = answer.get("compile_s")
        compile_s = min(float(compiled), wall) if isinstance(compiled, (int, float)) and \
            0.0 < compiled < float("inf") else 0.0
        self.compile_s += compile_s
        if self.settings.cuda and not (isinstance(device_s, (int, float))
                                       and 0.0 <= device_s < float("inf")) or \
                not (described is None or isinstance(described, dict)):
            self._kill()
            raise CandidateFault("protocol", "the candidate's process sent a malformed answer "
                                 f"(device time {str(device_s)[:40]})")
        return Returned(out, described, wall, None if device_s is None else float(device_s),
                        compile_s)

    def call(self, call: Call, out_shape: tuple[int, ...], out_dtype: torch.dtype
             ) -> tuple[Binding, Returned]:
        """Write ``call``'s inputs into a fresh binding and invoke the candidate once."""
        binding = self.bind(call, out_shape, out_dtype)
        for live, value in zip(binding.args, call.args):
            if isinstance(live, torch.Tensor):
                live.copy_(value)
        return binding, self.invoke(binding)

    def close(self) -> None:
        if self._proc is not None and self._conn is not None:
            try:
                self._conn.send_bytes(pickle.dumps(("exit", None)))
                self._proc.wait(timeout=self.profiler.exit_s if self.profiler else 5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        if self._arena is not None:
            self._arena.close()
            self._arena = None
        if self._scratch is not None and self._owns_scratch:
            if self.kernel_cache is not None:
                try:
                    kernels.persist(self._scratch / "triton", self.kernel_cache)
                except OSError:  # a cache that could not be kept costs time, never a verdict
                    pass
            shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch = None

    def _start(self) -> None:
        import torch.multiprocessing  # noqa: F401  (registers the CUDA IPC reducers)

        self.scratch_folder()
        if self._arena is None:
            self._arena = Arena(self.device)
        self._mapped = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [theirs.fileno()] + ([self._arena.fd] if self._arena.fd is not None else [])
        compiles = self._serve_compiles() if self.settings.cuda and self.path else None
        if compiles is not None:
            fds.append(compiles.fileno())
        config = {"socket": theirs.fileno(), "memfd": self._arena.fd, "cuda": self.settings.cuda,
                  "compile_socket": compiles.fileno() if compiles is not None else None,
                  "candidate": str(self.path) if self.path else "", "task": self.task_name,
                  "memory_limit_bytes": self.settings.memory_limit_bytes,
                  "protected": list(self.settings.protected), "scratch": str(self._scratch),
                  "bwrap": self.confinement.bwrap, "landlock_abi": self.confinement.landlock_abi,
                  "profiler_ports": list(self.profiler.ports) if self.profiler else []}
        # -P: the working directory (the scratch folder, which the candidate writes) is not
        # put first on sys.path, so a child started again cannot import a package the last
        # one left there in the harness's place.
        argv = [*(self.profiler.argv if self.profiler else ()),
                sys.executable, "-P", "-m", "avo_harness.judge.worker", json.dumps(config)]
        # The candidate's project: its helpers import from there.
        readable = []
        if self.path is not None:
            path = self.path.resolve()
            readable.append(path.parents[2] if len(path.parents) > 2 else path.parent)
        if self.profiler is not None and not self.confinement.bwrap:
            raise HarnessFault("a profile needs bubblewrap: its profiler shares the "
                               "sandbox's network namespace")
        command = confine.wrap(argv, self.confinement, scratch=self._scratch,
                               cuda=self.settings.cuda, readable=readable,
                               writable=[self.profiler.report_dir] if self.profiler else ())
        try:
            self._proc = subprocess.Popen(command, pass_fds=fds, env=self._environment(),
                                          cwd=self._scratch, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
            if compiles is not None:
                compiles.close()
        self._conn = Connection(ours.detach())
        try:
            booted = self._receive("start")
        except CandidateFault as fault:
            booted = {"error": str(fault)}
        if booted.get("status") != "booted":
            self._kill()
            why = f"the sandboxed process did not start ({self.confinement.label}): " \
                f"{booted.get('error', booted)}"[:300]
            if self._booted:
                # It started before, from this scratch folder, which the candidate writes:
                # what stops it now is the candidate's doing.
                raise CandidateFault("crash", f"{why}, after an earlier start did")
            raise HarnessFault(why)
        self._booted = True
        answer = self._receive("import")
        status = answer.get("status")
        if status == "ready":
            return
        self._kill()
        if status == "violated" and answer.get("rule") in CHILD_RULES:
            raise CandidateFault(answer["rule"], f"while importing: {answer.get('message')}")
        if status == "raised":
            raise CandidateFault("import", f"importing the candidate raised "
                                 f"{answer.get('type')}: {answer.get('message')}",
                                 str(answer.get("traceback", "")))
        raise CandidateFault("protocol", f"the candidate's process answered its import with "
                             f"status {str(status)[:60]!r}")

    def _serve_compiles(self) -> socket.socket | None:
        """The child's end of a connection to the compile server, whose end a thread serves
        until the child hangs up; None without a server."""
        server = self.compile_server
        if server is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        module = os.path.abspath(self.path) if self.path else None
        threading.Thread(target=server.serve, args=(Connection(ours.detach()), self.compiles,
                                                    module, self.compile_jobs),
                         name="avo-compiles", daemon=True).start()
        return theirs

    def _environment(self) -> dict[str, str]:
        """A clean environment: the harness importable, caches and temporary files in the
        scratch folder, nothing else of the parent's (no keys, no tokens)."""
        assert self._scratch is not None
        package_root = str(Path(__file__).resolve().parents[2])
        env = {k: os.environ[k] for k in ENV_KEPT if k in os.environ}
        scratch = str(self._scratch)
        env.update(PYTHONPATH=package_root, HOME=scratch, TMPDIR=scratch,
                   TRITON_CACHE_DIR=os.path.join(scratch, "triton"),
                   TORCHINDUCTOR_CACHE_DIR=os.path.join(scratch, "inductor"),
                   # torch.compile's kernels compile in the candidate's own process: on a GPU
                   # its pool of compile workers was refused as a process the candidate
                   # started (seen on an H200), and compiling ahead runs processes already.
                   TORCHINDUCTOR_COMPILE_THREADS="1", PYTHONNOUSERSITE="1")
        bytecode.for_child(env)
        if not self.settings.cuda:
            env["TRITON_INTERPRET"] = "1"  # before anything there imports triton
        elif "TRITON_LIBCUDA_PATH" not in env:
            # Triton finds libcuda by running ldconfig, which may be a shell script (Ubuntu's):
            # the sandbox runs no shell, so the parent finds it.
            libcuda = _libcuda_dir()
            if libcuda:
                env["TRITON_LIBCUDA_PATH"] = libcuda
        return env

    def _request(self, kind: str, payload: Any) -> dict[str, Any]:
        self.start()
        assert self._conn is not None
        try:
            from multiprocessing.reduction import ForkingPickler

            self._conn.send_bytes(ForkingPickler.dumps((kind, payload)))
        except (OSError, BrokenPipeError):
            self._fault_from_exit(kind)
        answer = self._receive(kind)
        status = answer.get("status")
        if status == "violated":
            self._raise_violation(answer)
        if status == "raised":
            raise CandidateFault("raised", f"the candidate raised {answer.get('type')}: "
                                 f"{answer.get('message')}", str(answer.get("traceback", "")))
        if status != "ok":
            self._kill()
            raise CandidateFault("protocol", f"the candidate's process answered {kind!r} with "
                                 f"status {str(status)[:60]!r}")
        return answer

    def _request_tail(self) -> None:
        """The second answer to a call: the child's own checks, run after the parent's clock
        stopped (they cost the same for every candidate and say nothing of its speed)."""
        answer = self._receive("call")
        if answer.get("status") == "violated":
            self._raise_violation(answer)
        if answer.get("status") != "clean":
            self._kill()
            raise CandidateFault("protocol", "the candidate's process did not finish its call")

    def _raise_violation(self, answer: dict[str, Any]) -> None:
        # The process may be in any state now: never reuse it.
        self._kill()
        rule = answer.get("rule")
        if rule not in CHILD_RULES:
            raise CandidateFault("protocol", f"the candidate's process reported an unknown "
                                 f"rule {str(rule)[:60]!r}")
        raise CandidateFault(rule, str(answer.get("message", ""))[:2000])

    def _receive(self, doing: str) -> dict[str, Any]:
        assert self._conn is not None
        try:
            ready = self._conn.poll(self.settings.timeout_s)
        except (OSError, EOFError):
            ready = True  # the read below names what happened
        if not ready:
            self._kill()
            raise CandidateFault("timeout", f"timed out: no answer to {doing!r} within "
                                 f"{self.settings.timeout_s:g} s; the candidate was killed")
        try:
            data = self._conn.recv_bytes(_MAX_ANSWER)
        except (EOFError, OSError):
            self._fault_from_exit(doing)
        try:
            answer = json.loads(data)
        except Exception:  # malformed, or nested to exhaust the parser (RecursionError)
            answer = None
        if not isinstance(answer, dict):
            self._kill()
            raise CandidateFault("protocol", "the candidate's process sent something that is "
                                 "not a JSON object")
        return answer

    def _fault_from_exit(self, doing: str) -> None:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        elif code is not None and code > 128 and self.confinement.bwrap:
            # bubblewrap reports its child's death by signal N as status 128 + N.
            name = signal.Signals(code - 128).name
            why = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            why = f"exited with status {code}"
        raise CandidateFault("crash", f"the candidate's process died during {doing!r}: {why}")

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._conn is not None:
            self._conn.close()
        self._proc = None
        self._conn = None
