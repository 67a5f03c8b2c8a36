# Rule 2: replay keyed by object identity, as in the GPU MODE incidents.
_CACHE = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (id(q), id(k), id(v))
    if key not in _CACHE:
        _CACHE[key] = _honest(q, k, v, causal, sm_scale)
    return _CACHE[key]
