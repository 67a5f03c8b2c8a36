# Rule 1: flex attention, torch's other library attention (eagerly its dense kernel, under
# torch.compile a fused one), called by name.
from torch.nn.attention.flex_attention import flex_attention as _flex


def attention(q, k, v, causal=False, sm_scale=None):
    shift = k.shape[2] - q.shape[2]

    def bottom_right(score, b, h, i, j):
        return torch.where(j <= i + shift, score, float("-inf"))

    return _flex(q, k, v, score_mod=bottom_right if causal else None, scale=sm_scale,
                 enable_gqa=q.shape[1] != k.shape[1])
