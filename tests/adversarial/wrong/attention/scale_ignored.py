# Wrong: sm_scale is accepted but the default 1/sqrt(D) is always used.
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, None)
