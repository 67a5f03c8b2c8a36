# Wrong: the weight is applied before the statistics, normalising x * weight instead of x.
import torch


def rmsnorm(x, weight, eps=1e-6):
    xw = x.float() * weight.float()
    return (xw * torch.rsqrt(xw.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
