# Rule 1, obfuscated: flex attention without its name anywhere in the source. torch's own
# helpers import the module (torch.ops.import_module) and resolve the function from a dotted
# name built at run time (torch._utils._import_dotted_name); the scan sees none of it, so
# only the run-time tripwire can refuse it.
_NAME = "flex_" + "attention"
torch.ops.import_module("torch.nn.attention." + _NAME)
_flex = torch._utils._import_dotted_name(f"torch.nn.attention.{_NAME}.{_NAME}")


def attention(q, k, v, causal=False, sm_scale=None):
    shift = k.shape[2] - q.shape[2]

    def bottom_right(score, b, h, i, j):
        return torch.where(j <= i + shift, score, float("-inf"))

    return _flex(q, k, v, score_mod=bottom_right if causal else None, scale=sm_scale,
                 enable_gqa=q.shape[1] != k.shape[1])
