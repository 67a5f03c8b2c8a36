"""Every subtly wrong kernel fails correctness, by the rule that says how, with the minimal
failing input it was found on. They are the honest candidates (the seeds, the plain torch
attention of ``_base.py``) with one plausible bug each, and run in one CPU session at the
default number of examples, as ``pytest candidates/...`` in CI would: none may pass."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adversary import HERE, candidate, names, run_project
from avo_harness.results import format_failure
from avo_harness.tasks import get_task
from wrong.seed_bugs import ATTENTION, RMSNORM, Bug

PROJECT = HERE.parents[1]

# The rule each wrong kernel must fail by, with the task it is for.
EXPECTED: dict[str, tuple[str, str]] = {
    **{name: ("attention", "tolerance") for name in names("wrong/attention")},
    "bf16_output_dtype": ("attention", "output-dtype"),
    **{name: ("rmsnorm", "tolerance") for name in names("wrong/rmsnorm")},
    **{name: ("attention", "tolerance") for name in ATTENTION},
    **{name: ("rmsnorm", "tolerance") for name in RMSNORM},
}


def patched(text: str, edits: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each (old, new) edit made; each old text must occur exactly once."""
    for old, new in edits:
        assert text.count(old) == 1, f"not once in the seed: {old!r}"
        text = text.replace(old, new)
    return text


def sources() -> dict[str, str]:
    """Every wrong candidate by ``run_project`` name, with the helpers the seed's import."""
    found = {name: candidate("wrong/attention", name) for name in names("wrong/attention")}
    found.update({f"rmsnorm/{name}": (HERE / "wrong" / "rmsnorm" / f"{name}.py").read_text()
                  for name in names("wrong/rmsnorm")})
    attention = PROJECT / "candidates" / "attention"
    kernels, seed = (attention / "_triton_attention.py").read_text(), \
        (attention / "seed.py").read_text()
    for name, bug in ATTENTION.items():
        found[f"_{name}"] = _marked(bug, patched(kernels, bug.edits))
        found[name] = _marked(bug, patched(
            seed, (("from _triton_attention import", f"from _{name} import"),)))
    rmsnorm_seed = (PROJECT / "candidates" / "rmsnorm" / "seed.py").read_text()
    for name, bug in RMSNORM.items():
        found[f"rmsnorm/{name}"] = _marked(bug, patched(rmsnorm_seed, bug.edits))
    return found


def _marked(bug: Bug, source: str) -> str:
    """``source`` under a first line that says what is wrong with it (for its report)."""
    return f"# Wrong: {bug.why}.\n{source}"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    root = tmp_path_factory.mktemp("wrong")
    return run_project(root, sources(), "--avo-device", "cpu", "-k", "correctness",
                       timeout=1800)


def test_every_wrong_kernel_is_listed_and_its_seed_edits_apply() -> None:
    listed = [*names("wrong/attention"), *names("wrong/rmsnorm"), *ATTENTION, *RMSNORM]
    assert sorted(EXPECTED) == sorted(listed) and len(listed) == len(set(listed))
    assert len(EXPECTED) >= 15
    sources()  # raises if an edit no longer applies to the seed


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.slow
def test_wrong_kernel_fails_correctness_with_its_minimal_input(
        session: tuple[dict[str, Any], str], name: str) -> None:
    report, output = session
    task, rule = EXPECTED[name]
    correctness = report[name]["correctness"]
    assert correctness["outcome"] == "failed", (name, correctness, output[-3000:])
    failure = correctness["failure"]
    assert failure["rule"] == rule, (name, failure)
    # The input it was wrong on: a whole case of its task, with the command that replays it.
    keys = set(get_task(task).boundary_cases(large=False)[0])
    assert set(failure["case"]) == keys, failure
    assert "--avo-replay" in failure["replay"]
    review = format_failure(Path(f"{name}.py"), failure)
    assert "minimal failing input: " in review, review
    if rule == "tolerance":
        assert failure["n_exceeding"] > 0 and failure["worst_index"], failure
