# Wrong: the online softmax over key blocks of 37 rescales the row sum but not the
# accumulator when the running max grows: right while every row's max is in its first block.
def attention(q, k, v, causal=False, sm_scale=None):
    s, v = _scores(q, k, v, causal, sm_scale)
    shape = (*s.shape[:-1], 1)
    m = torch.full(shape, float("-inf"), device=q.device)
    l = torch.zeros(shape, device=q.device)
    acc = torch.zeros((*s.shape[:-1], v.shape[-1]), device=q.device)
    for start in range(0, s.shape[-1], 37):
        block = s[..., start:start + 37]
        m_new = torch.maximum(m, block.amax(-1, keepdim=True))
        safe = m_new.nan_to_num(0.0, neginf=0.0)
        p = torch.exp(block - safe)
        l = l * torch.exp(m - safe) + p.sum(-1, keepdim=True)
        acc = acc + p @ v[:, :, start:start + 37]
        m = m_new
    return torch.where(l > 0, acc / l.clamp_min(1e-30), 0.0).to(q.dtype)
