"""The knowledge base: one per task, its sections, its search (the task's own material
first), the installed Triton's reference, and its numbers against the measurements."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from avo_harness.agent.knowledge import Knowledge
from avo_harness.agent.tools import TOOLS

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return Knowledge.load("attention")


SHARED = {"harness", "hopper", "triton", "triton-api"}


@pytest.mark.parametrize("task", ["attention", "rmsnorm"])
def test_each_task_has_its_own_base_cut_into_sections(task: str) -> None:
    knowledge = Knowledge.load(task)
    own = {f"{task}/contract", f"{task}/notes", f"{task}/baselines"}
    assert set(knowledge.files) == own | SHARED
    assert list(knowledge.files)[:3] == sorted(own)  # listed first in the contents
    for name in knowledge.files:
        assert sum(s.id.startswith(name + "#") for s in knowledge.sections) >= 3, name
    lines = knowledge.contents().splitlines()
    assert len(lines) == len(knowledge.sections)
    assert len({s.id for s in knowledge.sections}) == len(knowledge.sections)
    # No other task's material: the rmsnorm agent reads nothing of attention's, and back.
    other = {"attention": "rmsnorm", "rmsnorm": "attention"}[task]
    assert not any(name.startswith(other) for name in knowledge.files)


@pytest.mark.parametrize("query, section", [
    ("TMA tensor descriptor 16-byte alignment", "triton#tensor-descriptors-tma"),
    ("explicit sm_scale default None", "attention/contract#signature-and-semantics"),
    ("conditional rescaling threshold tau", "attention/notes#conditional-lazy-rescaling"),
    ("L2 flush CUDA events median rounds", "harness#timing-benchmark-items"),
    ("cuDNN TFLOP/s d128-n4096-gqa4", "attention/baselines#the-suite-timed-by-the-harness"),
    ("registers per thread occupancy warps per SM", "hopper#the-sm-s-resources-and-occupancy"),
])
def test_search_ranks_the_section_that_answers_first(knowledge: Knowledge, query: str,
                                                     section: str) -> None:
    assert knowledge.search(query)[0].id == section


def test_the_search_answers_from_the_current_task_first() -> None:
    rmsnorm = Knowledge.load("rmsnorm")
    assert rmsnorm.search("eps default contract")[0].id == "rmsnorm/contract#signature-and-" \
                                                            "semantics"
    # A query that shared material answers as well: the task's own section comes first, and
    # without the boost it would not.
    query = "shared memory registers spills"
    assert rmsnorm.search(query)[0].id.startswith("rmsnorm/")
    plain = Knowledge(rmsnorm.files)  # the same files, no task: no boost
    assert not plain.search(query)[0].id.startswith("rmsnorm/")


def test_the_triton_reference_is_the_installed_version(knowledge: Knowledge) -> None:
    import triton
    import triton.language as tl

    api = knowledge.read("triton-api")
    assert api.startswith(f"# Triton language reference (triton {triton.__version__}")
    assert "- `tl.load(pointer, mask=None, other=None" in api and "_semantic" not in api
    # Every public function of the installed triton.language is in it.
    functions = [n for n in tl.__all__ if callable(getattr(tl, n))
                 and not isinstance(getattr(tl, n), tl.dtype)]
    assert all(f"`tl.{n}(" in api for n in functions), [n for n in functions
                                                         if f"`tl.{n}(" not in api]
    assert knowledge.search("make_tensor_descriptor block_shape strides")[0].id in (
        "triton#tensor-descriptors-tma", "triton-api#memory-and-pointer-ops")


def test_read_a_section_or_a_file_and_unknown_ids(knowledge: Knowledge) -> None:
    assert knowledge.read("attention/baselines").startswith("# Measured baselines")
    assert "num_programs" in knowledge.read("triton#persistent-kernels")
    with pytest.raises(KeyError, match="no section 'triton#nope'; files: attention/"):
        knowledge.read("triton#nope")
    # The id the read_knowledge tool gives as its example exists.
    example = re.search(r"e\.g\. '([^']+)'", TOOLS["read_knowledge"].description)
    assert example and knowledge.read(example.group(1))


def test_the_baselines_are_the_measured_numbers(knowledge: Knowledge) -> None:
    measured = json.loads((ROOT / "benchmarks/results/attention-h100.json").read_text())
    suite = knowledge.read("attention/baselines#the-suite-timed-by-the-harness")
    table = {cells[0]: cells for cells in (
        [c.strip().strip("*") for c in line.strip("|").split("|")]
        for line in suite.splitlines() if line.startswith("| d"))}
    assert len(table) == len(measured["rows"]) == 16
    for row in measured["rows"]:
        cells = table[row["config"]]
        got = [float(c) for c in cells[3:7]]
        want = [row["tflops"][k] for k in ("cudnn", "flash", "efficient", "seed")]
        assert got == pytest.approx(want, abs=0.051), row["config"]


def test_the_variant_sweep_is_the_measured_one(knowledge: Knowledge) -> None:
    sweep = json.loads((ROOT / "benchmarks/results/hopper-variants-1.json").read_text())
    section = knowledge.read("attention/baselines#launch-variants-of-the-current-seed-a-first-"
                             "sweep")
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| d")]
    assert [r[0] for r in rows] == list(sweep["best_by_group"])
    for group, _, best, cudnn, pointer, tma, tau in rows:
        measured = sweep["best_by_group"][group]
        assert [float(best), float(cudnn)] == pytest.approx(
            [measured["geomean"], measured["cudnn_geomean"]], abs=0.051)
        assert [float(pointer), float(tma), float(tau)] == pytest.approx(
            [measured["all"][v] for v in ("ptr-128x64", "tma-128x64-s3", "tma-128x64-s3-tau8")],
            abs=0.051)
