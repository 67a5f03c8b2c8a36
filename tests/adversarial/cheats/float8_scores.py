# Rule 9: a precision game: q and k rounded to float8 before the product.
def attention(q, k, v, causal=False, sm_scale=None):
    q8 = q.to(torch.float8_e4m3fn).to(q.dtype)
    k8 = k.to(torch.float8_e4m3fn).to(k.dtype)
    return _honest(q8, k8, v, causal, sm_scale)
