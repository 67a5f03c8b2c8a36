# Rule 1, obfuscated: flex attention without its name anywhere in the source. A helper of
# torch.fx resolves the function from a dotted name built at run time (the task's module
# has imported flex attention's); the scan sees none of it, so only the run-time tripwire on
# the function can refuse it.
_NAME = "flex_" + "attention"
_flex = torch.fx.graph_module._get_attr(torch.nn.attention, f"{_NAME}.{_NAME}")


def attention(q, k, v, causal=False, sm_scale=None):
    shift = k.shape[2] - q.shape[2]

    def bottom_right(score, b, h, i, j):
        return torch.where(j <= i + shift, score, float("-inf"))

    return _flex(q, k, v, score_mod=bottom_right if causal else None, scale=sm_scale,
                 enable_gqa=q.shape[1] != k.shape[1])
