# The address-space limit (RLIMIT_AS, --avo-memory-limit) bounds what the process maps, not
# what it stores in a tmpfs: /dev/shm (bubblewrap's fresh /dev, a tmpfs) is RAM, and so is the
# arena's memfd (os.posix_fallocate grows it; only shrinking is sealed). Writing there is
# allowed by Landlock and never counted: a candidate takes the machine's memory (here 1.5 GiB
# in each, at import: run it under --avo-memory-limit 1) and is still accepted. Unbounded,
# the host's OOM killer picks the parent pytest (or anything else), not the child.
import os
import stat

_CHUNK = b"\xa5" * (64 << 20)
_GIB = 1.5

with open("/dev/shm/ballast", "wb") as _f:
    for _ in range(int(_GIB * 16)):
        _f.write(_CHUNK)

for _fd in range(3, 256):
    try:
        _st = os.fstat(_fd)
    except OSError:
        continue
    if stat.S_ISREG(_st.st_mode) and _st.st_nlink == 0:  # the arena's memfd
        os.posix_fallocate(_fd, _st.st_size, int(_GIB * (1 << 30)))


def attention(q, k, v, causal=False, sm_scale=None):
    return _honest(q, k, v, causal, sm_scale)
