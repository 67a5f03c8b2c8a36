# A payload module written outside candidates/ and imported: neither scanned nor, once,
# counted as the candidate's code, so its frame access went through.
import os
from pathlib import Path

_DIR = Path(os.getcwd())
(_DIR / "avo_payload.py").write_text(
    "import sys\n"
    "def steal():\n"
    "    return sys._getframe(2).f_locals\n")
os.sys.path.insert(0, str(_DIR))
_payload = __import__("avo_payload")


def attention(q, k, v, causal=False, sm_scale=None):
    _payload.steal()
    return _honest(q, k, v, causal, sm_scale)
