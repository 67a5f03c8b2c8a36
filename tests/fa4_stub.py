"""flash_attn.cute on a CPU: FA4's interface, computed by torch, for the tests of its column."""
from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch

from avo_harness.tasks import attention


def sdpa_in_fa4_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       softmax_scale: float | None = None,
                       causal: bool = False) -> tuple[torch.Tensor, None]:
    """``flash_attn_func``'s contract: (B, N, H, D) in and out, (out, lse) back (Nq == Nk
    where causal: SDPA's mask is top-left aligned, FA4's bottom-right)."""
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
        scale=softmax_scale, enable_gqa=q.shape[2] != k.shape[2])
    return out.transpose(1, 2), None


def pretend_gpu(monkeypatch: pytest.MonkeyPatch,
                forward: Callable[..., Any] | None = sdpa_in_fa4_layout) -> None:
    """A GPU of compute capability 9.0 whose flash_attn.cute has ``forward`` (None: flash_attn
    does not import); ``fa4_forward`` gets a cache of the test's own."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))
    monkeypatch.setattr(attention, "fa4_forward",
                        functools.cache(attention.fa4_forward.__wrapped__))
    if forward is None:
        monkeypatch.setitem(sys.modules, "flash_attn", None)
        return
    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = forward  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
