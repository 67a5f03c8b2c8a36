# Wrong: the online softmax over key blocks of 32 keeps its accumulator and row sum in the
# inputs' dtype (fp16/bf16), rounding after every block: right for float32 inputs and
# short rows, off on long ones.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, causal, sm_scale)
    shape = (*s.shape[:-1], 1)
    m = torch.full(shape, float("-inf"), device=q.device)
    l = torch.zeros(shape, dtype=q.dtype, device=q.device)
    acc = torch.zeros((*s.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
    for start in range(0, s.shape[-1], 32):
        block = s[..., start:start + 32]
        m_new = torch.maximum(m, block.amax(-1, keepdim=True))
        safe = m_new.nan_to_num(0.0, neginf=0.0)
        p = torch.exp(block - safe)
        alpha = torch.exp(m - safe)
        acc = (acc.float() * alpha + p @ v[:, :, start:start + 32]).to(q.dtype)
        l = (l.float() * alpha + p.sum(-1, keepdim=True)).to(q.dtype)
        m = m_new
    return torch.where(l > 0, acc.float() / l.float().clamp_min(1e-30), 0.0).to(q.dtype)
