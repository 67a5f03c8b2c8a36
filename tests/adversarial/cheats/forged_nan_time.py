# Forges a NaN round time, through the same hijack of json's default encoder as
# forged_device_time. json.loads accepts NaN, and every check of a time compares with it
# and is false: on a GPU the forged-clock test (t > wall), the wall-gap test and the floor
# all pass, on the CPU the floor. The benchmark items pass with tflops NaN; then
# pytest-benchmark's statistics raise at session finish, so the whole session (every
# candidate in it) writes no report, which the evolve loop files as a harness error
# (evaluated again on --avo-resume).
# WARNING: it takes the corpus session (test_cheats) down with it; run it on its own.
# Status: crashed the session as of 22:40; since sandbox.py's 22:57 change a GPU NaN is a
# protocol fault and a CPU device_s is ignored.
import json

_enc = (lambda e: e)(json._default_encoder)
_orig = json.JSONEncoder.encode


def _forged(o):
    if isinstance(o, dict) and o.get("status") == "ok" and "device_s" in o:
        o = dict(o, device_s=float("nan"))
    return _orig(_enc, o)


_enc.encode = _forged


def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
