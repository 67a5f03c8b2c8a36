"""An evaluation's process started before its candidate is known: its imports done, waiting.

An evaluation is a fresh pytest process, which spends seconds importing pytest, torch,
hypothesis, Triton and the harness before it collects anything (on the H200 host, about
5 s of each evaluation outside its phases). A search knows it will evaluate again, so an
evaluation started with ``EvalSettings.spare`` also starts the process of the next one
(``evaluate.py``): ``python -m avo_harness.evolve.spare DEVICE`` imports what every
evaluation imports, then waits for one line on stdin, the JSON list of pytest's arguments,
and runs ``pytest.main`` on them in place, as ``python -m pytest`` would. Nothing of a
candidate is known to it before that line; it exits at once on end of file (the controller
is gone, or had no use for it). Triton is imported only for a GPU: in the interpreter the
plugin sets ``TRITON_INTERPRET`` before anything imports it.
"""
from __future__ import annotations

import json
import sys


def main(device: str) -> int:
    import hypothesis  # noqa: F401
    import pytest
    import torch  # noqa: F401

    import avo_harness.collector.candidate  # noqa: F401
    import avo_harness.plugin  # noqa: F401

    if device == "cuda":
        import triton  # noqa: F401
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    args = json.loads(line)
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        print("avo spare: its command line was not a list of strings", file=sys.stderr)
        return 4
    sys.argv = ["pytest", *args]
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cpu"))
