# Wrong: query head h reads kv head h % Hkv (what k.repeat does) instead of h // group
# (repeat_interleave): right for MHA and MQA, wrong for GQA.
def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    k = k.repeat(1, group, 1, 1)
    v = v.repeat(1, group, 1, 1)
    return _honest(q, k, v, causal, sm_scale)
