# Wrong: masked scores are set to -1e4 instead of -inf (to keep NaN out), so a row that sees
# no key averages every value uniformly instead of outputting zeros.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, False, sm_scale)
    if causal:
        nq, nk = s.shape[-2:]
        seen = torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril(nk - nq)
        s = s.masked_fill(~seen, -1e4)
    return (torch.softmax(s, -1) @ v).to(q.dtype)
