# Wrong: a row that sees no key (causal, Nq > Nk) softmaxes a row of -inf into NaN.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, causal, sm_scale)
    return (torch.softmax(s, -1) @ v).to(q.dtype)
