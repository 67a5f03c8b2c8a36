# Rule 4: modifies an input in place (scales q down, then computes on the scaled copy).
def attention(q, k, v, causal=False, sm_scale=None):
    out = _honest(q, k, v, causal, sm_scale)
    q.mul_(0.5)
    return out
