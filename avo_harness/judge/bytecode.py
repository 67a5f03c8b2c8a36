"""Bytecode kept for the harness's processes where the installed packages have none.

An install without ``.pyc`` files that cannot write them (a read-only venv, as on the H200
host we measure on) makes every process compile the source of what it imports, torch's
included, every time: each evaluation's pytest process, each sandboxed child, each compile
job. So the harness processes the search starts (evaluations, paired timings) get
``PYTHONPYCACHEPREFIX``: a folder of the user's cache where they write their bytecode.
A candidate's child and a compile job are given the same folder to read only: they never
write bytecode (``PYTHONDONTWRITEBYTECODE``), the folder is read-only to them (bubblewrap,
Landlock) and refused to the lockdown's writes, so what they load from it only harness
processes wrote. Where the packages have their bytecode, or no OS layer confines the
children (the in-process lockdown alone), none of this applies.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: The environment variable, set only for processes that may write there.
VARIABLE = "PYTHONPYCACHEPREFIX"


def folder() -> Path | None:
    """Where harness processes keep bytecode: None where the interpreter's packages have
    their own (torch's, as the sample), or no cache folder can be made."""
    import torch

    source = Path(torch.__file__)
    if (source.parent / "__pycache__" /
            f"{source.stem}.{sys.implementation.cache_tag}.pyc").exists():
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = cache / "avo-harness" / f"pycache-{sys.implementation.cache_tag}"
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return where if os.access(where, os.W_OK) else None


def for_harness(env: dict[str, str]) -> None:
    """A harness process's environment: write bytecode to ``folder()`` (unless the user
    chose a folder of their own), even under ``PYTHONDONTWRITEBYTECODE``, which keeps
    source trees clean: this folder is the harness's own."""
    from . import confine

    layers = confine.detect()
    if not (layers.bwrap or layers.landlock_abi):  # the lockdown alone: a folder that
        return  # outlives the run is no place a child past it should find writable
    where = folder()
    if where is not None and VARIABLE not in env:
        env[VARIABLE] = str(where)
        env.pop("PYTHONDONTWRITEBYTECODE", None)


def read_only() -> str | None:
    """The folder this process writes bytecode to, which the processes it starts that may
    only read it (candidates' children, compile jobs) are given; None if there is none."""
    return sys.pycache_prefix


def for_child(env: dict[str, str]) -> None:
    """A sandboxed process's environment: read ``read_only()``'s bytecode, write none."""
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    where = read_only()
    if where is not None:
        env[VARIABLE] = where
