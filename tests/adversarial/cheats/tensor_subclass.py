# Rule 8: returns a tensor subclass (lazy or instrumented tensors escape checks).
class Lazy(torch.Tensor):
    pass


def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale).as_subclass(Lazy)
