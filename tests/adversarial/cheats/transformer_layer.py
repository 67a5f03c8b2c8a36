# Rule 1: the fused multi-head attention kernel behind nn.TransformerEncoderLayer's and
# nn.MultiheadAttention's fast path, with identity projections so it computes the task's
# attention. It scales q by 1/sqrt(head dim) itself, wants q, k and v of one length (so they
# are padded to one, the padded keys hidden) and takes a bool mask where True hides a key.
def attention(q, k, v, causal=False, sm_scale=None):
    b, hq, nq, d = q.shape
    nk, e, n = k.shape[2], hq * d, max(q.shape[2], k.shape[2])
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale

    def tokens(t):  # (B, H, N, D) -> (B, n, Hq*D), float32, zero rows past N
        t = t.repeat_interleave(hq // t.shape[1], 1).transpose(1, 2).reshape(b, -1, e).float()
        return torch.nn.functional.pad(t, (0, 0, 0, n - t.shape[1]))

    i = torch.arange(n, device=q.device)[:, None]
    j = torch.arange(n, device=q.device)[None, :]
    hidden = (j >= nk) | ((j > i + (nk - nq)) if causal else (i < 0))  # (n, n)
    eye = torch.eye(e, device=q.device)
    qkv_weight = torch.cat([eye * (scale * math.sqrt(d)), eye, eye])
    out, _ = torch._native_multi_head_attention(
        tokens(q), tokens(k), tokens(v), e, hq, qkv_weight, torch.zeros(3 * e, device=q.device),
        eye, torch.zeros(e, device=q.device), hidden, need_weights=False, mask_type=0)
    out = out[:, :nq].nan_to_num(0.0).reshape(b, nq, hq, d).transpose(1, 2)
    seen = ~hidden[:nq].all(-1)  # rows that see no key output zeros
    return (out * seen[:, None]).to(q.dtype)
