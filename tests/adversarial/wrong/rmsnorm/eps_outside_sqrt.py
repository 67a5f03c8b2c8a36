# Wrong: eps is added to the root, x / (sqrt(mean(x^2)) + eps), not under it.
def rmsnorm(x, weight, eps=1e-6):
    xf = x.float()
    rms = xf.pow(2).mean(-1, keepdim=True).sqrt()
    return (xf / (rms + eps) * weight.float()).to(x.dtype)
