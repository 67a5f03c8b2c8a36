# Prepended to every file in cheats/ and honest/ when it is dropped into a project: an
# honest plain-torch attention the cheats wrap. Not a candidate by itself.
import math

import torch


def _scores(q, k, v, causal=False, sm_scale=None):
    """Masked float32 scores, and v expanded to the query heads."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1).float()
    v = v.repeat_interleave(group, 1).float()
    nq, nk = q.shape[2], k.shape[2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = q.float() @ k.transpose(-1, -2) * scale
    if causal:
        seen = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
        s = s.masked_fill(~seen, float("-inf"))
    return s, v


def _honest(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, causal, sm_scale)
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
