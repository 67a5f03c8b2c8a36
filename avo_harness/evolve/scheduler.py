"""The evaluation scheduler: several candidates evaluated at once, the lineage kept by the
controller alone.

An executor runs one evaluation per slot, each in a fresh process (``evaluate.py``) that
sees one GPU: :class:`LocalExecutor` on this host (``--avo-workers``; a GPU may hold two
slots, which compile and check at once but time one at a time under the GPU's lock), and
:class:`RayExecutor` on a Ray cluster (``--avo-ray``), each evaluation a task holding one
GPU, shipped the candidate's source and bringing its report back. Either way a submitted
job's future always resolves to a :class:`Done`: a lost worker or an executor's own error
becomes a harness error (no verdict on the candidate), which the loop retries once.
"""
from __future__ import annotations

import contextlib
import os
import queue
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Protocol

from ..tasks import helper_paths
from . import paired
from .evaluate import EvalSettings, Evaluation, Placement, evaluate
from .fitness import harness_fault
from .lineage import Record, now

if TYPE_CHECKING:
    from ..options import EvolveSettings
    from .cascade import Cascade

#: What the loop gives a running evaluation to report its progress to.
Watch = Callable[["Job"], ContextManager[Callable[[dict[str, Any]], None]]]


@dataclass(frozen=True)
class Job:
    record: Record
    #: The staged file holding the record's source (a seed's own file).
    path: Path
    settings: EvalSettings
    cascade: Cascade | None
    #: What the run's time budget left when the job was submitted (None: no budget).
    time_left_s: float | None
    #: What ``candidates/<task>/`` held when it started (the loop undoes changes after).
    before: frozenset[Path] = frozenset()
    attempt: int = 1


@dataclass(frozen=True)
class Done:
    job: Job
    evaluation: Evaluation
    #: The slot that ran it (``gpu0``, ``gpu0.1``, ``cpu0``, ``ray:<node>/gpu<i>``).
    worker: str
    started_at: str


@dataclass(frozen=True)
class Slot:
    name: str
    placement: Placement


class Executor(Protocol):
    #: How many evaluations it runs at once.
    capacity: int

    def submit(self, job: Job, watch: Watch) -> Future[Done]: ...

    def placement_for(self, lane: int) -> Placement:
        """Where the operator step in ``lane`` (0 to capacity - 1, one per step in flight)
        runs what it times itself, e.g. the agent's workbench."""

    def compare(self, pair: Pair) -> paired.Paired:
        """The paired timing of a candidate against the best (``paired.py``), on one GPU."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Pair:
    """A candidate about to be committed and the best it must not be slower than."""

    candidate: Record
    candidate_path: Path
    best: Record
    best_path: Path
    settings: EvalSettings
    rounds: int
    margin: float
    time_left_s: float | None
    #: The slot that evaluated the candidate: the pair is timed on its GPU.
    worker: str


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` names them for a child."""
    import torch

    count = torch.cuda.device_count()
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
             if d.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def local_slots(cuda: bool, workers: int | None, lock_dir: Path,
                gpus: list[str] | None = None) -> list[Slot]:
    """``workers`` slots (None: two per GPU, so that one compiles and checks while the other
    is timed; one on a CPU), dealt to the GPUs in turn; slots of one GPU share its lock."""
    if not cuda:
        return [Slot(f"cpu{i}", Placement()) for i in range(workers or 1)]
    gpus = visible_gpus() if gpus is None else gpus
    count = workers or 2 * len(gpus)
    slots = []
    for i in range(count):
        gpu = gpus[i % len(gpus)]
        share = i // len(gpus)
        slots.append(Slot(f"gpu{gpu}" + (f".{share}" if share else ""),
                          Placement(env=(("CUDA_VISIBLE_DEVICES", gpu),),
                                    gpu_lock=lock_dir / f"gpu{gpu}.lock")))
    return slots


