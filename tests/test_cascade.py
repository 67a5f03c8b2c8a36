"""The cascade: an optimistic bound that never cuts a candidate the loop would commit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avo_harness.evolve.cascade import Cascade, from_lineage
from avo_harness.evolve.fitness import Fitness, accepts, commit_bar, from_report, geomean
from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.options import cascade_from

BEST = {"a": 2.0, "b": 8.0, "c": 4.0}


def test_a_slow_candidate_is_cut_as_soon_as_the_bound_says_so() -> None:
    cascade = Cascade(4.0, BEST, 1.0)
    # geomean(1, 8, 4) = 3.17 < 4: even the lineage's best everywhere else cannot save it.
    assert cascade.cannot_reach({"a": 1.0}, ["b", "c"])
    # geomean(2, 8, 4) = 4: the bar is reached (ties commit), so nothing is cut.
    assert not cascade.cannot_reach({"a": 2.0}, ["b", "c"])
    assert cascade.ceiling({"a": 1.0}, ["b", "c"]) == pytest.approx(32 ** (1 / 3))


def test_optimism_leaves_room_for_beating_the_lineages_best() -> None:
    # Faster than the lineage's best on b: geomean(1.5, 12, 4) = 4.16 >= 4, so it would be
    # committed; under the literal rule (1.0) it is cut after a, under 1.5 it is not.
    assert Cascade(4.0, BEST, 1.0).cannot_reach({"a": 1.5}, ["b", "c"])
    assert not Cascade(4.0, BEST, 1.5).cannot_reach({"a": 1.5}, ["b", "c"])
    assert Cascade(4.0, BEST, 1.5).cannot_reach({"a": 0.5}, ["b", "c"])


def test_a_configuration_the_lineage_never_timed_is_never_cut() -> None:
    cascade = Cascade(4.0, {"a": 2.0}, 1.0)
    assert not cascade.cannot_reach({"a": 0.001}, ["new"])
    assert cascade.ceiling({"a": 0.001}, ["new"]) is None


def test_optimism_zero_is_off() -> None:
    off = Cascade(4.0, BEST, 0)
    assert not off.cannot_reach({"a": 0.001}, ["b", "c"])
    assert off.ceiling({"a": 0.001}, ["b"]) is None


def test_the_cut_entry_is_what_fitness_reads_as_cut() -> None:
    cascade = Cascade(4.0, BEST, 1.0)
    entry = cascade.cut_entry({"a": 1.0}, ["b", "c"])
    assert entry == {"outcome": "cut", "reason": (
        "cut: slower: at most 3.175 TFLOP/s geomean with the 2 configurations left at 1x the "
        "lineage's best, below the commit bar 4")}
    fit = from_report({"correctness": {"outcome": "passed"}, "benchmarks": {
        "a": {"outcome": "passed", "tflops": 1.0}, "b": entry, "c": entry}})
    assert fit.cut == "slower" and not fit.passed and fit.scores == {"a": 1.0}


def test_json_round_trip_and_what_it_refuses() -> None:
    cascade = Cascade(4.0, BEST, 1.5)
    assert Cascade.from_json(cascade.to_json()) == cascade
    for text in ("{not json", "[]", '{"bar": 4, "best": {}}',
                 '{"bar": 4, "best": [], "optimism": 1}',
                 '{"bar": 0, "best": {}, "optimism": 1}',
                 '{"bar": 4, "best": {}, "optimism": 0.5}',
                 '{"bar": 4, "best": {}, "optimism": false}',
                 '{"bar": 4, "best": {"a": -1}, "optimism": 1}',
                 '{"bar": 4, "best": {"a": "fast"}, "optimism": 1}'):
        with pytest.raises(ValueError):
            Cascade.from_json(text)


def _record(status: str, scores: dict[str, float] | None) -> Record:
    return Record(id=1, run_id=1, generation=1, name="c", parents=[], operator="x",
                  rationale="", source="", source_hash=source_hash(""), status=status,
                  committed=False, reason=None, scores=scores, geomean=None, report=None,
                  operator_s=0.0, eval_s=0.0)


def test_the_lineage_best_counts_every_rate_a_correct_candidate_was_timed_at() -> None:
    records = [_record("passed", {"a": 2.0, "b": 1.0}), _record("passed", {"a": 1.0, "b": 3.0}),
               _record("cut-slower", {"a": 5.0}), _record("failed", {"a": 0.0, "c": 0.0}),
               _record("harness-error", {"c": 0.0}), _record("pending", None)]
    assert from_lineage(records, 2.0, 1.5) == Cascade(2.0, {"a": 5.0, "b": 3.0}, 1.5)


# Rates spanning the orders of magnitude the interpreter and a GPU give.
RATES = st.floats(1e-6, 1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 8), optimism=st.sampled_from([1.0, 1.25, 1.5, 2.0]),
       margin=st.sampled_from([0.0, 0.01, 0.05]))
def test_never_cuts_a_candidate_the_loop_would_commit(data: st.DataObject, n: int,
                                                       optimism: float, margin: float) -> None:
    """Whenever no configuration beats ``best * optimism``: committed means never cut, in any
    order of timing, after any prefix; a tie with the best (committed) included."""
    configs = [f"c{i}" for i in range(n)]
    best = {c: data.draw(RATES, label=f"best {c}") for c in configs}
    fractions = data.draw(st.lists(st.floats(1e-3, 1.0), min_size=n, max_size=n))
    scores = {c: best[c] * optimism * f for c, f in zip(configs, fractions)}
    # The best committed geomean: the candidate's own (a tie) or anything below or above it.
    committed = geomean(scores.values()) * data.draw(
        st.sampled_from([1.0, 1.0 / (1 - margin) if margin else 1.0, 0.5, 0.999999, 1.000001]))
    would_commit = accepts(Fitness(True, None, scores, geomean(scores.values())), committed,
                           margin)
    cascade = Cascade(commit_bar(committed, margin), best, optimism)
    order = data.draw(st.permutations(configs))
    for k in range(1, n + 1):
        timed = {c: scores[c] for c in order[:k]}
        if cascade.cannot_reach(timed, order[k:]):
            assert not would_commit, (timed, order[k:])
            break


def test_cascade_from_reads_the_option(pytester: pytest.Pytester, tmp_path: Path) -> None:
    assert cascade_from(pytester.parseconfig()) is None
    path = tmp_path / "cascade.json"
    path.write_text(Cascade(4.0, BEST, 1.5).to_json())
    assert cascade_from(pytester.parseconfig("--avo-cascade", str(path))) == Cascade(
        4.0, BEST, 1.5)


@pytest.mark.parametrize("content, message", [
    (None, "ERROR: --avo-cascade: {path}: [Errno 2] No such file or directory"),
    ("{not json", "ERROR: --avo-cascade: {path}: Expecting property name enclosed in double"),
    (json.dumps({"bar": 4, "best": {}, "optimism": 0.5}),
     "ERROR: --avo-cascade: {path}: the optimism must be 0 (off) or >= 1, not 0.5"),
])
def test_a_bad_cascade_is_one_line_usage_error(pytester: pytest.Pytester, content: str | None,
                                               message: str) -> None:
    path = pytester.path / "cascade.json"
    if content is not None:
        path.write_text(content)
    # A conftest reads it as the collector does, once the session is configured.
    pytester.makeconftest("from avo_harness.options import cascade_from\n\n"
                          "def pytest_configure(config):\n    cascade_from(config)\n")
    result = pytester.runpytest("--avo-cascade", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message.format(path=path)), result.errlines
