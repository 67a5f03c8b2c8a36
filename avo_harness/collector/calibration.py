"""What the collector measures of the machine, once per session and with the GPU to itself.

The ceilings and the protocol's cost (``judge.machine``), and the task's library baselines
timed by the same clock; ``--avo-calibration PATH`` keeps them from one evaluation to the
next, so every candidate of a run is held to the same floor, protocol cost and baseline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..judge.machine import PRIVATE, Machine, calibration_lock
from ..judge.timer import clock_name, summarize, time_in_process
from ..options import settings_of
from ..tasks import BenchConfig, Call, Task
from .keys import BASELINES_KEY, MACHINE_KEY, SAVES_STOPPED_KEY


def machine_of(config: pytest.Config) -> Machine:
    """The session's machine: kept from an earlier session (``load_calibration``), or
    measured as the items need it."""
    if MACHINE_KEY not in config.stash:
        settings = settings_of(config).harness
        _keep(config, Machine(settings.cuda, settings.timeout_s))
    return config.stash[MACHINE_KEY]


def _keep(config: pytest.Config, machine: Machine) -> None:
    config.stash[MACHINE_KEY] = machine
    config.add_cleanup(machine.close)


def _calibration_path(config: pytest.Config) -> Path | None:
    path = config.getoption("avo_calibration")
    return None if path is None else Path(path)


def load_calibration(config: pytest.Config, cuda: bool) -> None:
    """Start from the machine's measurements kept in ``--avo-calibration PATH`` (which
    ``--avo-evolve`` passes to its evaluations: the first measures, the others reuse).
    A file of another device, or none, or one that does not parse, is measured anew."""
    kept = Machine.kept(_calibration_path(config), cuda, settings_of(config).harness.timeout_s)
    if kept is not None:
        _keep(config, kept[0])
        config.stash[BASELINES_KEY] = kept[1]


def save_calibration(config: pytest.Config, cuda: bool) -> None:
    """Keep what this session measured of the machine for the next evaluation; after a
    save that found the file locked too long, no more (each would wait as long again)."""
    path = _calibration_path(config)
    machine = config.stash.get(MACHINE_KEY, None)
    if path is None or machine is None or machine.roofline is None or \
            config.stash.get(SAVES_STOPPED_KEY, False):
        return
    gpu_lock = config.getoption("avo_gpu_lock")
    try:
        machine.keep(path, config.stash.get(BASELINES_KEY, {}),
                     calibration_lock(path, Path(gpu_lock) if gpu_lock else None))
    except TimeoutError:
        config.stash[SAVES_STOPPED_KEY] = True
    except OSError:  # not kept: a later evaluation measures again, and no verdict changes
        pass


def catch_up(config: pytest.Config, cuda: bool, bench: BenchConfig) -> bool:
    """Before ``bench`` is timed, with the GPU's lock held: what another evaluation of the
    run measured of the machine since this one started and kept (``--avo-calibration``),
    merged in, so that the evaluations that start a run together measure it once. Whether
    ``bench``'s protocol cost or baseline is still to be measured (then ``save_calibration``
    after it: ``Machine.keep`` adds it to the file under the file's own lock)."""
    machine = machine_of(config)
    baselines = config.stash.setdefault(BASELINES_KEY, {})

    def missing() -> bool:
        return (cuda and bench.name not in machine.protocol) or bench.name not in baselines

    if not missing():
        return False
    kept = Machine.kept(_calibration_path(config), cuda, machine.timeout_s)
    if kept is not None:
        other, other_baselines = kept
        machine.roofline = machine.roofline or other.roofline
        machine.protocol = {**other.protocol, **machine.protocol}
        baselines.update({k: v for k, v in other_baselines.items() if k not in baselines})
    return missing()


def baseline(config: pytest.Config, task: Task, bench: BenchConfig,
             device: str) -> dict[str, Any] | None:
    """The task's library implementation timed on ``bench`` by the same clock, once per session.

    It runs here in the parent: it is trusted code, and the tripwires of the
    candidate's process would refuse it there.
    """
    baselines = config.stash.setdefault(BASELINES_KEY, {})
    if bench.name not in baselines:
        if task.baseline_name is None:
            return None
        cuda = device == "cuda"
        call = task.make_inputs({**bench.case, "seed": PRIVATE.randrange(2**31)}, device)

        def timed(run: Any) -> dict[str, Any]:
            times = time_in_process(lambda args: run(Call(args, call.kwargs)), call.args,
                                    cuda=cuda)
            return summarize(times, task.flops(bench.case))

        entry = {"name": task.baseline_name, "clock": clock_name(cuda), **timed(task.baseline)}
        # The other libraries, on the same inputs and clock: each one timed, or why not.
        others: dict[str, dict[str, Any]] = {}
        for name, run in task.extra_baselines(bench.case, device).items():
            try:
                others[name] = {"absent": run} if isinstance(run, str) else timed(run)
            except Exception as exc:  # a library's failure is no candidate's: say it, go on
                others[name] = {"absent": f"failed here ({type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"}
        if others:
            entry["others"] = others
            entry["best_tflops"] = max([entry["tflops"], *(o["tflops"] for o in others.values()
                                                           if "tflops" in o)])
        baselines[bench.name] = entry
    return baselines[bench.name]
