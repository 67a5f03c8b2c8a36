"""The attention task: its reference against the contract's formula, its inputs, its counts,
and FlashAttention-4 beside its baseline."""
from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
import torch
from hypothesis import find, given, settings

from avo_harness.tasks import Call, Case
from avo_harness.tasks.attention import FA4_NAME, HEAD_DIMS, LAYOUTS, TASK, fa4_absent
from fa4_stub import pretend_gpu, sdpa_in_fa4_layout

BASE: Case = {"B": 1, "Hq": 2, "Hkv": 2, "D": 32, "dtype": "float32", "causal": False,
              "sm_scale": None, "layout": "bhnd", "spread": 1.0, "seed": 5}


def naive(call: Call) -> torch.Tensor:
    """The contract, one query row at a time, in float64."""
    q, k, v = (t.double() for t in call.args)
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    scale = call.kwargs["sm_scale"] or 1.0 / math.sqrt(d)
    out = torch.zeros(b, hq, nq, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            kv = h // (hq // hkv)
            for i in range(nq):
                last = i + nk - nq if call.kwargs["causal"] else nk - 1
                if last < 0:
                    continue  # sees no key: zeros
                scores = k[bi, kv, :last + 1] @ q[bi, h, i] * scale
                weights = torch.softmax(scores, 0)
                out[bi, h, i] = weights @ v[bi, kv, :last + 1]
    return out


CONTRACT: dict[str, Case] = {
    "causal-fewer-queries": {"Nq": 5, "Nk": 12, "causal": True},
    "causal-more-queries": {"Nq": 12, "Nk": 5, "causal": True},
    "gqa": {"Nq": 7, "Nk": 9, "Hq": 6, "Hkv": 2},
    "gqa-causal": {"Nq": 9, "Nk": 7, "Hq": 6, "Hkv": 3, "causal": True},
    "mqa-causal": {"Nq": 6, "Nk": 6, "Hq": 4, "Hkv": 1, "causal": True},
    "d96": {"Nq": 4, "Nk": 6, "D": 96},
    "n1": {"Nq": 1, "Nk": 1},
    "n1-causal": {"Nq": 1, "Nk": 1, "causal": True},
    "one-query-many-keys": {"Nq": 1, "Nk": 30, "causal": True},
    "explicit-scale": {"Nq": 3, "Nk": 8, "sm_scale": 1.7},
    "bnhd": {"Nq": 6, "Nk": 10, "layout": "bnhd", "B": 2},
    "padded": {"Nq": 6, "Nk": 10, "layout": "padded", "causal": True},
    "sharp": {"Nq": 6, "Nk": 10, "spread": 4.0},
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_the_reference_is_the_contract(name: str) -> None:
    call = TASK.make_inputs({**BASE, **CONTRACT[name]}, "cpu")
    got = TASK.reference(call, torch.float64)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, naive(call), rtol=1e-12, atol=1e-12)


def test_rows_that_see_no_key_are_zero_in_every_precision() -> None:
    call = TASK.make_inputs({**BASE, "Nq": 12, "Nk": 5, "causal": True, "dtype": "float16"},
                            "cpu")
    blind = 12 - 5  # query i sees key j iff j <= i - 7
    for dtype in (torch.float64, torch.float16):
        out = TASK.reference(call, dtype)
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert (out[:, :, :blind] == 0).all()
        assert (out[:, :, blind:].abs().sum(-1) > 0).all()


def test_query_head_h_reads_kv_head_h_over_the_group_size() -> None:
    call = TASK.make_inputs({**BASE, "Nq": 5, "Nk": 7, "Hq": 6, "Hkv": 2}, "cpu")
    q, k, v = call.args
    out = TASK.reference(call, torch.float64)
    for h in range(6):
        for kv, should_match in ((h // 3, True), ((h // 3 + 1) % 2, False)):
            alone = Call((q[:, h:h + 1], k[:, kv:kv + 1], v[:, kv:kv + 1]), call.kwargs)
            same = torch.allclose(TASK.reference(alone, torch.float64), out[:, h:h + 1])
            assert same == should_match, (h, kv)


def test_the_default_scale_is_one_over_sqrt_d() -> None:
    case = {**BASE, "Nq": 4, "Nk": 9, "D": 64}
    default = TASK.reference(TASK.make_inputs(case, "cpu"), torch.float64)
    explicit = TASK.reference(TASK.make_inputs({**case, "sm_scale": 0.125}, "cpu"),
                              torch.float64)
    other = TASK.reference(TASK.make_inputs({**case, "sm_scale": 0.3}, "cpu"), torch.float64)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    assert not torch.allclose(default, other)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_inputs_have_the_contract_shapes_in_every_layout(layout: str) -> None:
    case = {**BASE, "B": 2, "Hq": 4, "Hkv": 2, "Nq": 5, "Nk": 7, "D": 64, "dtype": "bfloat16",
            "layout": layout}
    call = TASK.make_inputs(case, "cpu")
    q, k, v = call.args
    assert q.shape == (2, 4, 5, 64) and k.shape == v.shape == (2, 2, 7, 64)
    assert {t.dtype for t in call.args} == {torch.bfloat16}
    assert call.kwargs == {"causal": False, "sm_scale": None}
    if layout == "bhnd":
        assert all(t.is_contiguous() for t in call.args)
    else:
        assert not any(t.is_contiguous() for t in call.args)
    if layout in ("bnhd", "mixed"):
        assert q.stride() == (5 * 4 * 64, 64, 4 * 64, 1)
    if layout == "padded":
        assert q.stride(2) == 64 + 8
    if layout == "mixed":  # no two tensors share strides, and v's head dim is not unit-stride
        assert k.stride(2) == 64 + 8 and v.stride()[2:] == (1, 7)
    if layout == "dmajor":  # no tensor's head dim is unit-stride
        assert q.stride()[2:] == (1, 5) and k.stride()[2:] == v.stride()[2:] == (1, 7)


def test_inputs_follow_the_seed() -> None:
    case = {**BASE, "Nq": 3, "Nk": 4}
    first, again = TASK.make_inputs(case, "cpu"), TASK.make_inputs(case, "cpu")
    other = TASK.make_inputs({**case, "seed": 6}, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.args, again.args))
    assert not torch.equal(first.args[0], other.args[0])


@pytest.mark.parametrize("large", [False, True])
def test_drawn_cases_are_valid_inputs_with_the_boundary_cases_keys(large: bool) -> None:
    keys = set(TASK.boundary_cases(large=large)[0])
    max_n = 8192 if large else 256
    tiles = (2 * 12 * 4096 * 4096) if large else (6 * 128 * 128)

    @settings(max_examples=60, deadline=None, database=None)
    @given(TASK.cases(large=large))
    def valid(case: Case) -> None:
        assert set(case) == keys
        assert case["Hq"] % case["Hkv"] == 0 and case["D"] in HEAD_DIMS
        assert 1 <= case["Nq"] <= max_n and 1 <= case["Nk"] <= max_n
        tiled = [-(-case[n] // 64) * 64 for n in ("Nq", "Nk")]
        assert case["B"] * case["Hq"] * tiled[0] * tiled[1] <= tiles
        assert case["layout"] in LAYOUTS and case["dtype"] in ("float16", "bfloat16", "float32")
        assert case["sm_scale"] is None or case["sm_scale"] > 0

    valid()


@pytest.mark.parametrize("large", [False, True])
def test_drawn_cases_reach_the_benchmark_s_heads_long_sequences_and_extreme_scales(
        large: bool) -> None:
    """What a red team found never drawn: a candidate could be wrong there unseen."""
    reach = {
        # The interpreter's budget stops at 24 query heads: the benchmark's 32 on a GPU.
        "the benchmark's heads": (lambda c: c["Hq"] == 32 and c["Hkv"] == 8) if large
        else (lambda c: c["Hq"] == 24 and c["Hkv"] == 8),
        "16 kv heads": lambda c: c["Hkv"] == 16,
        "a batch of 3 or more": lambda c: c["B"] >= 3,
        "a sequence past 200": lambda c: c["Nk"] > 200,
        "a scale under 0.01": lambda c: (c["sm_scale"] or 1.0) < 0.01,
        "a scale over 3": lambda c: (c["sm_scale"] or 0.0) > 3.0,
        "every tensor D-major": lambda c: c["layout"] == "dmajor",
    }
    for what, holds in reach.items():
        found = find(TASK.cases(large=large), holds,
                     settings=settings(max_examples=2000, database=None))
        assert holds(found), what


@pytest.mark.parametrize("large", [False, True])
def test_a_failure_on_many_heads_shrinks_to_one_head(large: bool) -> None:
    """The minimal failing input a reviewer reads has one head where one head shows the bug."""
    for seed in range(12):
        found = find(TASK.cases(large=large), lambda c: c["Nk"] >= 2 and c["Hkv"] >= 8,
                     settings=settings(max_examples=500, database=None),
                     random=random.Random(seed))
        assert (found["Hkv"], found["Hq"]) == (8, 8), (seed, found)
        smallest = find(TASK.cases(large=large),
                        lambda c: c["Nk"] >= 2 and c["sm_scale"] is not None,
                        settings=settings(max_examples=500, database=None),
                        random=random.Random(seed))
        assert (smallest["B"], smallest["Hq"], smallest["Nq"]) == (1, 1, 1), (seed, smallest)


def test_the_boundary_cases_cover_the_edges_of_the_contract() -> None:
    for large in (False, True):
        cases = TASK.boundary_cases(large=large)
        edges = {
            "N=1": any(c["Nq"] == c["Nk"] == 1 for c in cases),
            "causal, Nq < Nk": any(c["causal"] and c["Nq"] < c["Nk"] for c in cases),
            "a row that sees no key": any(c["causal"] and c["Nq"] > c["Nk"] for c in cases),
            "GQA": any(1 < c["Hkv"] < c["Hq"] for c in cases),
            "MQA": any(c["Hkv"] == 1 < c["Hq"] for c in cases),
            "D=96": any(c["D"] == 96 for c in cases),
            "non-contiguous": {c["layout"] for c in cases} == set(LAYOUTS),
            "sm_scale": any(c["sm_scale"] is not None for c in cases),
            "every dtype": {c["dtype"] for c in cases} == {"float16", "bfloat16", "float32"},
        }
        assert all(edges.values()), [edge for edge, ok in edges.items() if not ok]



def _switches(case: Case) -> dict[str, Any]:
    """The choices of ``case`` a kernel may branch on, each as one of a few values."""
    group = case["Hq"] // case["Hkv"]
    nq, nk = case["Nq"], case["Nk"]
    return {
        "dtype": case["dtype"], "D": case["D"], "layout": case["layout"],
        "causal": case["causal"], "explicit scale": case["sm_scale"] is not None,
        "heads": "MQA" if case["Hkv"] == 1 < case["Hq"] else
                 "MHA" if group == 1 else "GQA by 3" if group % 3 == 0 else "GQA by 2^k",
        "lengths": "one query" if nq == 1 < nk else
                   "Nq < Nk" if nq < nk else "Nq > Nk" if nq > nk else "Nq == Nk",
        "B > 1": case["B"] > 1, "sharp": case["spread"] > 1,
    }


VALUES: dict[str, set[Any]] = {
    "dtype": {"float16", "bfloat16", "float32"}, "D": set(HEAD_DIMS), "layout": set(LAYOUTS),
    "causal": {False, True}, "explicit scale": {False, True},
    "heads": {"MQA", "MHA", "GQA by 3", "GQA by 2^k"},
    "lengths": {"one query", "Nq < Nk", "Nq > Nk", "Nq == Nk"},
    "B > 1": {False, True}, "sharp": {False, True},
}


@pytest.mark.parametrize("large", [False, True])
def test_the_boundary_cases_hold_every_pair_of_switches(large: bool) -> None:
    """A kernel wrong only under two choices together (one query under GQA, an explicit
    scale in float32) fails a boundary case, not only a lucky draw."""
    seen = set()
    for case in TASK.boundary_cases(large=large):
        switches = sorted(_switches(case).items())
        seen |= set(itertools.combinations(switches, 2))
    wanted = {((a, x), (b, y)) for a, b in itertools.combinations(sorted(VALUES), 2)
              for x in VALUES[a] for y in VALUES[b]}
    assert not wanted - seen, sorted(wanted - seen, key=str)[:5]

def test_flops_and_bytes_follow_the_shapes() -> None:
    case = {**BASE, "B": 2, "Hq": 4, "Hkv": 2, "Nq": 6, "Nk": 10, "D": 64, "dtype": "bfloat16"}
    assert TASK.flops(case) == 4 * 2 * 4 * 6 * 10 * 64
    assert TASK.flops({**case, "causal": True}) == TASK.flops(case) / 2
    q, k, v = TASK.make_inputs(case, "cpu").args
    assert TASK.bytes_moved(case) == 2 * q.nbytes + k.nbytes + v.nbytes


@pytest.mark.parametrize("cuda", [False, True])
def test_benchmark_configurations_are_named_cases(cuda: bool) -> None:
    configs = TASK.bench_configs(cuda=cuda)
    keys = set(TASK.boundary_cases(large=cuda)[0]) - {"seed"}
    assert configs and len({c.name for c in configs}) == len(configs)
    assert all(set(c.case) == keys and c.case["Hq"] % c.case["Hkv"] == 0 for c in configs)
    if not cuda:  # the interpreter times tiny problems only
        assert all(c.case["Nq"] * c.case["Nk"] <= 128 * 128 for c in configs)


def test_the_baseline_computes_the_task() -> None:
    call = TASK.make_inputs({**BASE, "Nq": 9, "Nk": 13, "Hq": 4, "Hkv": 2, "causal": True,
                             "dtype": "float32"}, "cpu")
    torch.testing.assert_close(TASK.baseline(call).double(), naive(call), rtol=1e-4, atol=1e-5)


FA4_CASE: Case = {**BASE, "Nq": 9, "Nk": 9, "Hq": 4, "Hkv": 2, "dtype": "bfloat16"}


def test_fa4_is_absent_off_cuda_and_on_gpus_it_has_no_kernels_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert fa4_absent(FA4_CASE, "cpu") == "FA4 runs on CUDA GPUs only"
    pretend_gpu(monkeypatch)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (7, 5))
    assert fa4_absent(FA4_CASE, "cuda") == "FA4 has no kernels for compute capability 7.x"


def test_fa4_is_absent_with_the_reason_when_flash_attn_does_not_import(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_gpu(monkeypatch, forward=None)
    reason = fa4_absent(FA4_CASE, "cuda")
    assert reason is not None and "\n" not in reason
    assert reason.startswith("flash_attn.cute does not import (ModuleNotFoundError: ")
    assert TASK.extra_baselines(FA4_CASE, "cuda") == {FA4_NAME: reason}
    with pytest.raises(RuntimeError, match="does not import"):
        TASK.fa4_baseline(TASK.make_inputs(FA4_CASE, "cpu"))


def test_fa4_is_absent_only_outside_its_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_gpu(monkeypatch)
    assert "no float32 forward" in str(fa4_absent({**FA4_CASE, "dtype": "float32"}, "cuda"))
    for layout in ("dmajor", "mixed"):
        assert "D-major tensor" in str(fa4_absent({**FA4_CASE, "layout": layout}, "cuda"))
    covered = [{**FA4_CASE, "dtype": dtype, "layout": layout, "D": d, "causal": causal}
               for dtype in ("float16", "bfloat16")
               for layout in set(LAYOUTS) - {"dmajor", "mixed"}
               for d in HEAD_DIMS for causal in (False, True)]
    assert [fa4_absent(case, "cuda") for case in covered] == [None] * len(covered)


@pytest.mark.parametrize("layout", ["bhnd", "bnhd", "padded"])
def test_fa4_reads_the_tasks_tensors_as_b_n_h_d_views(monkeypatch: pytest.MonkeyPatch,
                                                      layout: str) -> None:
    seen: list[tuple[Any, ...]] = []

    def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> Any:
        seen.append(((q, k, v), kwargs))
        return sdpa_in_fa4_layout(q, k, v, **kwargs)

    pretend_gpu(monkeypatch, forward)
    case = {**FA4_CASE, "layout": layout, "causal": True, "sm_scale": 0.3}
    run = TASK.extra_baselines(case, "cuda")[FA4_NAME]
    assert run == TASK.fa4_baseline
    call = TASK.make_inputs(case, "cpu")
    out = run(call)
    (tensors, kwargs), = seen
    assert kwargs == {"softmax_scale": 0.3, "causal": True}
    for ours, theirs in zip(call.args, tensors, strict=True):
        assert theirs.shape == ours.transpose(1, 2).shape == (1, 9, ours.shape[1], 32)
        assert theirs.data_ptr() == ours.data_ptr()  # a view: nothing copied
    assert out.shape == call.args[0].shape
    torch.testing.assert_close(out, TASK.baseline(call))
