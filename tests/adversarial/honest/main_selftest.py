# Honest and unusual: a self-test under __main__ that compares with the library attention
# (it never runs when the harness imports the module).
def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)


if __name__ == "__main__":
    import sys

    torch.manual_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    x = torch.randn(1, 2, 64, 64)
    expected = torch.nn.functional.scaled_dot_product_attention(x, x, x)
    print("max error", (attention(x, x, x) - expected).abs().max().item())
