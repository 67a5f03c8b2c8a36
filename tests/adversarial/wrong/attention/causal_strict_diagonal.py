# Wrong: off by one on the causal diagonal (j < i + Nk - Nq): no query sees its own key.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, False, sm_scale)
    if causal:
        nq, nk = s.shape[-2:]
        seen = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq - 1)
        s = s.masked_fill(~seen, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
