"""RMSNorm forward: ``rmsnorm(x, weight, eps=1e-6)``.

y = x / sqrt(mean(x^2 over the last dim) + eps) * weight. x is (rows, N) or
(B, T, N) in float16, bfloat16 or float32, with any strides; weight is (N,) in
x's dtype, with any stride. The result is a new tensor with x's shape, dtype and
device. A memory-bound kernel: its rate is read and written bytes, not FLOPs.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from . import BenchConfig, Call, Case, Task

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

DTYPES = ("float16", "bfloat16", "float32")
#: How x lies in memory: contiguous; rows padded (and weight strided); or feature-major
#: (stored with its dims reversed, so the normalised dim has a stride other than 1).
LAYOUTS = ("contiguous", "padded", "feature-major")
DEFAULT_EPS = 1e-6
# Widths just off the usual block sizes catch missing tail masks.
_EDGE_WIDTHS = (1, 2, 15, 16, 17, 127, 128, 129, 1000, 1023, 1024, 1025)
# None: the candidate's default eps is used (and must be DEFAULT_EPS). Large eps values
# make a kernel that drops or misplaces eps visibly wrong; any other is drawn log-uniformly
# from this range, so a kernel that special-cases the usual values is caught.
_EPS = (None, 1e-6, 1e-5, 0.1, 1.0)
_EPS_RANGE = (1e-12, 1.0)
# Drawn shapes: the widest row, the most rows, and the most elements of one case, in the
# interpreter and on a GPU (many rows or wide ones, not both: a case's cost follows its size).
_MAX_WIDTH = {False: 1100, True: 16384}
_MAX_ROWS = {False: 256, True: 4096}
_MAX_ELEMENTS = {False: 48 * 1100, True: 512 * 16384}
# Scales of x. At 8.0 a float16 sum of squares overflows past about a thousand elements, while
# every square, and the plain torch yardstick (which accumulates in float32), stays finite.
_SPREADS = (0.01, 1.0, 8.0)


# The pairwise boundary cases: dtype, layout, eps (the default, small, large), spread and
# shape (2-D or 3-D); every pair of values of two of these columns is in some row
# (tests/test_rmsnorm.py checks it).
_PAIRS = (
    ("bfloat16", "contiguous", 1e-5, 8.0, [2, 3, 100]),
    ("float32", "feature-major", 0.5, 0.01, [2, 2, 33]),
    ("float16", "padded", 1.0, 8.0, [3, 257]),
    ("bfloat16", "feature-major", None, 1.0, [4, 64]),
    ("float32", "contiguous", 3e-6, 0.01, [3, 129]),
    ("float32", "padded", None, 1.0, [2, 2, 17]),
    ("float16", "feature-major", 2e-4, 1.0, [2, 3, 1000]),
    ("float16", "contiguous", None, 0.01, [2, 2, 48]),
    ("bfloat16", "contiguous", 0.1, 1.0, [5, 31]),
    ("bfloat16", "padded", 1e-8, 0.01, [3, 200]),
    ("float32", "feature-major", None, 8.0, [2, 3, 513]),
)


class RMSNorm(Task):
    name = "rmsnorm"
    entry = "rmsnorm"
    # A (B, T, N) output is reported with positional names (dim0, dim1, dim2).
    output_dims = ("row", "feature")
    forbidden = (
        "torch.nn.functional.rms_norm",
        "torch.rms_norm",
        "torch._fused_rms_norm",
        "torch.ops.aten.rms_norm",
        "torch.ops.aten._fused_rms_norm",
        "torch.nn.RMSNorm",
        "apex",
        "liger_kernel",
        "transformer_engine",
        "flash_attn",
        "vllm",
    )
    forbidden_ops = ("rms_norm", "_fused_rms_norm")
    baseline_name = "torch-rms_norm"

    def cases(self, *, large: bool) -> SearchStrategy[Case]:
        from hypothesis import strategies as st

        widths = st.one_of(st.integers(1, _MAX_WIDTH[large]), st.sampled_from(_EDGE_WIDTHS))
        eps = st.one_of(st.sampled_from(_EPS),
                        st.floats(*map(math.log, _EPS_RANGE)).map(math.exp))

        @st.composite
        def draw(draw: st.DrawFn) -> Case:
            width = draw(widths)
            rows = max(1, min(_MAX_ROWS[large], _MAX_ELEMENTS[large] // width))
            # A batch dimension is the choice that shrinks away: a minimal input is 2-D.
            if draw(st.booleans()):
                batch = draw(st.integers(1, min(8, rows)))
                lead = [batch, draw(st.integers(1, max(1, rows // batch)))]
            else:
                lead = [draw(st.integers(1, rows))]
            return {
                "shape": [*lead, width],
                "dtype": draw(st.sampled_from(DTYPES)),
                "layout": draw(st.sampled_from(LAYOUTS)),
                "eps": draw(eps),
                "spread": draw(st.sampled_from(_SPREADS)),
                "seed": draw(st.integers(0, 2**31 - 1)),
            }

        return draw()

    def boundary_cases(self, *, large: bool) -> list[Case]:
        n = 8192 if large else 2048
        base: Case = {"shape": [4, 64], "dtype": "float16", "layout": "contiguous", "eps": None,
                      "spread": 1.0, "seed": 0}
        return [
            {**base, "shape": [3, 1]},                                   # N=1: y = sign(x) w
            {**base, "shape": [1, 129], "dtype": "bfloat16"},           # one row, a tail
            {**base, "shape": [6, 1025], "dtype": "bfloat16", "eps": 1e-5},
            {**base, "shape": [2, 3, 96], "dtype": "bfloat16"},         # (B, T, N)
            {**base, "shape": [5, 33], "layout": "feature-major", "dtype": "float32"},
            {**base, "shape": [2, 5, 17], "layout": "feature-major"},
            {**base, "shape": [7, 100], "layout": "padded", "eps": 1e-6},
            {**base, "shape": [3, n], "spread": 8.0},                    # fp16 sum overflows
            {**base, "shape": [4, 256], "spread": 0.01, "eps": 0.1},     # eps dominates
            {**base, "shape": [3, 64], "spread": 0.0},                   # all zeros: y = 0
            {**base, "shape": [2, 16385], "dtype": "bfloat16"},          # wider than one tile
            # Every pair of the choices a kernel may branch on, in small cases: a bug that
            # needs two of them (the default eps on small x, say) cannot hide between the
            # drawn examples.
            *({**base, "dtype": dtype, "layout": layout, "eps": eps, "spread": spread,
               "shape": shape} for dtype, layout, eps, spread, shape in _PAIRS),
        ]

    def make_inputs(self, case: Case, device: str) -> Call:
        gen = torch.Generator(device=device).manual_seed(case["seed"])
        dtype = getattr(torch, case["dtype"])
        shape, layout = list(case["shape"]), case["layout"]
        n = shape[-1]
        if layout == "padded":
            x = _randn([*shape[:-1], n + 8], gen, device, dtype, case["spread"])[..., :n]
            weight = _randn([2 * n], gen, device, dtype, 1.0)[::2]
        else:
            if layout == "feature-major":
                x = _randn(shape[::-1], gen, device, dtype, case["spread"])
                x = x.permute(*reversed(range(len(shape))))
            else:
                x = _randn(shape, gen, device, dtype, case["spread"])
            weight = _randn([n], gen, device, dtype, 1.0)
        kwargs = {} if case["eps"] is None else {"eps": case["eps"]}
        return Call((x, weight), kwargs)

    def reference(self, call: Call, compute_dtype: torch.dtype) -> torch.Tensor:
        x, weight = call.args
        eps = call.kwargs.get("eps", DEFAULT_EPS)
        xc = x.to(compute_dtype)
        return xc * torch.rsqrt((xc * xc).mean(-1, keepdim=True) + eps) * weight.to(compute_dtype)

    def baseline(self, call: Call) -> torch.Tensor:
        x, weight = call.args
        # Explicit eps: torch's default is the dtype's machine epsilon, not DEFAULT_EPS.
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight,
                                            call.kwargs.get("eps", DEFAULT_EPS))

    def bench_configs(self, *, cuda: bool) -> list[BenchConfig]:
        if not cuda:
            return [_config([32, 1024], "float16", "interp-"),
                    _config([2, 16, 512], "bfloat16", "interp-")]
        return [
            *(_config([4096, n], "bfloat16") for n in (2048, 4096, 8192, 16384)),
            _config([4096, 8192], "float16"),
            _config([4096, 8192], "float32"),
            _config([1024, 32768], "bfloat16"),
            _config([4, 2048, 8192], "bfloat16"),
        ]

    def flops(self, case: Case) -> float:
        # Per element: the square, its sum, and the two multiplies (by 1/rms and by weight).
        return 4.0 * math.prod(case["shape"])

    def bytes_moved(self, case: Case) -> float:
        size = torch.finfo(getattr(torch, case["dtype"])).bits // 8
        return float(size * (2 * math.prod(case["shape"]) + case["shape"][-1]))


def _randn(shape: list[int], gen: torch.Generator, device: str, dtype: torch.dtype,
           spread: float) -> torch.Tensor:
    return (torch.randn(shape, generator=gen, device=device) * spread).to(dtype)


_SHORT = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _config(shape: list[int], dtype: str, prefix: str = "") -> BenchConfig:
    """A timed configuration named like ``bf16-r4096-n8192`` or ``bf16-b4-t2048-n8192``."""
    dims = "-".join(f"{k}{v}" for k, v in zip(("r",) if len(shape) == 2 else ("b", "t"), shape))
    name = f"{prefix}{_SHORT[dtype]}-{dims}-n{shape[-1]}"
    return BenchConfig(name, {"shape": shape, "dtype": dtype, "layout": "contiguous",
                              "eps": None, "spread": 1.0})


TASK = RMSNorm()
