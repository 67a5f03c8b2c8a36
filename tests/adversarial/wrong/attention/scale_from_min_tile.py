# Wrong: the head dim is padded to at least 64 (the smallest tile) and the default scale
# taken from the padded width: wrong only for D=32 under the default scale.
def attention(q, k, v, causal=False, sm_scale=None):
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(max(64, q.shape[-1]))
    return _honest(q, k, v, causal, sm_scale)
