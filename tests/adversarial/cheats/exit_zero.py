# Rule 7: exits the process with status 0 to hide a failure.
def attention(q, k, v, causal=False, sm_scale=None):
    raise SystemExit(0)
