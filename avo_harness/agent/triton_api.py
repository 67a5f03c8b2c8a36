"""The Triton language reference of the installed version, as a knowledge-base file.

Written from ``triton.language`` itself (each function's signature and the first paragraph
of its docstring), so it always describes the Triton the kernels are compiled with; grouped
as Triton's own documentation groups them, and anything else under "other".
"""
from __future__ import annotations

import inspect
import re

#: Triton's documentation's groups of ``triton.language``.
GROUPS = {
    "Programming model": "tensor tensor_descriptor program_id num_programs",
    "Creation ops": "arange cat full zeros zeros_like cast",
    "Shape manipulation ops": "broadcast broadcast_to expand_dims interleave join permute ravel "
                              "reshape split trans view squeeze unsqueeze",
    "Linear algebra ops": "dot dot_scaled",
    "Memory and pointer ops": "load store make_tensor_descriptor load_tensor_descriptor "
                              "store_tensor_descriptor make_block_ptr",
    "Indexing ops": "flip where swizzle2d gather",
    "Math ops": "abs cdiv ceil clamp cos div_rn erf exp exp2 fdiv floor fma log log2 maximum "
                "minimum rsqrt sigmoid sin softmax sqrt sqrt_rn umulhi",
    "Reduction ops": "argmax argmin max min reduce sum xor_sum reduce_or",
    "Scan and sort ops": "associative_scan cumprod cumsum histogram sort topk",
    "Atomic ops": "atomic_add atomic_and atomic_cas atomic_max atomic_min atomic_or "
                  "atomic_xchg atomic_xor atomic_load atomic_store",
    "Random number generation": "randint randint4x rand randn",
    "Iterators": "range static_range",
    "Inline assembly and element maps": "inline_asm_elementwise map_elementwise",
    "Compiler hints": "assume debug_barrier max_constancy max_contiguous multiple_of",
    "Debug ops": "static_print static_assert device_print device_assert",
}
#: Host-side ``triton`` functions a kernel module uses.
HOST = ("jit", "autotune", "heuristics", "Config", "cdiv", "next_power_of_2", "set_allocator")
_ROLE = re.compile(r":(?:code|py:\w+):`([^`]*)`")


def reference() -> str | None:
    """The markdown file; None without Triton."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None
    lines = [f"# Triton language reference (triton {triton.__version__}, as installed)", "",
             "Each entry: the signature as `tl.<name>` takes it (internal arguments left out) "
             "and the first paragraph of its docstring. Generated from the installed Triton.", ""]
    grouped = {title: names.split() for title, names in GROUPS.items()}
    grouped["Other names of triton.language"] = sorted(
        n for n in tl.__all__ if n not in {m for ns in grouped.values() for m in ns}
        and callable(getattr(tl, n, None)) and not isinstance(getattr(tl, n), tl.dtype))
    for title, names in grouped.items():
        entries = [_entry(f"tl.{n}", getattr(tl, n)) for n in names if hasattr(tl, n)]
        if entries:
            lines += [f"## {title}", "", *entries, ""]
    types = [n for n in tl.__all__ if isinstance(getattr(tl, n, None), tl.dtype)]
    lines += ["## Data types", "", ", ".join(f"`tl.{n}`" for n in types), "",
              "## Host side (`import triton`)", "",
              *[_entry(f"triton.{n}", getattr(triton, n)) for n in HOST if hasattr(triton, n)]]
    return "\n".join(lines) + "\n"


def _entry(name: str, obj: object) -> str:
    fn = getattr(obj, "fn", obj)  # a JITFunction's Python function holds the signature
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if not p.name.startswith("_")]
        signature = f"({', '.join(str(p) for p in params)})"
    except (TypeError, ValueError):
        signature = ""
    doc = inspect.getdoc(fn) or inspect.getdoc(obj) or ""
    first = _ROLE.sub(r"`\1`", " ".join(doc.split("\n\n")[0].split()))
    return f"- `{name}{signature}`: {first[:400]}"
