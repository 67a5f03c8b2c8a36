"""A small Triton kernel compiled for an H100/H200 (sm_90) on any machine, GPU or not:
Triton's CUDA backend and ptxas compile without a device, as the compile jobs do."""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

TARGET = GPUTarget("cuda", 90, 32)


def _add(x, y, out, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + i, tl.load(x + i, mask=i < n) + tl.load(y + i, mask=i < n), mask=i < n)


# Not ``triton.jit``: under TRITON_INTERPRET=1 (set for the candidates of a CPU session) it
# would make an interpreted function, which compiles nothing.
ADD = JITFunction(_add)


def source(block: int = 128) -> ASTSource:
    return ASTSource(ADD, {"x": "*fp32", "y": "*fp32", "out": "*fp32", "n": "i32",
                           "BLOCK": "constexpr"}, constexprs={"BLOCK": block}, attrs={})


def compile_here(block: int = 128, **options: Any) -> Any:
    """The kernel as Triton compiles it in this process (into TRITON_CACHE_DIR)."""
    return triton.compile(source(block), target=TARGET, options=options)


def compile_from(path: Path, block: int = 128) -> Any:
    """The same kernel compiled here from a copy of this module's source at ``path``: its
    IR then names ``path`` in its source locations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(inspect.getsource(inspect.getmodule(compile_from)))
    spec = importlib.util.spec_from_file_location(f"sm90_copy_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return triton.compile(module.source(block), target=TARGET)
