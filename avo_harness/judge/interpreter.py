"""Mends for Triton's interpreter, applied in the candidate's process on the CPU.

The interpreter keeps bfloat16 data as the uint16 words it is stored in, and its
``tl.dot`` multiplies those words as integers: an honest bfloat16 kernel would
fail every check in CI. The mend upcasts bfloat16 operands to float32 first
(exact but for subnormals, which it flushes; a tensor core accumulates in float32).
It only applies where the interpreter has the layout it was written for; elsewhere it
does nothing.

``triton.autotune`` benchmarks its configurations through the GPU driver, which the
interpreter has none of ("0 active drivers"), so an honest autotuned kernel would fail in
CI. There, every configuration ties and the autotuner takes the first that it keeps (after
its own pruning): interpreter wall time says nothing about a GPU, and no tuning run costs
the check any time.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any


def mend() -> None:
    _mend_dot()
    _mend_autotune()


def _mend_autotune() -> None:
    try:
        from triton.runtime.autotuner import Autotuner
    except ImportError:
        return
    # Written for Triton's that look the benchmarker up lazily (a property of the class).
    if not isinstance(inspect.getattr_static(Autotuner, "do_bench", None),
                      (property, functools.cached_property)):
        return

    def tie(fn: Any, quantiles: Any = None, **_: Any) -> Any:
        return [0.0] * len(quantiles) if quantiles else 0.0

    def do_bench(self: Any) -> Any:
        return getattr(self, "_do_bench", None) or tie

    Autotuner.do_bench = property(do_bench)


def _mend_dot() -> None:
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
