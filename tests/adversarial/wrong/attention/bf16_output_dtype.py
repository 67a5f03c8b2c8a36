# Wrong: the output buffer is float16 for 16-bit inputs (the kernel was written for fp16),
# so bfloat16 inputs come back as float16.
def attention(q, k, v, causal=False, sm_scale=None):
    out = _honest(q, k, v, causal, sm_scale)
    return out.half() if q.dtype == torch.bfloat16 else out
