"""Attention forward: ``attention(q, k, v, causal=False, sm_scale=None)``.

q is (B, Hq, Nq, D); k and v are (B, Hkv, Nk, D) with Hq % Hkv == 0, and query
head h reads kv head h // (Hq // Hkv). With ``causal``, query i sees key j iff
j <= i + (Nk - Nq) (bottom-right aligned, as FlashAttention 2.1+); a query row
that sees no key outputs zeros. sm_scale defaults to 1/sqrt(D).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# torch.nn.attention.flex_attention is imported for its names: the tripwires and the task's
# own checks reach a forbidden name through attributes from ``torch``, which a module
# nobody imported yet does not have.
import torch
import torch.nn.attention.flex_attention

from . import BenchConfig, Call, Case, Task

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

DTYPES = ("float16", "bfloat16", "float32")
HEAD_DIMS = (32, 64, 96, 128)
#: How q, k and v lie in memory: contiguous, a (B, N, H, D) tensor transposed, rows padded,
#: head-dim-major (a unit stride along N, not D), or "mixed": q transposed, k padded, v
#: head-dim-major, so a kernel that reads one tensor with another's strides is caught.
LAYOUTS = ("bhnd", "bnhd", "padded", "dmajor", "mixed")
_MIXED = ("bnhd", "padded", "dmajor")
# Sequence lengths just off the usual block sizes catch missing tail masks.
_EDGE_LENGTHS = (1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257, 511, 513)
# Drawn shapes: the longest sequence, and the most score tiles (B x Hq x Nq x Nk, lengths
# rounded up to 64) of one case, in the interpreter and on a GPU. Many heads or long
# sequences, not both: a case's cost (the interpreter's, the float64 reference's) follows it.
_MAX_LENGTH = {False: 256, True: 8192}
_TILE = 64
_MAX_SCORES = {False: 6 * 128 * 128, True: 2 * 12 * 4096 * 4096}
# Explicit softmax scales, drawn log-uniformly: from nearly uniform weights to near one-hot.
_SCALES = (0.004, 4.0)
# The pairwise boundary cases: dtype, D, layout, causal, sm_scale, (Hq, Hkv) (MHA, GQA by
# 2 and by 3, MQA), (Nq, Nk) (one query, fewer, more and as many queries as keys), B and
# spread; every pair of values of two of these columns is in some row
# (tests/test_attention.py checks it).
_MHA, _GQA2, _GQA3, _MQA = (2, 2), (4, 2), (6, 2), (4, 1)
_DECODE, _FEWER, _MORE, _EQUAL = (1, 37), (17, 45), (45, 17), (33, 33)
_PAIRS = (
    ("bfloat16", 96, "mixed", False, 0.3, _GQA2, _MORE, 1, 4.0),
    ("float16", 64, "bnhd", True, None, _GQA3, _EQUAL, 1, 1.0),
    ("float32", 32, "padded", True, 1.7, _MQA, _DECODE, 2, 4.0),
    ("bfloat16", 128, "bhnd", False, None, _MHA, _FEWER, 2, 1.0),
    ("float16", 64, "dmajor", False, 0.01, _MHA, _EQUAL, 2, 4.0),
    ("float32", 96, "dmajor", False, None, _GQA3, _DECODE, 1, 1.0),
    ("float16", 32, "mixed", False, None, _MQA, _FEWER, 1, 1.0),
    ("float32", 128, "bnhd", True, 0.05, _GQA3, _FEWER, 2, 4.0),
    ("float16", 64, "bhnd", True, 2.5, _GQA2, _MORE, 2, 1.0),
    ("bfloat16", 128, "padded", True, None, _GQA2, _EQUAL, 1, 1.0),
    ("float32", 64, "mixed", True, None, _MHA, _DECODE, 2, 4.0),
    ("float32", 96, "bhnd", True, 0.9, _MQA, _EQUAL, 1, 4.0),
    ("bfloat16", 128, "dmajor", True, None, _MQA, _MORE, 1, 4.0),
    ("float16", 96, "padded", False, None, _MHA, _FEWER, 1, 1.0),
    ("bfloat16", 32, "bnhd", False, 0.004, _MHA, _MORE, 1, 4.0),
    ("float16", 128, "bnhd", False, 0.6, _GQA2, _DECODE, 1, 1.0),
    ("float32", 32, "dmajor", True, None, _GQA2, _FEWER, 2, 1.0),
    ("bfloat16", 64, "padded", True, None, _GQA3, _MORE, 1, 1.0),
    ("bfloat16", 32, "bhnd", False, None, _GQA3, _DECODE, 2, 4.0),
    ("float32", 96, "bnhd", True, None, _MQA, _MORE, 2, 4.0),
    ("float16", 32, "mixed", False, 4.0, _GQA3, _EQUAL, 1, 4.0),
    ("bfloat16", 64, "dmajor", True, 0.2, _MQA, _FEWER, 1, 4.0),
    ("float32", 128, "mixed", False, 1.1, _MHA, _MORE, 1, 1.0),
)
# Score elements materialised at once by the reference (bounds its memory at any size).
_REFERENCE_CHUNK = 1 << 26
#: FlashAttention-4 (``flash_attn.cute``, CuTe DSL), timed beside the task's baseline.
FA4_NAME = "flash-attn-4"
# Of this contract FA4's forward lacks float32; every D here (32-128) is within its 8-128 in
# steps of 8, GQA is native, and its causal mask is bottom-right aligned as ours.
_FA4_DTYPES = ("float16", "bfloat16")
# The compute capability majors its interface accepts.
_FA4_ARCHS = (8, 9, 10, 11, 12)


class Attention(Task):
    name = "attention"
    entry = "attention"
    output_dims = ("batch", "head", "query", "dim")
    # Every library attention of torch 2.11-2.13: its public and private Python entry points
    # (for the static scan, whose leaf names they give, and the run-time tripwires) and, in
    # forbidden_ops, the ATen operators behind them (the dispatcher trips those by any route,
    # torch.compile's generated code included). Names in modules not imported yet are tripped
    # when they are. Left out: torch.nn.attention.varlen, whose flash or cuDNN kernels the
    # dispatcher trips; and the dense kernels of flex attention's operator (sdpa_dense,
    # math_attention), whose module its package's attribute of the same name hides from an
    # attribute path.
    forbidden = (
        # scaled_dot_product_attention and its backends' bindings.
        "torch.nn.functional.scaled_dot_product_attention",
        "torch._C._nn.scaled_dot_product_attention",
        "torch._fused_sdp_choice",
        "torch.ops.aten._scaled_dot_product_attention_math",
        "torch.ops.aten._scaled_dot_product_flash_attention",
        "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
        "torch.ops.aten._scaled_dot_product_efficient_attention",
        "torch.ops.aten._scaled_dot_product_cudnn_attention",
        "torch.ops.aten._flash_attention_forward",
        "torch.ops.aten._flash_attention_forward_no_dropout_inplace",
        "torch.ops.aten._efficient_attention_forward",
        "torch.ops.aten._cudnn_attention_forward",
        "torch.ops.aten._scaled_dot_product_fused_attention_overrideable",
        "torch.ops.aten._triton_scaled_dot_attention",
        "torch.ops.aten._triton_multi_head_attention",
        "torch.ops.aten._native_multi_head_attention",
        "torch.ops.aten._transformer_encoder_layer_fwd",
        # Python attention over those, or doing the math itself.
        "torch._decomp.decompositions.scaled_dot_product_flash_attention_for_cpu",
        "torch.onnx.ops._impl.attention_23",
        # Block-sparse attention out of torch's own Triton kernels (no ATen operator).
        "torch.sparse._triton_ops._scaled_dot_product_attention",
        # Flex attention: its higher-order operator (the object; torch.compile lowers it to a
        # fused kernel), under two names, and the function that calls it.
        "torch.nn.attention.flex_attention.flex_attention",  # first of the three: the scan names it
        "torch.ops.higher_order.flex_attention",
        "torch._higher_order_ops.flex_attention",
        # Modules whose forward is fused attention (the fast path: _native_multi_head_attention,
        # _transformer_encoder_layer_fwd).
        "torch.nn.MultiheadAttention",
        "torch.nn.functional.multi_head_attention_forward",
        "torch.nn.Transformer",
        "torch.nn.TransformerEncoder",
        "torch.nn.TransformerEncoderLayer",
        "torch.nn.TransformerDecoder",
        "torch.nn.TransformerDecoderLayer",
        # Attention libraries outside torch (FA3's is what torch.nn.attention's _fa3 loads).
        "flash_attn",
        "flash_attn_interface",
        "xformers",
        "cudnn",
        "flashinfer",
        "sageattention",
    )
    forbidden_ops = (
        "scaled_dot_product_attention", "_fused_sdp_choice",
        "_scaled_dot_product_attention_math", "_scaled_dot_product_attention_math_for_mps",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
        "_flash_attention_forward", "_flash_attention_forward_no_dropout_inplace",
        "_efficient_attention_forward", "_cudnn_attention_forward",
        "_triton_scaled_dot_attention", "_triton_multi_head_attention",
        "_native_multi_head_attention", "_transformer_encoder_layer_fwd",
        # Their backward kernels: no forward needs them.
        "_scaled_dot_product_flash_attention_backward",
        "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_scaled_dot_product_efficient_attention_backward",
        "_scaled_dot_product_cudnn_attention_backward",
        "_scaled_dot_product_fused_attention_overrideable_backward",
        "_flash_attention_backward", "_efficient_attention_backward",
        "_cudnn_attention_backward",
    )
    # Inductor's pattern matcher rewrites (q @ k^T * s).softmax(-1) @ v into SDPA.
    silenced = ("torch._inductor.fx_passes.fuse_attention._sfdp_init",)
    baseline_name = "torch-sdpa"

    def cases(self, *, large: bool) -> SearchStrategy[Case]:
        from hypothesis import strategies as st

        log_scales = st.floats(*map(math.log, _SCALES)).map(math.exp)

        @st.composite
        def draw(draw: st.DrawFn) -> Case:
            # The benchmark's head counts (16 or 32 query heads, 4 to 32 kv heads) are drawn
            # too, with a batch of up to 4; the lengths then fit the score budget. Each choice
            # is drawn whatever came before and then fitted, so shrinking the heads leaves the
            # later choices in place (hypothesis could not shrink 16 heads to 1 otherwise).
            tiles = _MAX_SCORES[large] // _TILE**2
            hkv = draw(st.sampled_from((1, 2, 3, 4, 8, 16)))
            group = draw(st.sampled_from((1, 2, 3, 4, 8)))
            hq = hkv * (group if hkv * group <= tiles else 1)
            b = min(draw(st.integers(1, 4)), tiles // hq)
            budget = _MAX_SCORES[large] // (b * hq)
            nq = draw(_lengths(min(_MAX_LENGTH[large], _whole_tiles(budget // _TILE))))
            nk = draw(_lengths(min(_MAX_LENGTH[large], _whole_tiles(budget // _tiled(nq)))))
            explicit_scale = draw(st.booleans())
            return {
                "B": b,
                "Hq": hq,
                "Hkv": hkv,
                "Nq": nq,
                "Nk": nk,
                "D": draw(st.sampled_from(HEAD_DIMS)),
                "dtype": draw(st.sampled_from(DTYPES)),
                "causal": draw(st.booleans()),
                "sm_scale": draw(log_scales) if explicit_scale else None,
                "layout": draw(st.sampled_from(LAYOUTS)),
                "spread": draw(st.sampled_from((1.0, 4.0))),
                "seed": draw(st.integers(0, 2**31 - 1)),
            }

        return draw()

    def boundary_cases(self, *, large: bool) -> list[Case]:
        n = 1000 if large else 129
        base: Case = {"B": 1, "Hq": 2, "Hkv": 2, "D": 64, "dtype": "float16", "causal": False,
                      "sm_scale": None, "layout": "bhnd", "spread": 1.0, "seed": 0}
        return [
            {**base, "Nq": 1, "Nk": 1},
            {**base, "Nq": 1, "Nk": 1, "causal": True},
            {**base, "Nq": 1, "Nk": n, "causal": True},            # one query sees every key
            {**base, "Nq": 70, "Nk": 20, "causal": True},          # rows 0..49 see no key
            {**base, "Nq": 33, "Nk": n, "causal": True, "dtype": "bfloat16"},
            {**base, "Nq": n, "Nk": n, "causal": True, "D": 96},
            {**base, "Nq": 65, "Nk": 65, "Hq": 4, "Hkv": 1, "causal": True},   # MQA
            {**base, "Nq": 17, "Nk": n, "Hq": 6, "Hkv": 3, "dtype": "bfloat16"},  # GQA
            {**base, "Nq": 64, "Nk": 64, "spread": 4.0, "dtype": "bfloat16", "causal": True},
            {**base, "B": 3, "Nq": 33, "Nk": 40, "Hq": 32, "Hkv": 8},   # the benchmark's heads
            # Logits of a few hundred: exp without the running max overflows even in float32.
            {**base, "Nq": 48, "Nk": 200, "D": 128, "spread": 4.0, "sm_scale": 2.0},
            # Long rows, one head: a 16-bit accumulator or row sum drifts past the tolerance
            # over hundreds of key blocks (it stays within it over the drawn lengths).
            *({**base, "Hq": 1, "Hkv": 1, "Nq": 128, "Nk": 16384, "dtype": dtype}
              for dtype in ("float16", "bfloat16")),
            # Every pair of the choices a kernel may branch on, in small cases: a bug that
            # needs two of them (one query row under GQA, an explicit scale in float32)
            # cannot hide between the drawn examples.
            *({**base, "dtype": dtype, "D": d, "layout": layout, "causal": causal,
               "sm_scale": scale, "Hq": hq, "Hkv": hkv, "Nq": nq, "Nk": nk, "B": b,
               "spread": spread}
              for dtype, d, layout, causal, scale, (hq, hkv), (nq, nk), b, spread in _PAIRS),
        ]

    def make_inputs(self, case: Case, device: str) -> Call:
        gen = torch.Generator(device=device).manual_seed(case["seed"])
        dtype = getattr(torch, case["dtype"])
        b, d, layout = case["B"], case["D"], case["layout"]

        def tensor(heads: int, n: int, lay: str, spread: float = 1.0) -> torch.Tensor:
            shape = {"bhnd": (b, heads, n, d), "bnhd": (b, n, heads, d),
                     "padded": (b, heads, n, d + 8), "dmajor": (b, heads, d, n)}[lay]
            t = (torch.randn(shape, generator=gen, device=device) * spread).to(dtype)
            if lay == "bnhd":
                return t.transpose(1, 2)
            if lay == "padded":
                return t[..., :d]
            if lay == "dmajor":
                return t.transpose(2, 3)
            return t

        lq, lk, lv = _MIXED if layout == "mixed" else (layout,) * 3
        q = tensor(case["Hq"], case["Nq"], lq, case.get("spread", 1.0))
        k = tensor(case["Hkv"], case["Nk"], lk)
        v = tensor(case["Hkv"], case["Nk"], lv)
        return Call((q, k, v), {"causal": case["causal"], "sm_scale": case["sm_scale"]})

    def reference(self, call: Call, compute_dtype: torch.dtype) -> torch.Tensor:
        q, k, v = call.args
        causal = bool(call.kwargs.get("causal", False))
        sm_scale = call.kwargs.get("sm_scale")
        b, hq, nq, d = q.shape
        hkv, nk = k.shape[1], k.shape[2]
        group = hq // hkv
        scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
        exact = compute_dtype == torch.float64
        out = torch.zeros(q.shape, dtype=compute_dtype, device=q.device)
        rows = max(1, _REFERENCE_CHUNK // max(1, b * group * nk))
        for h in range(hkv):
            heads = slice(h * group, (h + 1) * group)
            for start in range(0, nq, rows):
                stop = min(nq, start + rows)
                # Query i sees keys j <= i + (Nk - Nq): with causal, the keys past the chunk's
                # last visible one add exactly nothing, so they are not computed; a chunk that
                # sees no key keeps its zeros.
                keys = min(nk, stop + nk - nq) if causal else nk
                if keys <= 0:
                    continue
                kh = k[:, h, :keys].to(compute_dtype)              # (B, keys, D)
                vh = v[:, h, :keys].to(compute_dtype)
                qh = q[:, heads, start:stop].to(compute_dtype)     # (B, G, rows, D)
                if exact:  # one pass over the scores fewer; the same result to 1e-15
                    s = torch.matmul(qh * scale, kh.transpose(-1, -2).unsqueeze(1))
                else:  # the yardstick rounds as a kernel in the inputs' dtype would
                    s = torch.matmul(qh, kh.transpose(-1, -2).unsqueeze(1)).mul_(scale)
                if causal:
                    query_pos = torch.arange(start, stop, device=q.device)
                    visible = torch.arange(keys, device=q.device)[None, :] \
                        <= query_pos[:, None] + (nk - nq)
                    s.masked_fill_(~visible, float("-inf"))
                    p = torch.softmax(s, dim=-1)
                    if start < nq - nk:  # rows before Nq - Nk see no key: zeros, not NaN
                        p.masked_fill_(~visible.any(-1)[:, None], 0.0)
                else:
                    p = torch.softmax(s, dim=-1)
                out[:, heads, start:stop] = torch.matmul(p, vh.unsqueeze(1))
        return out

    def baseline(self, call: Call) -> torch.Tensor:
        q, k, v = call.args
        causal = bool(call.kwargs.get("causal", False))
        nq, nk = q.shape[2], k.shape[2]
        mask = None
        if causal and nq != nk:  # SDPA's is_causal is top-left aligned; ours is bottom-right
            mask = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and nq == nk,
            scale=call.kwargs.get("sm_scale"), enable_gqa=q.shape[1] != k.shape[1])

    def fa4_baseline(self, call: Call) -> torch.Tensor:
        """FlashAttention-4's forward on ``call``. It takes (B, N, H, D), which the task's
        tensors are as transposed views, so nothing is copied; its output goes back the same
        way."""
        forward = fa4_forward()
        if isinstance(forward, str):
            raise RuntimeError(forward)
        q, k, v = (t.transpose(1, 2) for t in call.args)
        out, _ = forward(q, k, v, softmax_scale=call.kwargs.get("sm_scale"),
                         causal=bool(call.kwargs.get("causal", False)))
        return out.transpose(1, 2)

    def extra_baselines(self, case: Case,
                        device: str) -> dict[str, Callable[[Call], torch.Tensor] | str]:
        """Libraries timed beside :meth:`baseline` on ``case``, by report name: each one's
        forward, or the one line that says why it is absent, so a table can say it."""
        return {FA4_NAME: fa4_absent(case, device) or self.fa4_baseline}

    def bench_configs(self, *, cuda: bool) -> list[BenchConfig]:
        if not cuda:
            tiny: Case = {"B": 1, "Hq": 2, "Hkv": 2, "Nq": 128, "Nk": 128, "D": 64,
                          "dtype": "float16", "sm_scale": None, "layout": "bhnd", "spread": 1.0}
            return [BenchConfig(f"interp-d64-n128{'-causal' if c else ''}", {**tiny, "causal": c})
                    for c in (False, True)]
        configs = []
        for d, heads in ((64, 32), (128, 16)):
            for n in (1024, 4096, 16384):
                for causal in (False, True):
                    configs.append(_suite_config(d, n, heads, heads, causal))
        for hkv in (8, 4):
            for causal in (False, True):
                configs.append(_suite_config(128, 4096, 32, hkv, causal))
        return configs

    def flops(self, case: Case) -> float:
        full = 4.0 * case["B"] * case["Hq"] * case["Nq"] * case["Nk"] * case["D"]
        return full / 2 if case["causal"] else full

    def bytes_moved(self, case: Case) -> float:
        size = torch.finfo(getattr(torch, case["dtype"])).bits // 8
        q_and_o = 2 * case["B"] * case["Hq"] * case["Nq"] * case["D"]
        k_and_v = 2 * case["B"] * case["Hkv"] * case["Nk"] * case["D"]
        return float(size * (q_and_o + k_and_v))


def _tiled(n: int) -> int:
    """``n`` rounded up to whole tiles: what a blocked kernel's loops cost."""
    return -(-n // _TILE) * _TILE


def _whole_tiles(n: int) -> int:
    """``n`` rounded down to whole tiles (one at least)."""
    return max(_TILE, n // _TILE * _TILE)


def _lengths(longest: int) -> SearchStrategy[int]:
    """Sequence lengths from 1 to ``longest``, the edge lengths among them drawn often."""
    from hypothesis import strategies as st

    edges = [n for n in _EDGE_LENGTHS if n <= longest]
    return st.one_of(st.integers(1, max(1, longest)), st.sampled_from(edges))


def _suite_config(d: int, n: int, hq: int, hkv: int, causal: bool) -> BenchConfig:
    """A configuration of the H100 suite: bf16, batch x length = 32768 tokens (AVO's scheme)."""
    gqa = f"-gqa{hq // hkv}" if hq != hkv else ""
    name = f"d{d}-n{n}{gqa}{'-causal' if causal else ''}"
    return BenchConfig(name, {"B": 32768 // n, "Hq": hq, "Hkv": hkv, "Nq": n, "Nk": n, "D": d,
                              "dtype": "bfloat16", "causal": causal, "sm_scale": None,
                              "layout": "bhnd", "spread": 1.0})


@functools.cache
def fa4_forward() -> Callable[..., Any] | str:
    """``flash_attn.cute.flash_attn_func``, or the one line that says why it does not import.

    Only trusted code (the parent, the suite) calls this: candidates may not reach
    ``flash_attn``, and their processes never import it.
    """
    try:
        from flash_attn.cute import flash_attn_func
    except Exception as exc:  # not installed, or its CUDA libraries fail to load
        detail = str(exc).strip().splitlines()
        return (f"flash_attn.cute does not import ({type(exc).__name__}"
                f"{': ' + detail[0] if detail else ''})")
    return flash_attn_func


def fa4_absent(case: Case, device: str) -> str | None:
    """Why FA4 is not timed on ``case`` on ``device`` (None: it is): not on a GPU it
    supports, not importable, or outside its contract (narrower than the task's)."""
    if device != "cuda":
        return "FA4 runs on CUDA GPUs only"
    major = torch.cuda.get_device_capability()[0]
    if major not in _FA4_ARCHS:
        return f"FA4 has no kernels for compute capability {major}.x"
    forward = fa4_forward()
    if isinstance(forward, str):
        return forward
    if case["dtype"] not in _FA4_DTYPES:
        return f"FA4 has no {case['dtype']} forward (float16 and bfloat16 only)"
    if case["layout"] in ("dmajor", "mixed"):
        return (f"FA4 reads only unit-stride head dims: layout {case['layout']!r} has a D-major "
                "tensor, which it would copy inside the timed call")
    return None


TASK = Attention()
