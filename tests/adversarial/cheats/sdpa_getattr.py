# Rule 1, obfuscated: a computed getattr on torch.nn.functional.
def attention(q, k, v, causal=False, sm_scale=None):
    fn = getattr(torch.nn.functional, "scaled_dot_" + "product_attention")
    return fn(q, k, v, is_causal=causal)
