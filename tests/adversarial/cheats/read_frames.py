# Rule 7: walks up to the harness's frames (through an exception, no sys import).
_STOLEN = []


def attention(q, k, v, causal=False, sm_scale=None):
    try:
        raise RuntimeError
    except RuntimeError as exc:
        _STOLEN.append(exc.__traceback__.tb_frame.f_back)
    return _honest(q, k, v, causal, sm_scale)
