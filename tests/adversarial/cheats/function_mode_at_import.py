# The judge's work in the candidate's interpreter: a TorchFunctionMode left on at import sees
# every tensor operation of the process, the harness's own input refresh included, and could
# compute the answer there, untimed. Static-clean: a public torch class.
from torch.overrides import TorchFunctionMode


class _Spy(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


_Spy().__enter__()


def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
