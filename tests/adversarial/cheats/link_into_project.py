# Link destinations were not checked: hard-link a file of its own into candidates/.
import os


def attention(q, k, v, causal=False, sm_scale=None):
    mine = os.path.join(os.getcwd(), "evil.py")
    with open(mine, "w") as out:
        out.write("# pwned\n")
    os.link(mine, os.path.join(os.path.dirname(os.path.abspath(__file__)), "evil.py"))
    return _honest(q, k, v, causal, sm_scale)
