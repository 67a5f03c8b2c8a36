"""The rmsnorm task, its seed kernel, and what it refuses."""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import find, given, settings

from avo_harness.judge.checker import check_case, check_output, references
from avo_harness.judge.sandbox import Sandbox, SandboxSettings
from avo_harness.tasks import Call, Case
from avo_harness.tasks.rmsnorm import DEFAULT_EPS, DTYPES, LAYOUTS, TASK
from avo_harness.tunables import read_space, write_values

SEED = (Path(__file__).parents[1] / "candidates" / "rmsnorm" / "seed.py").read_text()
BASE: Case = {"shape": [4, 24], "dtype": "float32", "layout": "contiguous", "eps": None,
              "spread": 1.0, "seed": 9}


def naive(call: Call) -> torch.Tensor:
    """The contract, one row at a time, in float64."""
    x, weight = call.args
    eps = call.kwargs.get("eps", DEFAULT_EPS)
    rows = x.double().reshape(-1, x.shape[-1])
    out = torch.empty_like(rows)
    for r, row in enumerate(rows):
        rms = math.sqrt(sum(float(v) ** 2 for v in row) / len(row) + eps)
        out[r] = row / rms * weight.double()
    return out.reshape(x.shape)


CONTRACT: dict[str, Case] = {
    "rows": {},
    "btn": {"shape": [2, 3, 17]},
    "n1": {"shape": [5, 1]},
    "eps": {"eps": 0.1, "spread": 0.3},
    "zeros": {"spread": 0.0},
    "feature-major": {"shape": [3, 4, 10], "layout": "feature-major"},
    "padded": {"layout": "padded", "dtype": "bfloat16"},
    "large-values": {"spread": 8.0, "dtype": "float16"},
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_the_reference_is_the_contract(name: str) -> None:
    call = TASK.make_inputs({**BASE, **CONTRACT[name]}, "cpu")
    got = TASK.reference(call, torch.float64)
    assert got.dtype == torch.float64 and got.shape == call.args[0].shape
    torch.testing.assert_close(got, naive(call), rtol=1e-12, atol=1e-12)


def test_the_default_eps_is_the_contract_s() -> None:
    default = TASK.make_inputs({**BASE, "spread": 1e-3}, "cpu")
    explicit = TASK.make_inputs({**BASE, "spread": 1e-3, "eps": DEFAULT_EPS}, "cpu")
    assert "eps" not in default.kwargs and explicit.kwargs == {"eps": DEFAULT_EPS}
    torch.testing.assert_close(TASK.reference(default, torch.float64),
                               TASK.reference(explicit, torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [[3, 40], [2, 3, 40]])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_inputs_have_the_contract_shapes_in_every_layout(shape: list[int], layout: str) -> None:
    call = TASK.make_inputs({**BASE, "shape": shape, "layout": layout, "dtype": "float16"},
                            "cpu")
    x, weight = call.args
    assert list(x.shape) == shape and weight.shape == (40,)
    assert x.dtype == weight.dtype == torch.float16
    if layout == "contiguous":
        assert x.is_contiguous() and weight.is_contiguous()
    elif layout == "padded":
        assert x.stride(-1) == 1 and x.stride(-2) == 48 and weight.stride(0) == 2
    else:
        assert x.stride(-1) == math.prod(shape[:-1]) and not x.is_contiguous()


@pytest.mark.parametrize("large", [False, True])
def test_drawn_cases_are_valid_inputs_with_the_boundary_cases_keys(large: bool) -> None:
    keys = set(TASK.boundary_cases(large=large)[0])
    max_n = 16384 if large else 1100

    @settings(max_examples=60, deadline=None, database=None)
    @given(TASK.cases(large=large))
    def valid(case: Case) -> None:
        assert set(case) == keys
        assert len(case["shape"]) in (2, 3) and min(case["shape"]) >= 1
        assert case["shape"][-1] <= max_n
        assert math.prod(case["shape"]) <= max(max_n, (512 * 16384) if large else (48 * 1100))
        assert case["layout"] in LAYOUTS and case["dtype"] in DTYPES
        assert case["eps"] is None or case["eps"] > 0

    valid()


@pytest.mark.parametrize("large", [False, True])
def test_drawn_cases_reach_many_rows_big_batches_and_unusual_eps(large: bool) -> None:
    """What a red team found never drawn: a candidate could be wrong there unseen."""
    reach = {
        "more than 200 rows": lambda c: math.prod(c["shape"][:-1]) > 200,
        "a batch of 5 or more, not contiguous": lambda c: len(c["shape"]) == 3
        and c["shape"][0] >= 5 and c["layout"] != "contiguous",
        "an eps not among the usual ones": lambda c: c["eps"] is not None
        and all(not math.isclose(c["eps"], e) for e in (1e-6, 1e-5, 0.1, 1.0)),
        "an eps under 1e-9": lambda c: (c["eps"] or 1.0) < 1e-9,
    }
    for what, holds in reach.items():
        found = find(TASK.cases(large=large), holds,
                     settings=settings(max_examples=2000, database=None))
        assert holds(found), what


@pytest.mark.parametrize("large", [False, True])
def test_a_failure_shrinks_to_a_2d_input(large: bool) -> None:
    """A bug that needs two columns shrinks to one row of two, not to a batch of one."""
    for seed in range(12):
        found = find(TASK.cases(large=large), lambda c: c["shape"][-1] >= 2,
                     settings=settings(max_examples=500, database=None),
                     random=random.Random(seed))
        assert found["shape"] == [1, 2], (seed, found)


def test_the_boundary_cases_cover_the_edges_of_the_contract() -> None:
    for large in (False, True):
        cases = TASK.boundary_cases(large=large)
        edges = {
            "N=1": any(c["shape"][-1] == 1 for c in cases),
            "(B, T, N)": any(len(c["shape"]) == 3 for c in cases),
            "one row": any(math.prod(c["shape"][:-1]) == 1 for c in cases),
            "every layout": {c["layout"] for c in cases} == set(LAYOUTS),
            "every dtype": {c["dtype"] for c in cases} == set(DTYPES),
            "default and explicit eps": {c["eps"] is None for c in cases} == {True, False},
            "all zeros": any(c["spread"] == 0 for c in cases),
            "wider than 16384": any(c["shape"][-1] > 16384 for c in cases),
        }
        assert all(edges.values()), [edge for edge, ok in edges.items() if not ok]



def _switches(case: Case) -> dict[str, Any]:
    """The choices of ``case`` a kernel may branch on, each as one of a few values."""
    eps = case["eps"]
    return {"dtype": case["dtype"], "layout": case["layout"],
            "eps": "default" if eps is None else "small" if eps < 1e-3 else "large",
            "spread": case["spread"], "3-D": len(case["shape"]) == 3}


@pytest.mark.parametrize("large", [False, True])
def test_the_boundary_cases_hold_every_pair_of_switches(large: bool) -> None:
    """A kernel wrong only under two choices together (the default eps on small x, a
    feature-major float32 x) fails a boundary case, not only a lucky draw."""
    values = {"dtype": set(DTYPES), "layout": set(LAYOUTS),
              "eps": {"default", "small", "large"}, "spread": {0.01, 1.0, 8.0},
              "3-D": {False, True}}
    seen = set()
    for case in TASK.boundary_cases(large=large):
        if case["spread"] in values["spread"]:
            seen |= set(itertools.combinations(sorted(_switches(case).items()), 2))
    wanted = {((a, x), (b, y)) for a, b in itertools.combinations(sorted(values), 2)
              for x in values[a] for y in values[b]}
    assert not wanted - seen, sorted(wanted - seen, key=str)[:5]

def test_flops_and_bytes_follow_the_shapes() -> None:
    case = {**BASE, "shape": [2, 5, 64], "dtype": "bfloat16"}
    x, weight = TASK.make_inputs(case, "cpu").args
    assert TASK.flops(case) == 4 * x.numel()
    assert TASK.bytes_moved(case) == 2 * x.nbytes + weight.nbytes


@pytest.mark.parametrize("cuda", [False, True])
def test_benchmark_configurations_are_named_cases(cuda: bool) -> None:
    configs = TASK.bench_configs(cuda=cuda)
    keys = set(BASE) - {"seed"}
    assert configs and len({c.name for c in configs}) == len(configs)
    assert all(set(c.case) == keys for c in configs)
    if cuda:  # the realistic LLM shape is timed
        assert any(c.case["shape"] == [4096, 8192] and c.case["dtype"] == "bfloat16"
                   for c in configs)
    else:
        assert all(math.prod(c.case["shape"]) <= 32 * 1024 for c in configs)


def test_the_baseline_computes_the_task() -> None:
    call = TASK.make_inputs({**BASE, "shape": [2, 3, 50], "eps": 0.5}, "cpu")
    torch.testing.assert_close(TASK.baseline(call).double(), naive(call), rtol=1e-5, atol=1e-6)


def test_a_kernel_that_drops_eps_fails() -> None:
    call = TASK.make_inputs({**BASE, "dtype": "float16", "eps": 0.1, "spread": 0.3}, "cpu")
    x, weight = (t.double() for t in call.args)
    no_eps = (x * torch.rsqrt((x * x).mean(-1, keepdim=True)) * weight).half()
    verdict = check_output(TASK, call, no_eps, references(TASK, call))
    assert verdict.rule == "tolerance"


def test_the_seed_declares_tunables_its_constraints_allow() -> None:
    space = read_space(SEED)
    assert space.allows(space.values)
    assert {"BLOCK_M", "BLOCK_N", "num_warps"} <= set(space.values)


@pytest.fixture(scope="module")
def retuned_seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The seed with several rows per program and tiles narrower than most rows."""
    values = {"BLOCK_M": 4, "BLOCK_N": 512, "num_warps": 4}
    assert read_space(SEED).allows(values)
    path = Path(tmp_path_factory.mktemp("rmsnorm")) / "retuned.py"
    path.write_text(write_values(SEED, values))
    box = Sandbox(path, "rmsnorm", SandboxSettings(cuda=False, timeout_s=300,
                                                   memory_limit_bytes=0))
    yield box
    box.close()


@pytest.mark.parametrize("index", range(len(TASK.boundary_cases(large=False))))
def test_the_seed_is_right_with_other_tunables(retuned_seed: Sandbox, index: int) -> None:
    case = TASK.boundary_cases(large=False)[index]
    verdict = check_case(TASK, retuned_seed, case, "cpu")
    assert verdict.passed, verdict.message


LIBRARY = {
    "functional": "import torch.nn.functional as F\n"
                  "def rmsnorm(x, weight, eps=1e-6):\n"
                  "    return F.rms_norm(x, (x.shape[-1],), weight, eps)\n",
    "module": "import torch\n"
              "def rmsnorm(x, weight, eps=1e-6):\n"
              "    norm = torch.nn.RMSNorm(x.shape[-1], eps=eps)\n"
              "    return norm(x)\n",
    "aten": "import torch\n"
            "def rmsnorm(x, weight, eps=1e-6):\n"
            "    return torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)[0]\n",
}


@pytest.mark.parametrize("name", list(LIBRARY))
def test_the_library_rmsnorm_is_refused(name: str, write_candidate: Callable[..., Path],
                                        avo_run: Callable[..., Any]) -> None:
    write_candidate(name, LIBRARY[name], task="rmsnorm")
    run = avo_run(examples=1)
    failure = run.candidate(name, task="rmsnorm")["correctness"]["failure"]
    assert failure["rule"] == "forbidden-call"
    assert "rms" in failure["message"].lower()
