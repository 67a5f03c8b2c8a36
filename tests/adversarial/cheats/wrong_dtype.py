# Rule 8: returns float32 for half-precision inputs.
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale).float()
