# Wrong: the decode fast path for one query row uses the default scale 1/sqrt(D): right
# for longer query blocks and whenever sm_scale is not given.
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, None if q.shape[2] == 1 else sm_scale)