def executor_for(settings: EvolveSettings, cuda: bool, task: str, lock_dir: Path) -> Executor:
    """``--avo-ray`` or this host's slots (``--avo-workers``); RayUnusable if Ray cannot
    serve."""
    if settings.ray:
        return RayExecutor(settings.ray, settings.workers, task)
    return LocalExecutor(local_slots(cuda, settings.workers, lock_dir))


class LocalExecutor:
    """Slots of this host, one thread each waiting on its evaluation's process."""

    def __init__(self, slots: list[Slot]) -> None:
        self.capacity = len(slots)
        self._free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        for slot in slots:
            self._free.put(slot)
        self._order = slots
        self._slots = {slot.name: slot for slot in slots}
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="avo-eval")

    def submit(self, job: Job, watch: Watch) -> Future[Done]:
        return self._pool.submit(self._run, job, watch)

    def _run(self, job: Job, watch: Watch) -> Done:
        slot = self._free.get()  # never waits: no more jobs are in flight than slots
        try:
            started = now()
            try:
                with watch(job) as show:
                    evaluation = evaluate(job.path, job.settings, cascade=job.cascade,
                                          time_left_s=job.time_left_s, on_progress=show,
                                          placement=slot.placement)
            except Exception as exc:  # the harness's own failure: no verdict, retried once
                evaluation = Evaluation(harness_fault(f"{slot.name}: {type(exc).__name__}: "
                                                      f"{exc}"), None, 0.0)
            return Done(job, evaluation, slot.name, started)
        finally:
            self._free.put(slot)

    def placement_for(self, lane: int) -> Placement:
        """The slots in the order dealt (``local_slots``: one GPU after another), so steps
        side by side spread over the GPUs, each timing under its GPU's lock."""
        return self._order[lane % len(self._order)].placement

    def compare(self, pair: Pair) -> paired.Paired:
        placement = self._slots.get(pair.worker, self._order[0]).placement
        return paired.compare(pair.candidate_path, pair.best_path, pair.settings, pair.rounds,
                              gpu_lock=placement.gpu_lock, time_left_s=pair.time_left_s,
                              margin=pair.margin, env=placement.env)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class RayExecutor:
    """Evaluations as Ray tasks of one GPU each. The harness package travels with them
    (``runtime_env``), so a node needs only the project's dependencies; the controller,
    the lineage and the operator stay where ``pytest --avo-evolve`` runs."""

    def __init__(self, address: str, workers: int | None, task: str) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            _connect(ray, address)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            raise RayUnusable(f"--avo-ray {address}: the cluster has no GPU to give an "
                              "evaluation (each holds one)")
        self.capacity = workers or gpus
        self.task = task
        self._ray = ray
        self._remote = ray.remote(num_gpus=1, max_retries=0)(_remote_evaluate)
        self._remote_compare = ray.remote(num_gpus=1, max_retries=1)(_remote_compare)
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="avo-ray")

    def submit(self, job: Job, watch: Watch) -> Future[Done]:
        return self._pool.submit(self._run, job, watch)

    def placement_for(self, lane: int) -> Placement:
        """This host as it is: the cluster's GPUs are Ray's to give, and no lock here is
        one its tasks time under."""
        return Placement()

    def _run(self, job: Job, watch: Watch) -> Done:
        record = job.record
        started = now()
        with watch(job):
            ref = self._remote.remote(self.task, record.name, record.source, job.settings,
                                      job.cascade, job.time_left_s, helpers_beside(job.path))
            try:
                evaluation, worker, started = self._ray.get(ref)
            except Exception as exc:  # a lost worker or node: RayError; never the candidate's
                text = str(exc).strip().splitlines()
                evaluation = Evaluation(harness_fault(
                    f"ray: {type(exc).__name__}: {text[0][:200] if text else ''}"), None, 0.0)
                worker = "ray"
        return Done(job, evaluation, worker, started)

    def compare(self, pair: Pair) -> paired.Paired:
        """On whichever GPU the cluster gives: both candidates are timed there, so the
        verdict never compares two GPUs."""
        ref = self._remote_compare.remote(
            self.task, pair.candidate.name, pair.candidate.source, pair.best.name,
            pair.best.source, pair.settings, pair.rounds, pair.margin, pair.time_left_s,
            helpers_beside(pair.best_path) | helpers_beside(pair.candidate_path))
        try:
            return self._ray.get(ref)
        except Exception as exc:  # a lost worker: no verdict
            text = str(exc).strip().splitlines()
            return paired.failed(pair.rounds, pair.margin, {
                "who": "harness", "stage": "controller", "rule": "harness-error",
                "message": f"ray: {type(exc).__name__}: {text[0][:200] if text else ''}"})

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class RayUnusable(Exception):
    """``--avo-ray`` cannot be used: the loop turns this into a one-line usage error."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnusable("--avo-ray: Ray is not installed (pip install -e '.[ray]')") from None
    return ray


def _connect(ray: Any, address: str) -> None:
    """``auto``: the cluster this host is part of, else a local one started here."""
    import avo_harness

    runtime_env = {"py_modules": [str(Path(avo_harness.__file__).parent)]}
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    except ConnectionError:
        if address != "auto":
            raise RayUnusable(f"--avo-ray {address}: no Ray cluster answers there") from None
        ray.init(runtime_env=runtime_env, log_to_driver=False)


def helpers_beside(path: Path) -> dict[str, str]:
    """The helper modules (``_*.py``) staged beside a candidate: what it imports, which a
    Ray worker's project of its own must hold too. Plain files only, never links."""
    return {p.name: p.read_text() for p in helper_paths(path.parent) if not p.is_symlink()}


