"""One compile of IR that a candidate's process sent, in a sandboxed process of its own.

Started by the compile server (``compile_server``) as ``python -m
avo_harness.judge.compile_job SCRATCH LANDLOCK_ABI`` inside bubblewrap without a GPU, it
confines itself with Landlock, reads one request (JSON) on stdin, lets Triton compile the
IR from its first stage on, and writes the later stages and the metadata (JSON) on stdout.
It runs no candidate code, only Triton's compiler and ptxas over the text it was given,
which may be hostile: a new process for each compile, so that what one input did to it
(an exploit of a parser) cannot reach the compile of another, and it writes nowhere but
its scratch folder; the server alone stores what it answers.
"""
from __future__ import annotations

import base64
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

#: Address space of one compile (ptxas on a large warp-specialized kernel stays under 2 GiB).
MEMORY_BYTES = 16 << 30
#: Stages that are binary, sent as base64.
BINARY = ("cubin",)


def main(scratch: Path, landlock_abi: int) -> None:
    from . import confine

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    # Writes only into its scratch folder (ptxas's temporaries too: TMPDIR); it may execute
    # ptxas, as the CUDA compilers' rule allows, and opens no device.
    confine.restrict_self(confine.Confinement(None, landlock_abi, None), scratch=scratch,
                          cuda=True, devices=False)
    request = json.loads(sys.stdin.buffer.read())
    try:
        answer = compile_ir(request, scratch)
    except Exception as exc:  # the input's fault: the server answers it as a failed compile
        lines = str(exc).strip().splitlines() or [""]
        answer = {"error": f"{type(exc).__name__}: {lines[-1]}"[:500]}
    sys.stdout.write(json.dumps(answer))


def compile_ir(request: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Triton's compile of ``request['ir']`` (its stage ``request['ext']``, already past
    that stage's passes) for ``request['target']`` with ``request['options']``: every later
    stage's text (a binary one in base64) and the kernel's metadata."""
    os.environ["TRITON_CACHE_DIR"] = str(scratch / "triton")  # before triton reads it
    import triton
    from triton.backends.compiler import GPUTarget

    ext = request["ext"]
    path = scratch / f"kernel.{ext}"
    path.write_text(request["ir"])
    backend, arch, warp_size = request["target"]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in request["options"].items()}
    kernel = triton.compile(str(path), target=GPUTarget(backend, arch, warp_size),
                            options=options)
    asm = {name: base64.b64encode(kernel.asm[name]).decode() if name in BINARY
           else kernel.asm[name] for name in kernel.asm if name not in (ext, "source")}
    # As Triton writes it into its cache (the target as a dict).
    return {"asm": asm, "metadata": json.loads(json.dumps(kernel.metadata._asdict(), default=vars))}


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
