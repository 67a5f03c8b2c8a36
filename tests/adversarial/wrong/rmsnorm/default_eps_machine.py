# Wrong: with no eps given it falls back to torch's rms_norm default, the dtype's machine
# epsilon (9.8e-4 for float16, 7.8e-3 for bfloat16), not the contract's 1e-6.
import torch


def rmsnorm(x, weight, eps=None):
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
