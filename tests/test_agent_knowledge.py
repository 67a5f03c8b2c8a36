"""The knowledge base: its sections, its search, and its numbers against the measurements."""
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
    return Knowledge.load()


def test_each_file_is_cut_into_sections_listed_in_the_contents(knowledge: Knowledge) -> None:
    assert set(knowledge.files) == {"attention", "baselines", "harness", "task-contract",
                                    "triton"}
    for stem in knowledge.files:
        assert sum(s.id.startswith(stem + "#") for s in knowledge.sections) >= 3, stem
    lines = knowledge.contents().splitlines()
    assert len(lines) == len(knowledge.sections)
    assert len({s.id for s in knowledge.sections}) == len(knowledge.sections)


@pytest.mark.parametrize("query, section", [
    ("TMA tensor descriptor 16-byte alignment", "triton#tensor-descriptors-tma"),
    ("explicit sm_scale default None", "task-contract#signature-and-semantics"),
    ("conditional rescaling threshold tau", "attention#conditional-lazy-rescaling"),
    ("L2 flush CUDA events median rounds", "harness#timing-benchmark-items"),
    ("cuDNN TFLOP/s d128-n4096-gqa4", "baselines#the-suite-timed-by-the-harness"),
])
def test_search_ranks_the_section_that_answers_first(knowledge: Knowledge, query: str,
                                                     section: str) -> None:
    assert knowledge.search(query)[0].id == section


def test_read_a_section_or_a_file_and_unknown_ids(knowledge: Knowledge) -> None:
    assert knowledge.read("baselines").startswith("# Measured baselines")
    assert "num_programs" in knowledge.read("triton#persistent-kernels")
    with pytest.raises(KeyError, match="no section 'triton#nope'; files: attention"):
        knowledge.read("triton#nope")
    # The id the read_knowledge tool gives as its example exists.
    example = re.search(r"e\.g\. '([^']+)'", TOOLS["read_knowledge"].description)
    assert example and knowledge.read(example.group(1))


def test_the_baselines_are_the_measured_numbers(knowledge: Knowledge) -> None:
    measured = json.loads((ROOT / "benchmarks/results/attention-h100.json").read_text())
    table = {cells[0]: cells for cells in (
        [c.strip().strip("*") for c in line.strip("|").split("|")]
        for line in knowledge.read("baselines#the-suite-timed-by-the-harness").splitlines()
        if line.startswith("| d"))}
    assert len(table) == len(measured["rows"]) == 16
    for row in measured["rows"]:
        cells = table[row["config"]]
        got = [float(c) for c in cells[3:7]]
        want = [row["tflops"][k] for k in ("cudnn", "flash", "efficient", "seed")]
        assert got == pytest.approx(want, abs=0.051), row["config"]


def test_the_variant_sweep_is_the_measured_one(knowledge: Knowledge) -> None:
    sweep = json.loads((ROOT / "benchmarks/results/hopper-variants-1.json").read_text())
    section = knowledge.read("baselines#launch-variants-of-the-current-seed-a-first-sweep")
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
