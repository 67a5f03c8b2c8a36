# Wrong: keys are zero-padded to whole blocks of 64 and only the causal mask is applied, so
# without causal the padding keys (score 0) take a share of the softmax: right only when
# Nk is a multiple of 64 (or causal, whose mask hides the padding too).
def attention(q, k, v, causal=False, sm_scale=None):
    nq, nk = q.shape[2], k.shape[2]
    pad = -nk % 64
    k = torch.nn.functional.pad(k, (0, 0, 0, pad))
    v = torch.nn.functional.pad(v, (0, 0, 0, pad))
    s, v = _scores(q, k, v, False, sm_scale)
    if causal:
        j = torch.arange(nk + pad, device=q.device)[None, :]
        i = torch.arange(nq, device=q.device)[:, None]
        s = s.masked_fill(j > i + (nk - nq), float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
