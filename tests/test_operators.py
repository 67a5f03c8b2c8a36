"""The built-in operator: constraints, no repeats, reproducibility, and the plugin hook."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from avo_harness.evolve.lineage import Record, source_hash
from avo_harness.evolve.operators import OperatorExhausted, VariationContext
from avo_harness.evolve.operators.builtin import BuiltinOperator
from avo_harness.tasks import get_task
from avo_harness.tunables import read_space

SEED = (Path(__file__).parent.parent / "candidates" / "attention" / "seed.py").read_text()
TINY = ('TUNABLES = {"A": {"value": 1, "choices": [1, 2, 3]}, '
        '"B": {"value": 1, "choices": [1, 2]}}\nCONSTRAINTS = ["A + B <= 4"]\n')


def _record(i: int, source: str, score: float, committed: bool = True) -> Record:
    return Record(id=i, run_id=1, generation=i, name=f"c{i}", parents=[], operator="x",
                  rationale="", source=source, source_hash=source_hash(source),
                  status="passed", committed=committed, reason=None, scores={"a": score},
                  geomean=score, report=None, operator_s=0.0, eval_s=0.0)


def _propose(records: list[Record], seed: str = "s") -> str:
    context = VariationContext(get_task("attention"), records, random.Random(seed), len(records))
    return BuiltinOperator().propose(context).source


def test_walks_the_whole_allowed_space_without_repeats_or_violations() -> None:
    records = [_record(0, TINY, 1.0)]
    for i in range(1, 10):
        try:
            source = _propose(records, f"s{i}")
        except OperatorExhausted:
            break
        space = read_space(source)
        assert space.allows(space.values)
        records.append(_record(i, source, 1.0 + i))
    values = {tuple(sorted(read_space(r.source).values.items())) for r in records}
    # 3 x 2 points, minus (3, 2) which breaks A + B <= 4.
    assert len(values) == len(records) == 5
    with pytest.raises(OperatorExhausted, match="every allowed configuration"):
        _propose(records)


def test_same_seed_same_proposal_and_different_seeds_explore() -> None:
    records = [_record(0, SEED, 2.0)]
    assert _propose(records, "a") == _propose(records, "a")
    assert len({_propose(records, str(i)) for i in range(8)}) > 1


def test_parents_are_committed_and_fast() -> None:
    slow, fast = _record(0, SEED, 1.0), _record(1, SEED.replace('"value": 128', '"value": 64',
                                                                1), 9.0)
    rejected = _record(2, TINY, 100.0, committed=False)
    proposal = BuiltinOperator().propose(VariationContext(
        get_task("attention"), [slow, fast, rejected], random.Random(0), 3))
    assert 2 not in proposal.parents and proposal.parents[0] in (0, 1)
    assert "A" not in read_space(proposal.source).values


def test_nothing_to_vary() -> None:
    with pytest.raises(OperatorExhausted, match="declares TUNABLES"):
        _propose([_record(0, "def attention(q, k, v): pass\n", 1.0)])


PLAIN = """
import torch

def attention(q, k, v, causal=False, sm_scale=None):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1).double(), v.repeat_interleave(g, 1).double()
    s = q.double() @ k.transpose(-1, -2) * (sm_scale or q.shape[-1] ** -0.5)
    if causal:
        nq, nk = q.shape[2], k.shape[2]
        s = s.masked_fill(torch.arange(nk)[None, :] > torch.arange(nq)[:, None] + nk - nq,
                          float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
"""
OPERATORS = '''
from avo_harness.evolve.operators import Proposal

class Copy:
    name = "copy"
    def propose(self, context):
        parent = context.committed()[0]
        return Proposal(parent.source + "\\n# copied\\n", [parent.id], "a copy")

class Broken:
    name = "broken"
    def propose(self, context):
        raise KeyError("no idea")

def pytest_avo_operators(config):
    return {"copy": lambda config: Copy(), "broken": lambda config: Broken()}
'''


@pytest.mark.parametrize("name", ["copy", "broken"])
@pytest.mark.slow
def test_operators_plugged_in_through_the_hook(pytester: pytest.Pytester, name: str) -> None:
    pytester.makeconftest(OPERATORS)
    folder = pytester.mkdir("candidates") / "attention"
    folder.mkdir()
    (folder / "seed.py").write_text(PLAIN)
    result = pytester.runpytest_subprocess("-p", "avo_harness.plugin", "--avo-evolve",
                                           "--avo-operator", name, "--avo-generations", "1",
                                           "--avo-device", "cpu", "--avo-examples", "1")
    lineage = pytester.runpytest_subprocess("-p", "avo_harness.plugin", "--avo-lineage")
    if name == "copy":
        assert result.ret == 0, result.stdout.str()
        assert "a copy" in lineage.stdout.str() and "copy" in lineage.stdout.str()
    else:
        # A broken operator stops the run with one line and status 1; the seed's row stays.
        assert result.ret == 1
        result.stdout.fnmatch_lines(["*stopped: operator broken failed: KeyError: 'no idea'*"])
        assert "seed" in lineage.stdout.str()
