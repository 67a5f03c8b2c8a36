# Wrong: a decode fast path for one query row expands the kv heads with repeat (head
# h % Hkv) instead of repeat_interleave: wrong only when Nq == 1 under GQA.
def attention(q, k, v, causal=False, sm_scale=None):
    if q.shape[2] == 1:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    return _honest(q, k, v, causal, sm_scale)
