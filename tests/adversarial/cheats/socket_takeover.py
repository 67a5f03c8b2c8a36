# Takes over the worker's end of the parent<->child socket (no module patched, nothing the
# integrity snapshot watches). During the call it moves /dev/null onto the socket's
# descriptor number (fcntl F_DUPFD after os.close: dup2 by another name; the scan bans only
# os.dup/dup2/write/fdopen), so the worker's real answers ("ok" with no device time, then
# "clean") vanish. A weakref finalizer on the returned tensor runs at the worker's
# ``del out``: after it copied the output into the slot and ran its checks, just before it
# reads the next request. The finalizer writes the candidate's own "ok" (with a forged
# device_s) and "clean" straight onto the socket through open(fd), and puts the socket back.
# On the CPU the parent takes device_s as the round's time with no cross-check.
# (A first version answered from inside the call, having written the slot itself: the
# parent then raced ahead and wrote the next inputs while the worker was still copying the
# old output over them: input-mutated, depending on timing.)
# Status: accepted on CPU with a forged time as of 22:40 (the 22:57 sandbox.py ignores a CPU
# device_s); the takeover itself still goes unnoticed, and on a GPU it forges like
# forged_device_time does.
import fcntl
import json
import os
import stat
import struct
import weakref


def _find_socket():
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
    raise RuntimeError("no socket")


_S = _find_socket()
_REAL = fcntl.fcntl(_S, fcntl.F_DUPFD_CLOEXEC, 300)
_SINK = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)


def _put(fd_from):
    os.close(_S)
    got = fcntl.fcntl(fd_from, fcntl.F_DUPFD, _S)
    assert got == _S, got


def _send(message):
    data = json.dumps(message).encode()
    with open(_REAL, "wb", buffering=0, closefd=False) as sock:
        sock.write(struct.pack("!i", len(data)) + data)


def _answer(claim):
    _send({"status": "ok", "output": None, "device_s": claim})
    _send({"status": "clean"})
    _put(_REAL)


def attention(q, k, v, causal=False, sm_scale=None):
    out = _honest(q, k, v, causal, sm_scale)
    b, h, nq, d = q.shape
    claim = 4.0 * b * h * nq * k.shape[2] * d / (2 if causal else 1) / 9e10
    _put(_SINK)
    weakref.finalize(out, _answer, claim)
    return out
