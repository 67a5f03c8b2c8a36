# The integrity snapshot once compared only the attributes it recorded: Tensor.copy_ lives on
# TensorBase, so setting it on Tensor (through a name the scan does not see as a module)
# shadowed it unseen, and the harness's refresh ran through the candidate's code.
_T = type(torch.zeros(1))
_real_copy = _T.copy_


def _copy(self, src, non_blocking=False):
    return _real_copy(self, src, non_blocking)


_T.copy_ = _copy


def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
