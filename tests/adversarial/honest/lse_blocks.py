# Honest and unusual: split-KV attention as FlashAttention's decoding kernels do it. The keys
# are split into blocks; each block yields its own normalised partial output and the
# log-sum-exp of its scores, and the partials are merged by their log-sum-exp weights.
def _block(q, k, v, first_key, causal, scale, nq, nk):
    """(partial output, log-sum-exp) of the keys first_key.. of one block; -inf lse for a
    row that sees none of them."""
    s = q @ k.transpose(-1, -2) * scale
    if causal:
        i = torch.arange(nq, device=q.device)[:, None]
        j = torch.arange(first_key, first_key + k.shape[2], device=q.device)[None, :]
        s = s.masked_fill(j > i + (nk - nq), float("-inf"))
    lse = torch.logsumexp(s, -1, keepdim=True)  # -inf where the whole row is masked
    p = torch.exp(s - lse.nan_to_num(0.0, neginf=0.0))
    return p @ v, lse


def attention(q, k, v, causal=False, sm_scale=None):
    nq, nk, group = q.shape[2], k.shape[2], q.shape[1] // k.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    qf = q.float()
    kf = k.float().repeat_interleave(group, 1)
    vf = v.float().repeat_interleave(group, 1)
    parts = [_block(qf, kf[:, :, j:j + 48], vf[:, :, j:j + 48], j, causal, scale, nq, nk)
             for j in range(0, nk, 48)]
    lse = torch.cat([p[1] for p in parts], -1)             # (B, H, Nq, blocks)
    total = torch.logsumexp(lse, -1, keepdim=True)
    weights = torch.exp(lse - total.nan_to_num(0.0, neginf=0.0))  # all zeros if none seen
    out = sum(w.unsqueeze(-1) * p[0] for w, p in zip(weights.unbind(-1), parts))
    return out.to(q.dtype)
