# Frames without an audit event of the candidate's own: logging.currentframe() is
# sys._getframe called by the standard library; f_back then walks into the harness.
import logging

_STOLEN = []


def attention(q, k, v, causal=False, sm_scale=None):
    _STOLEN.append(logging.currentframe().f_back)
    return _honest(q, k, v, causal, sm_scale)
