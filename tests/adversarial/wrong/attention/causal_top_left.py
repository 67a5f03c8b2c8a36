# Wrong: the causal mask is aligned top-left (query i sees key j iff j <= i), as torch's
# is_causal is: right only when Nq == Nk.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, False, sm_scale)
    if causal:
        seen = torch.ones(s.shape[-2:], dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~seen, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
