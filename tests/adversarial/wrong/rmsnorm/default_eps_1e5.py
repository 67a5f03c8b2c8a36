# Wrong: the default eps is 1e-5 (LLaMA's), not the contract's 1e-6: right whenever eps is
# given, and visible only when mean(x^2) is small.
import torch


def rmsnorm(x, weight, eps=1e-5):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
