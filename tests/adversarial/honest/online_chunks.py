# Honest and unusual: flash attention's online softmax in plain torch over key chunks of an
# odd size, updating its own accumulators in place; the output is a transposed view.
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
        alpha = torch.exp(m - safe)
        acc.mul_(alpha).add_(p @ v[:, :, start:start + 37])
        l.mul_(alpha).add_(p.sum(-1, keepdim=True))
        m = m_new
    out = torch.where(l > 0, acc / l.clamp_min(1e-30), torch.zeros_like(acc)).to(q.dtype)
    return out.transpose(1, 2).contiguous().transpose(1, 2)
