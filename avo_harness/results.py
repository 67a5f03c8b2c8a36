"""The report (schema ``avo-harness/report/1``, ``report.py``) as typed, frozen values.

The writers (``report.py`` and the collector's items) build the report as JSON; every reader
(the fitness, the loop's precision rule, the terminal summary, the agent's views, the HTML
page, the progress lines) reads it through these classes:

    report = Report.from_json(document)   # any JSON value: never raises
    entry = report.entry                  # the one candidate of an evaluation's report
    entry.correctness.failure.review(path)

``from_json`` is tolerant: a report comes back from a process that ran untrusted code and
may be of an older harness, so a missing key, or a value of the wrong type, reads as None
(a nested object as an empty one, a map as empty), never as an exception. ``to_json`` writes
back the JSON it was read from, key for key and in the same order: the keys a class does
not know are kept in ``extra``, the order of the keys read in ``json_keys``. Pure: no torch,
no pytest.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .phases import describe, listed

SCHEMA = "avo-harness/report/1"
#: The attribute of a candidate item's report that carries its file's entry so far: under
#: pytest-xdist the report travels from the worker that ran the item to the controller,
#: which writes the JSON report and prints the summary.
ENTRY = "avo_entry"

_N = TypeVar("_N", bound="_Node")


# What a key may hold; anything else reads as None.
def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any) -> float | None:
    """An int or a float, kept as it is (so that it writes back the same)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _object(value: Any) -> dict[str, Any] | None:
    """A JSON object whose inside this module does not type (an input case, an error map)."""
    return value if isinstance(value, dict) else None


def _text(value: Any) -> str | list[str] | None:
    """A message: a string, or (an error outside the checks) the last lines of pytest's."""
    if isinstance(value, str) or (isinstance(value, list)
                                  and all(isinstance(v, str) for v in value)):
        return value
    return None


def _key(parse: Callable[[Any], Any], dump: Callable[[Any], Any] | None = None,
         factory: Callable[[], Any] | None = None) -> Any:
    """A field read from (and written to) the JSON key of its name."""
    meta = {"parse": parse, "dump": dump or (lambda v: v)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=None, metadata=meta)


def _one(cls: type[_N]) -> Any:
    """A nested object that is always there (empty when the report lacks it)."""
    return _key(cls.from_json, lambda v: v.to_json(), cls)


def _maybe(cls: type[_N]) -> Any:
    """A nested object that a report may lack (None then)."""
    return _key(lambda v: cls.from_json(v) if isinstance(v, dict) else None,
                lambda v: None if v is None else v.to_json())


def _map(cls: type[_N]) -> Any:
    """``{name: object}``; an entry that is not an object is left out."""
    return _key(lambda v: {str(k): cls.from_json(x) for k, x in v.items() if isinstance(x, dict)}
                if isinstance(v, dict) else {},
                lambda v: {k: x.to_json() for k, x in v.items()}, dict)


