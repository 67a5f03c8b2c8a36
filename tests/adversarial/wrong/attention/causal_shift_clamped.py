# Wrong: the causal shift Nk - Nq is clamped at 0, so with more queries than keys query i
# sees keys up to i instead of i - (Nq - Nk): right whenever Nq <= Nk.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, False, sm_scale)
    if causal:
        nq, nk = s.shape[-2:]
        seen = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(max(nk - nq, 0))
        s = s.masked_fill(~seen, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
