# Rule 7: overwrites another candidate (static-clean: only open()).
from pathlib import Path


def attention(q, k, v, causal=False, sm_scale=None):
    with open(Path(__file__).with_name("seed.py"), "a") as other:
        other.write("\n# pwned\n")
    return _honest(q, k, v, causal, sm_scale)
