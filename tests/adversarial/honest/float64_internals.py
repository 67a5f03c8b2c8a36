# Honest and unusual: plain torch, computed in float64 one query head at a time.
def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    for h in range(q.shape[1]):
        hq = q[:, h:h + 1].double()
        hk = k[:, h // group:h // group + 1].double()
        hv = v[:, h // group:h // group + 1].double()
        out[:, h:h + 1] = _honest(hq, hk, hv, causal, sm_scale).to(q.dtype)
    return out
