"""The noise-aware commit rule's measurement: ``judge.paired`` times a candidate and the best
interleaved in their sandboxes, ``evolve.paired`` reads the statistic and the verdict."""
from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from avo_harness.evolve.evaluate import EvalSettings
from avo_harness.evolve.paired import Paired, commits, compare, from_measurement, t_quantile
from avo_harness.judge import machine
from avo_harness.judge import paired as judge
from avo_harness.judge.sandbox import SandboxSettings, candidate_settings
from avo_harness.tasks import get_task

SEED = (Path(__file__).parents[1] / "candidates" / "rmsnorm" / "seed.py").read_text()
TASK = get_task("rmsnorm")
#: t(0.975, 2) from its closed form: P(|T| < t) = t / sqrt(2 + t^2) with two degrees of freedom.
T2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))


def _measured(*rounds: dict[str, float]) -> dict[str, Any]:
    """A ``judge.paired`` document whose round r times the candidate at 2 s on each
    configuration and the best at ratio x 2 s, as ``rounds[r]`` gives the ratios."""
    return {"format": judge.FORMAT, "device": "cpu", "rounds": len(rounds),
            "configs": list(rounds[0]), "failures": [],
            "timings": [{"round": i + 1, "first": judge.SIDES[i % 2],
                         "median_s": {name: {"candidate": 2.0, "best": 2.0 * ratio}
                                      for name, ratio in ratios.items()}}
                        for i, ratios in enumerate(rounds)]}


def _logs(*logs: float) -> list[dict[str, float]]:
    """Rounds of two configurations whose geometric mean ratio is e^log: e^(log + 0.2) and
    e^(log - 0.2)."""
    return [{"a": math.exp(g + 0.2), "b": math.exp(g - 0.2)} for g in logs]


def test_student_t_quantiles_are_the_tables() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    assert t_quantile(0.975, 2) == pytest.approx(T2, rel=1e-12)
    for df, table in ((3, 3.182446), (9, 2.262157), (10, 2.228139), (30, 2.042272)):
        assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-6)


def test_one_round_is_its_own_interval() -> None:
    paired = from_measurement(_measured({"a": 2.0, "b": 4.5}), 0.0)
    assert paired.ratios == pytest.approx((3.0,))  # the geometric mean of 2 and 4.5
    assert (paired.estimate, paired.low, paired.high) == pytest.approx((3.0, 3.0, 3.0))
    assert paired.verdict == "faster" and commits(paired, 0.0)
    assert paired.summary == ("paired over 1 round on cpu: 3.000x the best's speed (95% "
                              "interval 3.000x to 3.000x): faster beyond the spread")


@pytest.mark.parametrize("logs, verdict", [
    ((0.1, -0.1, 0.0), "tie"),
    ((0.4, 0.5, 0.6), "faster"),
    ((-0.4, -0.5, -0.6), "slower"),
])
def test_three_rounds_give_the_student_t_interval_on_the_logs(
        logs: tuple[float, ...], verdict: str) -> None:
    paired = from_measurement(_measured(*_logs(*logs)), 0.0)
    mean = sum(logs) / 3  # the stdev of each set of logs is 0.1
    half = T2 * 0.1 / math.sqrt(3)
    assert paired.ratios == pytest.approx(tuple(math.exp(g) for g in logs))
    assert paired.estimate == pytest.approx(math.exp(mean))
    assert (paired.low, paired.high) == pytest.approx((math.exp(mean - half),
                                                       math.exp(mean + half)))
    assert paired.verdict == verdict and commits(paired, 0.0) == (verdict != "slower")
    assert paired.rounds == 3 and paired.failure is None


def test_many_rounds_narrow_the_interval_past_one() -> None:
    logs = [0.02 + 0.01 * (-1) ** r for r in range(10)]  # 0.03, 0.01, ...: mean 0.02
    paired = from_measurement(_measured(*_logs(*logs)), 0.0)
    half = 2.2621571628 * 0.01 * math.sqrt(10 / 9) / math.sqrt(10)  # t(0.975, 9), stdev
    assert (paired.estimate, paired.low, paired.high) == pytest.approx(
        (math.exp(0.02), math.exp(0.02 - half), math.exp(0.02 + half)), rel=1e-9)
    assert paired.verdict == "faster" and len(paired.ratios) == 10


