"""The noise-aware commit rule: a candidate about to be committed is timed again, beside the
best, on the same device, and kept only if it is not slower beyond the spread it shows.

Two evaluations run at different times, perhaps on different GPUs, so their absolute
numbers carry the machine's noise; the controller never compares them across GPUs. Here
``judge.paired`` times both candidates in one process, interleaved (A, B, then B, A),
every timed output verified, and the controller, which never runs candidate code, reads
the statistic from what it wrote:

- per round r, g_r = the geometric mean over the benchmark configurations of
  t_best / t_candidate (the median seconds of each side's timed check): above 1 the
  candidate is faster;
- the estimate is the geometric mean of g_r over the rounds;
- the spread is the 95% Student-t interval of mean(log g_r), n - 1 degrees of freedom
  over n rounds (mean +- t(0.975, n - 1) x stdev / sqrt(n), exponentiated); with one
  round the interval is the point.

Verdict: ``slower`` when the interval's upper end is below 1 - margin (slower beyond the
spread: not committed), ``faster`` when its lower end is above 1, else ``tie`` (within the
noise: committed, as AVO's rule accepts ties); ``error`` when the measurement failed (not
committed; ``failure`` says whose fault it was: a harness fault is no verdict).
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from .evaluate import EvalSettings, Placement, harness_folder, last_line, limit_s, run_in
from .fitness import geomean

STATISTIC = ("g_r = geomean over configurations of t_best/t_candidate per round; estimate = "
             "geomean of g_r; spread = 95% Student-t interval of mean(log g_r)")


@dataclass(frozen=True)
class Paired:
    """What the paired timing found: the lineage keeps it beside the evaluation's own."""

    verdict: str
    #: One line, for the progress output and the lineage's reason.
    summary: str
    #: g_r of each round that came back whole, in order.
    ratios: tuple[float, ...]
    estimate: float | None
    low: float | None
    high: float | None
    margin: float
    rounds: int
    device: str | None = None
    #: The first failure (``judge.paired``'s record, or the controller's: timeout, no output).
    failure: dict[str, Any] | None = None
    #: The document ``judge.paired`` wrote, timings and all; None if none came back.
    measurement: dict[str, Any] | None = None
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "summary": self.summary, "statistic": STATISTIC,
                "margin": self.margin, "rounds": self.rounds, "ratios": list(self.ratios),
                "estimate": self.estimate,
                "interval": None if self.low is None else [self.low, self.high],
                "device": self.device, "failure": self.failure, "wall_s": round(self.wall_s, 3),
                "measurement": self.measurement}


def commits(paired: Paired, margin: float) -> bool:
    """Whether the paired timing lets the commit go ahead: measured, and not slower than
    1 - ``margin`` beyond the spread (ties within the noise are accepted)."""
    return paired.verdict != "error" and paired.high is not None and paired.high >= 1 - margin


def compare(candidate: Path, best: Path, settings: EvalSettings, rounds: int, *,
            gpu_lock: Path | None, time_left_s: float | None, margin: float = 0.0,
            env: tuple[tuple[str, str], ...] = ()) -> Paired:
    """Time ``candidate`` against ``best`` over ``rounds`` interleaved rounds in a fresh
    process group (``judge.paired``), killed whole after ``settings.eval_timeout_s`` or at
    ``time_left_s``, what the run's time budget leaves. The task is the candidate's folder's
    (``candidates/<task>/``); ``margin`` is the commit rule's (``--avo-margin``); ``gpu_lock``
    and ``env`` place it as the scheduler placed the candidate's evaluation
    (``evaluate.Placement``: its GPU's lock, and the GPUs it sees)."""
    if rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1, got {rounds}")
    started = time.monotonic()
    limit, budget_cut = limit_s(settings, time_left_s)
    with harness_folder("paired") as tmp:
        folder = Path(tmp)
        out = folder / "paired.json"
        try:
            status, output = run_in(folder, command(candidate, best, settings, rounds, out,
                                                    gpu_lock),
                                    settings.rootdir, Placement(env, gpu_lock), limit)
        except subprocess.TimeoutExpired:
            why = (("time budget", "the run's time budget ended it") if budget_cut else
                   ("timeout", "it timed out"))
            return failed(rounds, margin, {"who": None, "stage": "controller", "rule": why[0],
                                           "message": f"{why[1]} after {limit:g} s; its "
                                           "processes were killed"}, time.monotonic() - started)
        try:
            doc = json.loads(out.read_text())
        except (OSError, ValueError):
            return failed(rounds, margin, {
                "who": "harness", "stage": "controller", "rule": "harness-error",
                "message": f"the paired timing exited with status {status} and no "
                f"measurement: {last_line(output)}"}, time.monotonic() - started)
    return from_measurement(doc, margin, wall_s=time.monotonic() - started)


