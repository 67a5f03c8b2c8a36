"""Shared memory between the parent and the child: the parent writes inputs, reads outputs.

One arena per child: a sealed memfd on the CPU, one CUDA allocation shared by IPC on a
GPU. The parent lays tensors out in it by offset and sends the child descriptors only
(:class:`Place`), so nothing the child sends is ever unpickled, and the parent's
private input sets never enter memory the child can see: only the current call's
arguments and the slot for its output live here.

The memfd has a fixed size, sealed: against shrinking (a child that truncated it would
crash the parent with SIGBUS on its next write), growing (a child could otherwise
``fallocate`` memory that no address-space limit counts) and further seals. A call
that needs more gets a bigger arena, and with it a new child.
"""
from __future__ import annotations

import fcntl
import math
import mmap
import os
from dataclasses import dataclass
from typing import Any

import torch

#: Offsets are aligned for TMA descriptors and vector loads (16 B needed, 128 B preferred).
_ALIGN = 4096
_MIN_BYTES = 64 << 20


@dataclass(frozen=True)
class Place:
    """Where one tensor lies in the arena: what the child needs to view it."""

    offset: int
    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def nbytes(self) -> int:
        """Bytes from the first element to one past the last (padding between rows too)."""
        if any(n == 0 for n in self.shape):
            return 0
        size = getattr(torch, self.dtype).itemsize
        return size * (1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride)))


def view(base: torch.Tensor, place: Place) -> torch.Tensor:
    """The tensor ``place`` describes, a view of the arena's bytes ``base``."""
    dtype = getattr(torch, place.dtype)
    count = max(1, math.ceil(place.nbytes() / dtype.itemsize))
    flat = base[place.offset:place.offset + count * dtype.itemsize].view(dtype)
    return flat.as_strided(place.shape, place.stride)


class Arena:
    """The parent's side: the shared memory, and where tensors lie in it."""

    def __init__(self, device: str, size: int = _MIN_BYTES) -> None:
        self.device = device
        self.size = -(-max(size, _MIN_BYTES) // _ALIGN) * _ALIGN
        self.fd: int | None = None
        self._map: mmap.mmap | None = None
        if device == "cpu":
            self.fd = os.memfd_create("avo-arena", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
            os.ftruncate(self.fd, self.size)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_SEAL)
            self._map = mmap.mmap(self.fd, self.size)
            self.base: torch.Tensor | None = torch.frombuffer(self._map, dtype=torch.uint8)
        else:
            self.base = torch.empty(self.size, dtype=torch.uint8, device=device)

    @staticmethod
    def layout(likes: list[torch.Tensor]) -> tuple[list[Place], int]:
        """Places for tensors shaped and strided like ``likes``, from offset 0, and the bytes
        they take."""
        places, offset = [], 0
        for like in likes:
            dtype = str(like.dtype).removeprefix("torch.")
            place = Place(offset, dtype, tuple(like.shape), tuple(like.stride()))
            places.append(place)
            offset += -(-max(place.nbytes(), 1) // _ALIGN) * _ALIGN
        return places, offset

    def tensor(self, place: Place) -> torch.Tensor:
        assert self.base is not None
        return view(self.base, place)

    def handle(self) -> dict[str, Any]:
        """What the child maps: the memfd's size (the fd it inherited), or the CUDA tensor
        (pickled by torch as an IPC handle)."""
        if self.fd is not None:
            return {"size": self.size}
        return {"size": self.size, "cuda": self.base}

    def close(self) -> None:
        self.base = None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view is still referenced somewhere: the GC unmaps it
                pass
            self._map = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ChildArena:
    """The child's side: maps what the parent shares, and views tensors in it."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.base: torch.Tensor | None = None

    def map(self, handle: dict[str, Any]) -> None:
        if "cuda" in handle:
            self.base = handle["cuda"]
        else:
            assert self.fd is not None
            self.base = torch.frombuffer(mmap.mmap(self.fd, handle["size"]), dtype=torch.uint8)

    def tensor(self, place: Place) -> torch.Tensor:
        assert self.base is not None, "the parent sent no arena"
        return view(self.base, place)
