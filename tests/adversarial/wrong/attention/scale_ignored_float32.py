# Wrong: the float32 path (a separate branch, as for tf32 kernels) forgets sm_scale and
# uses the default 1/sqrt(D): right for 16-bit inputs and for the default scale.
def attention(q, k, v, causal=False, sm_scale=None):
    if q.dtype == torch.float32:
        return _honest(q, k, v, causal, None)
    return _honest(q, k, v, causal, sm_scale)
