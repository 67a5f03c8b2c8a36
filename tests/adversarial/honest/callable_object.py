# Honest and unusual: the entry point is a callable object with an explicit precision
# setting, not a function.
class _Attention:
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype

    def __call__(self, q, k, v, causal=False, sm_scale=None):
        s, v = _scores(q, k, v, causal, sm_scale)
        return (torch.softmax(s.to(self.dtype), -1).nan_to_num(0.0) @ v).to(q.dtype)


attention = _Attention()
