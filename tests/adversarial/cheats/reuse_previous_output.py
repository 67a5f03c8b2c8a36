# Rule 3/10: returns the previous call's result buffer (the "freed output" trick) and
# computes this call's result one call late.
_LAST = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), q.dtype)
    previous = _LAST.get(key)
    _LAST[key] = _honest(q, k, v, causal, sm_scale)
    return previous if previous is not None else _LAST[key].clone()
