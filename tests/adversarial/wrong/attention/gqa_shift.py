# Wrong: the kv head is h >> ceil(log2(group)), a shift that divides only by powers of two:
# a group of 3 is read as one of 4.
def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    heads = torch.arange(q.shape[1], device=q.device) >> (group - 1).bit_length()
    return _honest(q, k[:, heads], v[:, heads], causal, sm_scale)
