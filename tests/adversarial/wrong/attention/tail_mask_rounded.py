# Wrong: the tail mask compares key indices with Nk rounded up to a multiple of 16 (the
# vector width), so the zero padding up to it is visible: right when Nk % 16 == 0 or when
# causal hides the padding.
def attention(q, k, v, causal=False, sm_scale=None):
    nq, nk = q.shape[2], k.shape[2]
    pad = -nk % 64
    k = torch.nn.functional.pad(k, (0, 0, 0, pad))
    v = torch.nn.functional.pad(v, (0, 0, 0, pad))
    s, v = _scores(q, k, v, False, sm_scale)
    j = torch.arange(nk + pad, device=q.device)[None, :]
    visible = j < -(-nk // 16) * 16
    if causal:
        i = torch.arange(nq, device=q.device)[:, None]
        visible = visible & (j <= i + (nk - nq))
    s = s.masked_fill(~visible, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
