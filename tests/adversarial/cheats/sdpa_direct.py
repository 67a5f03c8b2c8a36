# Rule 1: calls the library attention directly.
def attention(q, k, v, causal=False, sm_scale=None):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
