# Wrong: the mean is taken over dim 1, the last dim of a (rows, N) input but the T dim of a
# (B, T, N) one.
import torch


def rmsnorm(x, weight, eps=1e-6):
    xf = x.float()
    ms = xf.pow(2).mean(1, keepdim=True)
    return (xf * torch.rsqrt(ms + eps) * weight.float()).to(x.dtype)
