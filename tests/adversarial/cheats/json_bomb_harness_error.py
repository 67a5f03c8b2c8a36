# Claims a harness error instead of failing: the worker's answer (through the hijacked
# json default encoder, as in forged_device_time) becomes 60 kB of nested brackets, which the
# parent's json.loads cannot parse without a RecursionError. RecursionError is a RuntimeError:
# check_case files it under the harness's own faults ("harness-error": not judged, evaluated
# again on --avo-resume) instead of a protocol fault of the candidate. The kernel is wrong.
import json

_enc = (lambda e: e)(json._default_encoder)
_orig = json.JSONEncoder.encode


def _forged(o):
    if isinstance(o, dict) and o.get("status") == "ok" and "device_s" in o:
        return "[" * 30000 + "]" * 30000
    return _orig(_enc, o)


_enc.encode = _forged


def attention(q, k, v, causal=False, sm_scale=None):
    return torch.zeros_like(q)  # wrong everywhere
