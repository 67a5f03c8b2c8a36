# Honest and unusual: plain math attention (matmul, masked softmax, matmul, in float32) run
# through torch.compile, so inductor generates and compiles C++ for it in the candidate's
# process. To keep the compiled graphs few (each costs seconds on a CPU), the compiled part
# sees one kind of input only: float32, contiguous, not a view, (B*Hq, N, D), q already
# scaled, and the causal shift as a tensor (not a guarded Python value); dynamic=True covers
# the lengths. Degenerate sizes (a length or B*Hq of 1, which compile would specialise on)
# run the same function eagerly. The softmax is written out (max, exp, sum): it also keeps
# inductor's pattern matcher from turning the math into scaled_dot_product_attention.
def _math(q, k, v, shift):
    """Query i sees key j iff j <= i + shift; a row that sees no key outputs zeros."""
    s = torch.matmul(q, k.transpose(-1, -2))
    i = torch.arange(s.shape[-2], device=q.device)[:, None]
    j = torch.arange(s.shape[-1], device=q.device)[None, :]
    s = s.masked_fill(j > i + shift, float("-inf"))
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    l = p.sum(-1, keepdim=True)
    return torch.matmul(p, v) / torch.where(l > 0, l, torch.ones_like(l))


_compiled = torch.compile(_math, dynamic=True)


def attention(q, k, v, causal=False, sm_scale=None):
    b, hq, nq, d = q.shape
    nk, group = k.shape[2], hq // k.shape[1]
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    # Fresh tensors, not views: dynamo would guard on a view's base as well.
    flat = (q.float() * scale).reshape(b * hq, nq, d).clone()
    kf = k.float().repeat_interleave(group, 1).reshape(b * hq, nk, d).clone()
    vf = v.float().repeat_interleave(group, 1).reshape(b * hq, nk, d).clone()
    # Non-causal: every key is visible (j <= nk - 1 < i + nk).
    shift = torch.tensor(nk - nq if causal else nk, device=q.device)
    fn = _compiled if min(b * hq, nq, nk) > 1 else _math
    return fn(flat, kf, vf, shift).reshape(b, hq, nq, d).to(q.dtype)