def test_equal_times_are_a_tie_and_the_margin_forgives_a_small_loss() -> None:
    same = from_measurement(_measured(*_logs(0.0, 0.0)), 0.0)
    assert (same.low, same.high) == pytest.approx((1.0, 1.0)) and same.verdict == "tie"
    slower = _measured(*_logs(-0.1, -0.12, -0.08))
    high = math.exp(-0.1 + T2 * 0.02 / math.sqrt(3))  # 0.952: below 1, above 1 - 0.1
    assert from_measurement(slower, 0.0).high == pytest.approx(high)
    assert from_measurement(slower, 0.0).verdict == "slower"
    within = from_measurement(slower, 0.1)
    assert within.verdict == "tie" and within.margin == 0.1
    assert commits(within, 0.1) and not commits(within, 0.0)


def test_a_failure_or_a_missing_round_is_an_error_in_one_line() -> None:
    failed = _measured(*_logs(0.0, 0.0))
    failed["failures"] = [{"who": "best", "stage": "timing", "round": 2, "config": "a",
                           "rule": "tolerance", "message": "round 3: max abs error 1\nmore"}]
    paired = from_measurement(failed, 0.0)
    assert paired.verdict == "error" and not commits(paired, 0.0) and paired.ratios == ()
    assert paired.summary == ("paired timing failed (best timing): tolerance: round 3: max abs "
                              "error 1")
    short = _measured(*_logs(0.0, 0.0))
    del short["timings"][1]["median_s"]["b"]["best"]
    paired = from_measurement(short, 0.0)
    assert paired.verdict == "error" and paired.failure is not None
    assert paired.summary.endswith("harness-error: 1 of 2 rounds came back whole")


def test_the_lineage_record_keeps_the_measurement_and_the_statistic() -> None:
    doc = _measured(*_logs(0.1, -0.1, 0.0))
    record = json.loads(json.dumps(from_measurement(doc, 0.05).to_json()))
    assert record["measurement"] == doc and record["verdict"] == "tie"
    assert record["margin"] == 0.05 and record["rounds"] == 3 and len(record["ratios"]) == 3
    assert record["interval"][0] < record["estimate"] < record["interval"][1]
    assert "Student-t" in record["statistic"]


# judge.paired itself, in this process.
def _settings(root: Path) -> SandboxSettings:
    files = [root / "candidates" / "rmsnorm" / f"{name}.py" for name in judge.SIDES]
    return candidate_settings(files, cuda=False, timeout_s=60, memory_limit_bytes=8 << 30,
                              protected=[root.resolve(), (root / "out.json").resolve()])


