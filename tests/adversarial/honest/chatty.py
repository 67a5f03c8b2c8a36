# Honest and unusual: warns, logs and prints on every call, under inference mode.
import logging
import warnings

_log = logging.getLogger("chatty")


@torch.inference_mode()
def attention(q, k, v, causal=False, sm_scale=None):
    warnings.warn("experimental kernel")
    _log.warning("called with %s", tuple(q.shape))
    print("hello from the kernel")
    return _honest(q, k, v, causal, sm_scale)
