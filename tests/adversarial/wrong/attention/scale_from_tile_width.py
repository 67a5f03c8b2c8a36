# Wrong: the default scale is taken from the head dim padded to a power of two (the tile
# width), 1/sqrt(128) at D=96: right for D = 32, 64, 128 and for explicit scales.
def attention(q, k, v, causal=False, sm_scale=None):
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(1 << (q.shape[-1] - 1).bit_length())
    return _honest(q, k, v, causal, sm_scale)