def command(candidate: Path, best: Path, settings: EvalSettings, rounds: int, out: Path,
            gpu_lock: Path | None) -> list[str]:
    """The command line of ``judge.paired`` for one comparison."""
    return [sys.executable, "-m", "avo_harness.judge.paired", "--task", candidate.parent.name,
            "--device", settings.device, "--rounds", str(rounds), "--out", str(out),
            "--timeout", str(settings.call_timeout_s),
            "--memory-limit", str(settings.memory_limit_gib), "--root", str(settings.rootdir),
            *(["--gpu-lock", str(gpu_lock)] if gpu_lock is not None else []),
            *(["--compile-cache", str(cache)] if (cache := settings.compile_cache()) else []),
            *(["--calibration", str(settings.calibration)] if settings.calibration else []),
            str(candidate.resolve()), str(best.resolve())]


def from_measurement(doc: dict[str, Any], margin: float, *, wall_s: float = 0.0) -> Paired:
    """The statistic and the verdict of what ``judge.paired`` wrote."""
    rounds, device = int(doc["rounds"]), doc.get("device")
    if doc["failures"]:
        return failed(rounds, margin, doc["failures"][0], wall_s, doc, device)
    ratios = round_ratios(doc["timings"], doc["configs"])
    if len(ratios) < rounds:
        return failed(rounds, margin, {"who": "harness", "stage": "timing",
                                        "rule": "harness-error", "message": f"{len(ratios)} of "
                                        f"{rounds} rounds came back whole"}, wall_s, doc, device)
    estimate, low, high = interval(ratios)
    verdict = verdict_of(low, high, margin)
    words = {"faster": "faster beyond the spread",
             "tie": "a tie within the spread (accepted)",
             "slower": f"slower beyond the spread (below {1 - margin:g}): not committed"}
    summary = (f"paired over {rounds} round{'s' * (rounds > 1)} on {device}: {estimate:.3f}x "
               f"the best's speed (95% interval {low:.3f}x to {high:.3f}x): {words[verdict]}")
    return Paired(verdict, summary, ratios, estimate, low, high, margin, rounds, device, None,
                  doc, wall_s)


def round_ratios(timings: Sequence[dict[str, Any]], configs: Sequence[str]
                 ) -> tuple[float, ...]:
    """g_r of each round that timed both sides on every configuration."""
    ratios = []
    for entry in timings:
        medians = entry["median_s"]
        if all(set(medians.get(name, {})) >= {"candidate", "best"} for name in configs):
            ratios.append(geomean(medians[n]["best"] / medians[n]["candidate"]
                                  for n in configs))
    return tuple(ratios)


def interval(ratios: Sequence[float]) -> tuple[float, float, float]:
    """The geometric mean of ``ratios`` and its 95% Student-t interval (on the logs)."""
    logs = [math.log(g) for g in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return (math.exp(mean),) * 3
    half = t_quantile(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def verdict_of(low: float, high: float, margin: float) -> str:
    if high < 1 - margin:
        return "slower"
    return "faster" if low > 1 else "tie"


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for ``p`` >= 0.5 and an integer ``df`` >= 1, by bisection on the
    CDF's closed form (Abramowitz & Stegun 26.7.3 and 26.7.4): no SciPy needed."""
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0: 1/2 + A(t | df) / 2, A the probability of |T| < t."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        term, total = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= 2 * k / (2 * k + 1) * c2
        a = 2 / math.pi * (theta + math.sin(theta) * total)
    else:
        term, total = 1.0, 0.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= (2 * k - 1) / (2 * k) * c2
        a = math.sin(theta) * total
    return 0.5 + a / 2


def failed(rounds: int, margin: float, failure: dict[str, Any], wall_s: float = 0.0,
            doc: dict[str, Any] | None = None, device: str | None = None) -> Paired:
    """The ``error`` verdict, with the failure in one line."""
    where = " ".join(str(failure[k]) for k in ("who", "stage") if failure.get(k))
    message = str(failure.get("message", "")).strip().splitlines()
    reason = f"{failure.get('rule')}: {message[0] if message else ''}"
    summary = f"paired timing failed ({where}): {reason}"[:300]
    return Paired("error", summary, (), None, None, None, margin, rounds, device, failure, doc,
                  wall_s)
