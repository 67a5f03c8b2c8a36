"""Evaluating one candidate: the very pytest items a user runs, in a fresh process.

The controller never imports candidate code. It starts ``python -m pytest FILE
--avo-report R`` in its own process group (killed whole on timeout: the candidate's
failure; or at the run's time budget: a cut, no verdict), and the report R is the
fitness. No report, or no entry in it, is the harness's failure: that pytest process
runs the harness, the candidate its sandbox. Everything the process writes to temporary
files goes into the evaluation's own folder, removed after it, killed or not.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import avo_harness

from .. import live
from ..judge import bytecode

from ..results import candidate_entry
from .fitness import Fitness, from_report, harness_fault, out_of_time

if TYPE_CHECKING:
    import pytest

    from .cascade import Cascade


#: The fewest ``--avo-stress`` runs a search's evaluation makes on a GPU.
SEARCH_STRESS = 3


@dataclass(frozen=True)
class EvalSettings:
    device: str
    examples: int
    call_timeout_s: float
    eval_timeout_s: float
    memory_limit_gib: float
    rootdir: Path
    #: Where the run's evaluations keep the harness's measurements of the machine
    #: (``--avo-calibration``): measured by the first, reused by the others.
    calibration: Path | None = None
    #: ``--avo-stress`` of each evaluation: warp-specialised kernels race, and a race must
    #: fail before a commit, so the search asks for at least 3 runs on a GPU.
    stress: int = 0
    #: ``--avo-compile-server``: off passes on to every evaluation.
    compile_server: bool = True
    #: ``--avo-store``, passed on: the evaluations and the agent's workbench share its
    #: compile cache; None: each evaluation's own default.
    store: Path | None = None
    #: Start the next evaluation's process as this one starts (``spare.py``): a search on a
    #: GPU, whose every evaluation would otherwise spend seconds on its imports first.
    spare: bool = False

    def compile_cache(self) -> Path | None:
        """The compile server's cache the run's GPU processes share (evaluations, paired
        timings, the agent's workbench); None in the interpreter, with the server off, or
        without a store."""
        from ..judge.compile_server import FOLDER

        if self.device != "cuda" or not self.compile_server or self.store is None:
            return None
        return self.store / FOLDER


def settings_from(config: pytest.Config) -> EvalSettings:
    """How this session evaluates a candidate: one place for the loop and for any operator
    that evaluates drafts on its behalf, so both see the same numbers."""
    from ..options import default_examples, settings_of

    options = settings_of(config)
    harness = options.harness
    return EvalSettings(
        device="cuda" if harness.cuda else "cpu",
        examples=harness.examples_given if harness.examples_given is not None
        else default_examples(harness.cuda, search=True),
        call_timeout_s=harness.timeout_s,
        eval_timeout_s=options.evolve.eval_timeout_s,
        memory_limit_gib=harness.memory_limit_bytes / 2**30, rootdir=config.rootpath,
        stress=max(harness.stress, SEARCH_STRESS if harness.cuda else 0),
        compile_server=harness.compile_server, store=options.evolve.store,
        spare=harness.cuda)


@dataclass(frozen=True)
class Evaluation:
    fitness: Fitness
    report: dict[str, Any] | None
    wall_s: float


@dataclass(frozen=True)
class Placement:
    """Where an evaluation runs on this host (the scheduler's slot): the GPUs it sees and
    the lock it times under (``judge/gpu_lock.py``)."""

    env: tuple[tuple[str, str], ...] = ()
    gpu_lock: Path | None = None


def evaluate(path: Path, settings: EvalSettings, *, cascade: Cascade | None = None,
             time_left_s: float | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None,
             placement: Placement = Placement()) -> Evaluation:
    """``cascade``: only the search passes one, and never for its starting population.
    ``time_left_s``: what the run's time budget leaves; ending there is a cut, whereas
    ``eval_timeout_s`` is a limit the candidate is failed for outliving. ``on_progress``
    is given where the evaluation is (``live.py``) about twice a second while it runs."""
    started = time.monotonic()
    limit, budget_cut = limit_s(settings, time_left_s)
    spare = _spare_for(settings, placement) if settings.spare else None
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(spare.folder if spare is not None
                                          else harness_folder("eval")))
        if spare is not None:  # taken, never given its arguments (an error in between):
            stack.callback(lambda: spare.handed or spare.end())  # ended before its folder goes
        report_path = folder / "report.json"
        cascade_path = None
        if cascade is not None:
            cascade_path = folder / "cascade.json"
            cascade_path.write_text(cascade.to_json())
        progress_path = folder / "progress.json" if on_progress is not None else None
        argv = command(path, settings, report_path, cascade_path, progress_path)
        if placement.gpu_lock is not None:
            from ..options import GPU_LOCK_FLAG

            argv += [GPU_LOCK_FLAG, str(placement.gpu_lock)]
        if settings.spare:  # the next evaluation's, importing while this one runs
            _start_spare(settings, placement)
        try:
            status, output = run_in(folder, argv, settings.rootdir, placement, limit,
                                    progress_path, on_progress, spare)
        except subprocess.TimeoutExpired:
            fitness = (out_of_time(limit) if budget_cut else Fitness(
                False, f"evaluation timed out after {limit:g} s", {}, 0.0))
            return Evaluation(fitness, None, time.monotonic() - started)
        if not report_path.exists():
            # The candidate runs in the sandbox's child, so this is the harness's own fault.
            return Evaluation(harness_fault(f"pytest exited with status {status} and no "
                                            f"report: {last_line(output)}"),
                              None, time.monotonic() - started)
        report = json.loads(report_path.read_text())
    return Evaluation(from_report(candidate_entry(report)), report, time.monotonic() - started)


def harness_folder(kind: str) -> tempfile.TemporaryDirectory[str]:
    """The temporary folder of one harness process, named for the controller that owns it
    (``avo-<kind>-<pid>-...``), so that ``sweep`` can tell what a killed controller left."""
    return tempfile.TemporaryDirectory(prefix=f"avo-{kind}-{os.getpid()}-",
                                       ignore_cleanup_errors=True)


def sweep() -> int:
    """Remove the harness folders of controllers no longer alive (``kill -9`` leaves its
    evaluations' folders behind); how many went."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob("avo-*-*-*"):
        parts = folder.name.split("-")
        if not (folder.is_dir() and parts[1] in ("eval", "paired") and parts[2].isdigit()):
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        except PermissionError:  # alive, another user's
            pass
    return removed


#: What the session's own pytest was given through its environment: an evaluation is the
#: loop's exact command, not also ``PYTEST_ADDOPTS=-n 4`` or a worker's identity (under
#: which pytest-benchmark turns itself off) or plugins switched off.
_OUTER_PYTEST = re.compile(r"PYTEST_(ADDOPTS|PLUGINS|DISABLE_PLUGIN_AUTOLOAD|CURRENT_TEST"
                           r"|XDIST_\w+)")


def limit_s(settings: EvalSettings, time_left_s: float | None) -> tuple[float, bool]:
    """How long a harness process may run, and whether that limit is the run's time budget
    (ending there is a cut) rather than ``eval_timeout_s`` (a failure)."""
    if time_left_s is not None and time_left_s < settings.eval_timeout_s:
        return time_left_s, True
    return settings.eval_timeout_s, False


def run_in(folder: Path, argv: list[str], rootdir: Path, placement: Placement, limit: float,
           progress: Path | None = None,
           on_progress: Callable[[dict[str, Any]], None] | None = None,
           spare: Spare | None = None) -> tuple[int, bytes]:
    """Run one harness process (an evaluation, a paired timing) to its end: its temporary
    files under ``folder``, the harness importable, placed as the slot says; its exit status
    and output. Killed whole on any interruption, and after ``limit`` seconds
    (subprocess.TimeoutExpired). ``spare``: a pytest process already started in ``folder``
    for this slot (``argv`` is then pytest's), given its arguments instead of a new one."""
    proc = spare.hand(argv) if spare is not None else None
    if proc is None:
        proc = start(argv, cwd=rootdir, env=_environment(folder, placement))
    try:
        output = _wait(proc, limit, progress, on_progress)
    except BaseException:
        _end(proc)
        raise
    _forget(proc)
    return proc.returncode, output


def _environment(folder: Path, placement: Placement) -> dict[str, str]:
    """A harness process's environment: this one's, without the outer pytest's, temporary
    files under ``folder``, the harness importable, placed as the slot says."""
    (folder / "tmp").mkdir(exist_ok=True)
    package_root = str(Path(avo_harness.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not _OUTER_PYTEST.fullmatch(k)}
    env.update(TMPDIR=str(folder / "tmp"), PYTHONPATH=os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    env.update(placement.env)
    bytecode.for_harness(env)
    return env


@dataclass
class Spare:
    """A pytest process started for a slot before its candidate is known (``spare.py``),
    with the evaluation folder it will use."""

    proc: subprocess.Popen[bytes]
    folder: tempfile.TemporaryDirectory[str]
    handed: bool = False

    def hand(self, argv: list[str]) -> subprocess.Popen[bytes] | None:
        """Give the process pytest's part of ``argv``; None if it is no longer there to take
        it (then a new process is started, as without a spare)."""
        assert self.proc.stdin is not None and argv[1:3] == ["-m", "pytest"]
        self.handed = True
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps(argv[3:]).encode() + b"\n")
                self.proc.stdin.close()
                return self.proc
            except OSError:  # it ended between the poll and the write
                pass
        self.end()
        return None

    def end(self) -> None:
        """Stop the process (if it still runs: a reaped one's group id may be another's)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.proc.returncode is None:
            _end(self.proc)
        else:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            _forget(self.proc)

    def discard(self) -> None:
        """Stop it unused, and remove its folder."""
        self.end()
        self.folder.cleanup()


#: Spare processes by what they were started for: the interpreter, the project, the slot,
#: and the thread that started them, which alone may hand them on: a process dies with the
#: thread that started it (``_die_with_parent``), and an agent's step thread ends early.
_SPARES: dict[tuple[Any, ...], list[Spare]] = {}


def _spare_key(settings: EvalSettings, placement: Placement) -> tuple[Any, ...]:
    return settings.device, str(settings.rootdir), placement.env, threading.current_thread()


def close_spares() -> None:
    """Stop every spare still waiting, and remove its folder (the run has ended)."""
    with _RUNNING_LOCK:
        waiting = [spare for spares in _SPARES.values() for spare in spares]
        _SPARES.clear()
    for spare in waiting:
        spare.discard()


def _spare_for(settings: EvalSettings, placement: Placement) -> Spare | None:
    """A spare started for this slot, if one is waiting."""
    with _RUNNING_LOCK:
        waiting = _SPARES.get(_spare_key(settings, placement), [])
        return waiting.pop(0) if waiting else None


def _start_spare(settings: EvalSettings, placement: Placement) -> None:
    """Start the process of the next evaluation on this slot: it imports, then waits."""
    folder = harness_folder("eval")
    env = _environment(Path(folder.name), placement)
    proc = start([sys.executable, "-m", "avo_harness.evolve.spare", settings.device],
                 cwd=settings.rootdir, env=env, stdin=subprocess.PIPE)
    with _RUNNING_LOCK:
        _SPARES.setdefault(_spare_key(settings, placement), []).append(Spare(proc, folder))
        orphans = [key for key in _SPARES if not key[-1].is_alive()]
        left = [spare for key in orphans for spare in _SPARES.pop(key)]
    for spare in left:  # of threads that ended (their processes died with them)
        spare.discard()


def last_line(output: bytes) -> str:
    """The last line a harness process printed, for a one-line error."""
    tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return tail[0][:300]


def command(path: Path, settings: EvalSettings, report: Path, cascade: Path | None,
            progress: Path | None = None) -> list[str]:
    """The pytest command line that evaluates ``path``."""
    from ..options import CALIBRATION_FLAG, CASCADE_FLAG, PROGRESS_FLAG

    return [sys.executable, "-m", "pytest", str(path), "-p", "avo_harness.plugin",
            "-p", "no:cacheprovider", "--assert=plain", "-q",
            "--benchmark-quiet",
            "--rootdir", str(settings.rootdir), "--avo-report", str(report),
            "--avo-device", settings.device, "--avo-examples", str(settings.examples),
            "--avo-timeout", str(settings.call_timeout_s),
            "--avo-memory-limit", str(settings.memory_limit_gib),
            "--avo-stress", str(settings.stress),
            "--avo-compile-server", "on" if settings.compile_server else "off",
            *(["--avo-store", str(settings.store)] if settings.store is not None else []),
            *([CASCADE_FLAG, str(cascade)] if cascade is not None else []),
            *([CALIBRATION_FLAG, str(settings.calibration)] if settings.calibration else []),
            *([PROGRESS_FLAG, str(progress)] if progress is not None else [])]


_PR_SET_PDEATHSIG = 1
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it ends. In its own
    session, the evaluation would otherwise outlive a controller killed by ``kill -9`` (or
    a Ray worker lost mid-evaluation); the sandboxes under it die with it in turn."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


#: The evaluations' processes still running, for ``end_all``.
_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()


def start(argv: list[str], *, cwd: Path, env: dict[str, str],
          stdin: int | None = None) -> subprocess.Popen[bytes]:
    """An evaluation's process: its own process group (killed whole by ``_end``), its output
    in one pipe, dying with the thread that started it."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent)
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    return proc


def end_all() -> None:
    """Kill every evaluation still running (the run stops: Ctrl-C, an error). The threads
    waiting on them see a killed process and return."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        if proc.returncode is None:  # not reaped, so its group id is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def _wait(proc: subprocess.Popen[bytes], limit: float, progress: Path | None,
          on_progress: Callable[[dict[str, Any]], None] | None) -> bytes:
    """The process's output once it exited (subprocess.TimeoutExpired after ``limit`` s),
    telling ``on_progress`` what its progress file says meanwhile. The output is drained by
    a thread all along, so a chatty evaluation never blocks on a full pipe."""
    chunks: list[bytes] = []
    pipe = proc.stdout
    assert pipe is not None

    def read_all() -> None:
        with contextlib.suppress(OSError, ValueError):  # closed under it by a kill
            chunks.extend(iter(pipe.read1, b""))

    drain = threading.Thread(target=read_all, daemon=True)
    drain.start()
    deadline = time.monotonic() + limit
    while True:
        try:
            proc.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        state = live.read(progress) if progress is not None else None
        if state is not None and on_progress is not None:
            on_progress(state)
    drain.join(timeout=5)
    if not drain.is_alive():  # read to its end; else a process that escaped holds it open,
        pipe.close()  # and a close would wait for the read blocked in it
    return b"".join(chunks)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the evaluation's whole process group while its leader is not yet reaped (so the
    group's id is still its own), then reap it. The pipe is closed, not read to its end: a
    process that escaped the group could hold it open."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    _forget(proc)


def _forget(proc: subprocess.Popen[bytes]) -> None:
    with _RUNNING_LOCK:
        _RUNNING.discard(proc)