def _stage_remote(folder: Path, helpers: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for name, text in helpers.items():
        (folder / Path(name).name).write_text(text)


def _node_calibration(settings: EvalSettings) -> Path | None:
    """Where a Ray node keeps the run's measurements of itself (they describe that machine)."""
    if settings.calibration is None:
        return None
    return Path(tempfile.gettempdir()) / f"avo-{settings.calibration.name}"


def _remote_evaluate(task: str, name: str, source: str, settings: EvalSettings,
                     cascade: Cascade | None, time_left_s: float | None,
                     helpers: dict[str, str]) -> tuple[Evaluation, str, str]:
    """On a Ray worker: the candidate staged in a project of its own, evaluated there. The
    machine's measurements are kept per node (they describe that machine)."""
    import ray

    context = ray.get_runtime_context()
    worker = f"ray:{context.get_node_id()[:8]}/gpu{','.join(map(str, ray.get_gpu_ids()))}"
    calibration = _node_calibration(settings)
    with tempfile.TemporaryDirectory(prefix="avo-ray-") as root:
        path = Path(root, "candidates", task, f"{name}.py")
        _stage_remote(path.parent, helpers)
        path.write_text(source)
        started = now()
        # No spare: each task has a project of its own, which no later one would share.
        evaluation = evaluate(path, replace(settings, rootdir=Path(root), spare=False,
                                            calibration=calibration),
                              cascade=cascade, time_left_s=time_left_s)
    return evaluation, worker, started


def _remote_compare(task: str, name: str, source: str, best_name: str, best_source: str,
                    settings: EvalSettings, rounds: int, margin: float,
                    time_left_s: float | None, helpers: dict[str, str]) -> paired.Paired:
    """On a Ray worker: both candidates staged in a project of their own, timed there."""
    with tempfile.TemporaryDirectory(prefix="avo-ray-") as root:
        folder = Path(root, "candidates", task)
        _stage_remote(folder, helpers)
        (folder / f"{name}.py").write_text(source)
        (folder / f"{best_name}.py").write_text(best_source)
        return paired.compare(folder / f"{name}.py", folder / f"{best_name}.py",
                              replace(settings, rootdir=Path(root),
                                      calibration=_node_calibration(settings)), rounds,
                              gpu_lock=None, time_left_s=time_left_s, margin=margin)


@contextlib.contextmanager
def unwatched(job: Job) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A ``Watch`` that shows nothing."""
    yield lambda state: None
