# Wrong: float32 inputs are computed under bfloat16 autocast (8-bit products, scores and
# probabilities), where the contract holds float32 to tf32 products.
def attention(q, k, v, causal=False, sm_scale=None):
    if q.dtype != torch.float32:
        return _honest(q, k, v, causal, sm_scale)
    low = tuple(t.bfloat16() for t in (q, k, v))
    s, vf = _scores(*low, causal, sm_scale)
    p = torch.softmax(s.bfloat16().float(), -1).nan_to_num(0.0).bfloat16()
    return (p.float() @ vf.bfloat16().float()).float()
