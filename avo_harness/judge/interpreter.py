"""Mends for Triton's interpreter, applied in the candidate's process on the CPU.

The interpreter keeps bfloat16 data as the uint16 words it is stored in, and its
``tl.dot`` multiplies those words as integers: an honest bfloat16 kernel would
fail every check in CI. The mend upcasts bfloat16 operands to float32 first
(exact but for subnormals, which it flushes; a tensor core accumulates in float32).
It only applies where the interpreter has the layout it was written for; elsewhere it
does nothing.
"""
from __future__ import annotations

from typing import Any


def mend() -> None:
    try:
        import numpy as np
        import triton.language as tl
        from triton.runtime import interpreter

        builder = interpreter.InterpreterBuilder
        convert, handle = interpreter._convert_float, interpreter.TensorHandle
        original = builder.create_dot
    except (ImportError, AttributeError):
        return

    def upcast(h: Any) -> Any:
        if h.dtype != tl.bfloat16:
            return h
        return handle(convert(h.data, tl.bfloat16, tl.float32, None).view(np.float32), tl.float32)

    def create_dot(self: Any, a: Any, b: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, upcast(a), upcast(b), *args, **kwargs)

    builder.create_dot = create_dot