@dataclass(frozen=True, kw_only=True)
class _Node:
    #: The keys of the JSON object read, in its order: ``to_json`` writes them back so.
    json_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)
    #: The keys this class does not know, with their values, as read.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _known(cls) -> dict[str, Any]:
        return {f.name: f for f in fields(cls) if "parse" in f.metadata}

    @classmethod
    def from_json(cls: type[_N], data: Any) -> _N:
        """Never raises: a value that is not an object reads as an empty one."""
        if not isinstance(data, dict):
            data = {}
        known = cls._known()
        values = {name: f.metadata["parse"](data[name]) for name, f in known.items()
                  if name in data}
        return cls(**values, json_keys=tuple(str(k) for k in data),
                   extra={str(k): v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The keys read, in their order (None where the report held null), then any other
        field set (not None), then the other unknown keys."""
        known = self._known()
        order = list(self.json_keys) + [n for n in known if n not in self.json_keys
                                        and getattr(self, n) is not None]
        order += [k for k in self.extra if k not in order]
        out: dict[str, Any] = {}
        for key in order:
            if key in known:
                value = getattr(self, key)
                out[key] = None if value is None else known[key].metadata["dump"](value)
            elif key in self.extra:
                out[key] = self.extra[key]
        return out


@dataclass(frozen=True, kw_only=True)
class Failure(_Node):
    """Why a candidate's correctness failed: the rule, the minimal failing input and the
    error statistics there (``judge.checker.Verdict``)."""

    rule: str | None = _key(_str)
    message: str | None = _key(_str)
    case: dict[str, Any] | None = _key(_object)
    replay: str | None = _key(_str)
    max_abs_err: float | None = _key(_num)
    rel_err: float | None = _key(_num)
    rms_err: float | None = _key(_num)
    tolerance: float | None = _key(_num)
    lowp_err: float | None = _key(_num)
    worst_index: dict[str, Any] | None = _key(_object)
    worst_value: float | None = _key(_num)
    worst_expected: float | None = _key(_num)
    n_exceeding: int | None = _key(_int)
    n_total: int | None = _key(_int)
    n_nan: int | None = _key(_int)
    n_inf: int | None = _key(_int)
    #: ``checker.error_map``: the error over the output's last two dimensions.
    error_map: dict[str, Any] | None = _key(_object)
    traceback: str | None = _key(_str)

    def review(self, path: Path) -> str:
        """The review of the failure, as printed under the failing item (and on the page)."""
        lines = [f"{path.name} is wrong (rule: {self.rule})"]
        if self.case is not None:
            lines.append("  minimal failing input: "
                         + " ".join(f"{k}={v}" for k, v in self.case.items()))
        if self.max_abs_err is not None:
            worst = self.worst_index or {}
            lines += [
                f"  max abs error {_g(self.max_abs_err, 4)} vs tolerance "
                f"{_g(self.tolerance, 4)} (2 x {_g(self.lowp_err, 4)}, the error of a plain "
                "torch reference in the input dtype, + 1 ulp)",
                f"  relative error (norm) {_g(self.rel_err, 4)}",
                "  worst element: " + ", ".join(f"{k}={v}" for k, v in worst.items())
                + f": got {_g(self.worst_value, 6)}, expected {_g(self.worst_expected, 6)}",
                f"  elements over tolerance: {self.n_exceeding}/{self.n_total}; "
                f"NaN: {self.n_nan}; Inf: {self.n_inf}",
            ]
        else:
            lines.append("  " + (self.message or ""))
        if self.replay is not None:
            lines.append(f"  replay: {self.replay}")
        if self.traceback:
            lines.append("  candidate traceback:\n" + self.traceback.rstrip())
        return "\n".join(lines)


def format_failure(path: Path, failure: Failure | Mapping[str, Any] | None) -> str:
    """``Failure.review`` of a failure as the report holds it (or as a collector builds it)."""
    if not isinstance(failure, Failure):
        failure = Failure.from_json(failure)
    return failure.review(path)


def _g(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:.{digits}g}"


@dataclass(frozen=True, kw_only=True)
class Correctness(_Node):
    #: passed, failed, error (raised outside the checks) or skipped.
    outcome: str | None = _key(_str)
    examples: int | None = _key(_int)
    #: Present only when correctness failed.
    failure: Failure | None = _maybe(Failure)
    #: An error's last lines of pytest's report (a list), or a message.
    message: str | list[str] | None = _key(_text)
    #: Why it was skipped.
    reason: str | None = _key(_str)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def message_text(self) -> str | None:
        """``message`` as one string (an error's list of lines joined)."""
        return " ".join(self.message) if isinstance(self.message, list) else self.message


@dataclass(frozen=True, kw_only=True)
class Stress(_Node):
    """``--avo-stress``: the runs on identical inputs, and whether compared bit for bit."""

    runs: int | None = _key(_int)
    exact: bool | None = _key(_bool)


@dataclass(frozen=True, kw_only=True)
class Timing(_Node):
    """The statistics of one configuration's timed rounds (``judge.timer.summarize``)."""

    rounds: int | None = _key(_int)
    median_s: float | None = _key(_num)
    iqr_s: float | None = _key(_num)
    min_s: float | None = _key(_num)
    mean_s: float | None = _key(_num)
    tflops: float | None = _key(_num)


@dataclass(frozen=True, kw_only=True)
class BenchResult(Timing):
    """One benchmark configuration of a candidate."""

    #: passed, failed (``rule``, ``message``), skipped (``reason``), error, or cut
    #: (``reason``: the cascade left it untimed).
    outcome: str | None = _key(_str)
    params: dict[str, Any] | None = _key(_object)
    clock: str | None = _key(_str)
    #: The configuration's physical floor on this machine.
    floor_s: float | None = _key(_num)
    wall_gap_s: float | None = _key(_num)
    protocol_s: float | None = _key(_num)
    stress: Stress | None = _maybe(Stress)
    rule: str | None = _key(_str)
    message: str | list[str] | None = _key(_text)
    reason: str | None = _key(_str)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def why(self) -> Any:
        """What a configuration that did not pass says of itself."""
        return self.message or self.reason or self.outcome


@dataclass(frozen=True, kw_only=True)
class PrecisionStats(_Node):
    """Of ``|out - truth| / tolerance`` over the verified timed outputs' elements."""

    max: float | None = _key(_num)
    rms: float | None = _key(_num)
    elements: int | None = _key(_int)


@dataclass(frozen=True, kw_only=True)
class Precision(_Node):
    configs: dict[str, PrecisionStats] = _map(PrecisionStats)
    overall: PrecisionStats | None = _maybe(PrecisionStats)

    def rms(self) -> dict[str, float]:
        """The RMS of each configuration that has one."""
        return {name: float(stats.rms) for name, stats in self.configs.items()
                if stats.rms is not None}


@dataclass(frozen=True, kw_only=True)
class PhaseSeconds(_Node):
    """``phases_s``: where a candidate file's seconds went (``phases.py``)."""

    start: float | None = _key(_num)
    compile: float | None = _key(_num)
    correctness: float | None = _key(_num)
    timing: float | None = _key(_num)
    calibration: float | None = _key(_num)
    total: float | None = _key(_num)

    def listed(self, unit: str = "") -> str:
        """``start 3.1, compile 12.0, ...`` (``phases.listed``)."""
        return listed(self.to_json(), unit)

    def describe(self) -> str:
        """``31.0 s: start 3.1, ...`` (``phases.describe``)."""
        return describe(self.to_json())


@dataclass(frozen=True, kw_only=True)
class CandidateResult(_Node):
    """One candidate file's entry in ``candidates``."""

    task: str | None = _key(_str)
    path: str | None = _key(_str)
    sha256: str | None = _key(_str)
    correctness: Correctness = _one(Correctness)
    benchmarks: dict[str, BenchResult] = _map(BenchResult)
    phases_s: PhaseSeconds | None = _maybe(PhaseSeconds)
    compile_ahead: dict[str, Any] | None = _key(_object)
    precision: Precision | None = _maybe(Precision)

    @classmethod
    def of(cls, entry: CandidateResult | Mapping[str, Any] | None) -> CandidateResult | None:
        """An entry as it is, or read from its JSON; None stays None."""
        if entry is None or isinstance(entry, CandidateResult):
            return entry
        return cls.from_json(entry)

    def precision_rms(self) -> dict[str, float]:
        """The RMS error over the tolerance of each configuration (none in older reports)."""
        return self.precision.rms() if self.precision is not None else {}


@dataclass(frozen=True, kw_only=True)
class OtherBaseline(Timing):
    """Another library on the same inputs and clock: timed, or ``absent`` with why not."""

    absent: str | None = _key(_str)


@dataclass(frozen=True, kw_only=True)
class Baseline(Timing):
    """The task's library implementation timed on one configuration in the same run."""

    name: str | None = _key(_str)
    clock: str | None = _key(_str)
    best_tflops: float | None = _key(_num)
    others: dict[str, OtherBaseline] = _map(OtherBaseline)


@dataclass(frozen=True, kw_only=True)
class Environment(_Node):
    """Where the numbers come from; timings compare only within one environment."""

    device: str | None = _key(_str)
    cuda: bool | None = _key(_bool)
    interpreter: bool | None = _key(_bool)
    clock: str | None = _key(_str)
    torch: str | None = _key(_str)
    triton: str | None = _key(_str)
    cuda_runtime: str | None = _key(_str)
    python: str | None = _key(_str)
    platform: str | None = _key(_str)
    sandbox: str | None = _key(_str)
    sandbox_missing: str | None = _key(_str)


@dataclass(frozen=True, kw_only=True)
class Report(_Node):
    """A whole ``avo-harness/report/1`` document."""

    schema: str | None = _key(_str)
    created: str | None = _key(_str)
    environment: Environment = _one(Environment)
    candidates: dict[str, CandidateResult] = _map(CandidateResult)
    baselines: dict[str, Baseline] = _map(Baseline)

    @classmethod
    def of(cls, report: Report | Mapping[str, Any] | None) -> Report:
        """A report as it is, or read from its JSON; None (no report) is an empty one."""
        return report if isinstance(report, Report) else cls.from_json(report)

    @property
    def entry(self) -> CandidateResult | None:
        """The candidate of an evaluation's report (an evaluation runs one file): the first
        entry, or None when there is none."""
        return next(iter(self.candidates.values()), None)


def candidate_entry(report: Report | Mapping[str, Any] | None) -> CandidateResult | None:
    """The one candidate entry of an evaluation's report (``Report.entry``)."""
    return Report.of(report).entry
