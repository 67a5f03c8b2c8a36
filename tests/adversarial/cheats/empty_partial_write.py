# Rule 3: torch.empty output of which only the first half of the query rows is written.
def attention(q, k, v, causal=False, sm_scale=None):
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    half = max(1, q.shape[2] // 2)
    out[:, :, :half] = _honest(q, k, v, causal, sm_scale)[:, :, :half]
    return out