def test_each_round_alternates_who_goes_first_with_the_gpu_lock_held(
        make_project: Callable[..., Path], honest_rmsnorm: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project({"candidate": honest_rmsnorm, "best": honest_rmsnorm}, "rmsnorm")
    lock = root / "gpu.lock"
    names = {tuple(c.case["shape"]): c.name for c in TASK.bench_configs(cuda=False)}
    seen: list[tuple[str, str, bool]] = []
    real = machine.check_timed

    def spy(task: Any, box: Any, case: Any, device: str, **kwargs: Any) -> Any:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
        finally:
            os.close(fd)
        seen.append((box.path.stem, names[tuple(case["shape"])], held))
        return real(task, box, case, device, **kwargs)

    monkeypatch.setattr(machine, "check_timed", spy)
    folder = root / "candidates" / "rmsnorm"
    doc = judge.run(TASK, folder / "candidate.py", folder / "best.py", 2, cuda=False,
                    settings=_settings(root), gpu_lock_path=lock)
    a, b = names.values()
    assert seen == [("candidate", a, True), ("best", a, True), ("candidate", b, True),
                    ("best", b, True), ("best", a, True), ("candidate", a, True),
                    ("best", b, True), ("candidate", b, True)]
    assert doc["failures"] == [] and doc["device"] == "cpu" and doc["rounds"] == 2
    assert [t["first"] for t in doc["timings"]] == ["candidate", "best"]
    assert all(s > 0 for t in doc["timings"] for m in t["median_s"].values()
               for s in m.values())


def test_a_source_the_scan_refuses_starts_no_sandbox(
        make_project: Callable[..., Path], honest_rmsnorm: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cheat = "import torch\n\ndef rmsnorm(x, weight, eps=1e-6):\n" \
            "    return torch.rms_norm(x, (x.shape[-1],), weight, eps)\n"
    root = make_project({"candidate": cheat, "best": honest_rmsnorm}, "rmsnorm")
    monkeypatch.setattr(judge, "Sandbox", lambda *a, **k: pytest.fail("a sandbox started"))
    folder = root / "candidates" / "rmsnorm"
    doc = judge.run(TASK, folder / "candidate.py", folder / "best.py", 2, cuda=False,
                    settings=_settings(root), gpu_lock_path=None)
    (failure,) = doc["failures"]
    assert (failure["who"], failure["stage"], failure["rule"]) == \
        ("candidate", "scan", "forbidden-call")
    assert doc["timings"] == [] and "rms_norm" in failure["message"]


@pytest.mark.parametrize("first", ["candidate", "best"])
def test_both_sides_warm_up_at_once_and_the_candidate_s_failure_is_the_one_reported(
        make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        first: str) -> None:
    broken = "raise ImportError('no such kernel')\n"
    root = make_project({"candidate": broken, "best": broken}, "rmsnorm")
    together = threading.Barrier(2, timeout=30)  # broken unless both sides warm up at once
    real = judge._warm

    def warm(task: Any, who: str, *args: Any) -> None:
        together.wait()
        if who != first:  # the other side fails later
            time.sleep(0.5)
        real(task, who, *args)

    monkeypatch.setattr(judge, "_warm", warm)
    folder = root / "candidates" / "rmsnorm"
    doc = judge.run(TASK, folder / "candidate.py", folder / "best.py", 2, cuda=False,
                    settings=_settings(root), gpu_lock_path=None)
    (failure,) = doc["failures"]
    assert (failure["who"], failure["stage"]) == ("candidate", "warm-up")
    assert "no such kernel" in failure["message"] and doc["timings"] == []


def test_the_run_s_calibration_is_used_and_not_measured_again(
        make_project: Callable[..., Path], honest_rmsnorm: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project({"candidate": honest_rmsnorm, "best": honest_rmsnorm}, "rmsnorm")
    kept = root / "calibration.json"
    machine.Machine(False, 60, machine.Roofline("kept cpu", 1e12, 1e11)).keep(kept, {})
    measured: list[bool] = []
    monkeypatch.setattr(machine, "measure", lambda cuda: measured.append(cuda) or
                        machine.Roofline("measured cpu", 1e12, 1e11))
    folder = root / "candidates" / "rmsnorm"
    doc = judge.run(TASK, folder / "candidate.py", folder / "best.py", 1, cuda=False,
                    settings=_settings(root), gpu_lock_path=None, calibration=kept)
    assert doc["failures"] == [] and doc["device"] == "kept cpu" and measured == []
    doc = judge.run(TASK, folder / "candidate.py", folder / "best.py", 1, cuda=False,
                    settings=_settings(root), gpu_lock_path=None,
                    calibration=root / "none.json")
    assert doc["device"] == "measured cpu" and measured == [False]


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_the_measurement_shares_the_run_s_compile_cache_and_calibration(
        tmp_path: Path, device: str) -> None:
    from avo_harness.evolve.paired import command

    settings = EvalSettings(device, 2, 60.0, 300.0, 8.0, tmp_path, store=tmp_path / "store",
                            calibration=tmp_path / "store" / "calibration" / "run-1.json")
    argv = command(tmp_path / "a.py", tmp_path / "b.py", settings, 3, tmp_path / "o.json", None)
    assert argv[argv.index("--calibration") + 1] == str(settings.calibration)
    if device == "cuda":
        assert argv[argv.index("--compile-cache") + 1] == str(tmp_path / "store" /
                                                              "compile-cache")
    else:  # the interpreter compiles nothing
        assert "--compile-cache" not in argv


# compare(): judge.paired in a fresh process group, as the loop runs it.
def _compare(root: Path, rounds: int = 2, *, call_timeout_s: float = 60.0,
             eval_timeout_s: float = 300.0, time_left_s: float | None = None,
             env: tuple[tuple[str, str], ...] = ()) -> Paired:
    folder = root / "candidates" / "rmsnorm"
    settings = EvalSettings("cpu", 2, call_timeout_s, eval_timeout_s, 8.0, root)
    return compare(folder / "candidate.py", folder / "best.py", settings, rounds,
                   gpu_lock=root / "gpu.lock", time_left_s=time_left_s, env=env)


@pytest.mark.slow
def test_the_seed_against_itself_is_a_tie(make_project: Callable[..., Path]) -> None:
    root = make_project({"candidate": SEED, "best": SEED}, "rmsnorm")
    # Identical code: a 95% interval misses 1 in 5% of comparisons by construction, so one
    # more comparison is allowed (both miss in 0.25%).
    for _ in range(2):
        paired = _compare(root)
        if paired.verdict == "tie":
            break
    assert paired.verdict == "tie", paired.summary
    assert commits(paired, 0.0) and len(paired.ratios) == 2 and paired.device == "cpu"
    assert paired.low is not None and paired.low <= 1 <= paired.high  # type: ignore[operator]
    assert paired.measurement is not None and paired.measurement["rounds"] == 2
    assert [t["first"] for t in paired.measurement["timings"]] == ["candidate", "best"]
    assert "paired over 2 rounds on cpu" in paired.summary


def test_a_much_slower_candidate_is_slower_beyond_the_spread(
        make_project: Callable[..., Path], honest_rmsnorm: str) -> None:
    # Both sleep, so that the best's time is not a millisecond a busy machine makes noisy.
    def sleeping(seconds: float) -> str:
        return "import time\n" + honest_rmsnorm.replace(
            "    x64 = x.double()", f"    time.sleep({seconds})\n    x64 = x.double()")

    root = make_project({"candidate": sleeping(0.1), "best": sleeping(0.01)}, "rmsnorm")
    # ``env`` reaches the measurement's process (here: the sandbox's switch).
    paired = _compare(root, 3, env=(("AVO_SANDBOX", "off"),))
    assert paired.verdict == "slower", paired.summary
    assert paired.measurement is not None and \
        paired.measurement["sandbox"] == "in-process only"
    assert not commits(paired, 0.0) and paired.high is not None and paired.high < 0.5
    assert "slower beyond the spread" in paired.summary and len(paired.ratios) == 3


def test_a_wrong_candidate_is_an_error_with_a_one_line_reason(
        make_project: Callable[..., Path], honest_rmsnorm: str) -> None:
    wrong = honest_rmsnorm.replace("return y.to(x.dtype)", "return (1.5 * y).to(x.dtype)")
    root = make_project({"candidate": wrong, "best": honest_rmsnorm}, "rmsnorm")
    paired = _compare(root)
    assert paired.verdict == "error" and not commits(paired, 0.0)
    assert paired.failure is not None and paired.failure["rule"] == "tolerance"
    assert (paired.failure["who"], paired.failure["round"]) == ("candidate", 1)
    assert paired.summary.startswith("paired timing failed (candidate timing): tolerance: ")
    assert "\n" not in paired.summary and len(paired.summary) <= 300


def _alive_naming(path: Path) -> list[int]:
    """Processes (not zombies) whose command line names ``path``, a few seconds after."""
    deadline = time.monotonic() + 5
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes() and \
                        (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


HANG = "import time\n\ndef rmsnorm(x, weight, eps=1e-6):\n    time.sleep(3600)\n"


@pytest.mark.parametrize("limits, rule, message", [
    ({"call_timeout_s": 8.0}, "timeout", "no answer to 'call' within 8 s"),
    ({"eval_timeout_s": 15.0}, "timeout", "it timed out after 15 s; its processes were killed"),
    ({"time_left_s": 5.0}, "time budget", "the run's time budget ended it after 5 s"),
])
def test_a_hanging_candidate_is_killed_at_the_timeout(
        make_project: Callable[..., Path], honest_rmsnorm: str, limits: dict[str, float],
        rule: str, message: str) -> None:
    root = make_project({"candidate": HANG, "best": honest_rmsnorm}, "rmsnorm")
    started = time.monotonic()
    paired = _compare(root, **limits)
    assert time.monotonic() - started < 60
    assert paired.verdict == "error" and paired.failure is not None
    assert paired.failure["rule"] == rule and message in paired.failure["message"]
    assert _alive_naming(root / "candidates" / "rmsnorm" / "candidate.py") == []
