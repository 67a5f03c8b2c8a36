"""Compiled kernels kept between evaluations of the same candidate files (module, helpers).

A child compiles into its own scratch folder (Triton's cache there). What it compiled is
kept under ``<store>/kernel-cache/<task>/<key>`` (``key``: the sha256 of the module and of
the helper modules beside it) and put back in the scratch folder of the next evaluation of
the very same files, so a re-evaluation finds its kernels compiled. The cache is the
candidate's own: only an evaluation of the same bytes ever sees it, so whatever a hostile
candidate leaves there (a binary that is not what its source compiles to) reaches no other
candidate's verdict, only its own, which it could equally have built at run time
(``cpp_extension``). Links are copied as links, never followed, and a cache larger than
``MAX_BYTES`` or of more than ``MAX_FILES`` files is not kept. Triton names the members of
a kernel's group by absolute path, and a scratch folder's path is new each evaluation, so a
restore points them at their copies (``_relocate_groups``); without it every kept kernel
misses and compiles again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

MAX_BYTES = 2 << 30
#: Triton writes a handful of files per kernel; a folder of many more is not a cache.
MAX_FILES = 20_000
#: Sources whose kernels are kept per task; the least recently used go first.
KEEP = 64
#: A group file names a few files; a larger one is not Triton's.
_MAX_GROUP_BYTES = 1 << 16


def key(source: bytes, helpers: Mapping[str, bytes]) -> str:
    """The name of a candidate's cache: the sha256 of its module, and, with helper modules
    (``_*.py``) beside it, of them too, names and all, since a helper changes what its
    kernels compile to. Without helpers it is the module's sha256 (the report's)."""
    module = hashlib.sha256(source).hexdigest()
    if not helpers:
        return module
    files = [[name, hashlib.sha256(text).hexdigest()] for name, text in sorted(helpers.items())]
    return hashlib.sha256(json.dumps([module, files]).encode()).hexdigest()


def folder(root: Path, task: str, key: str) -> Path:
    return root / task / key


def restore(cache: Path, into: Path) -> None:
    """Put the kept kernels of ``cache`` (if any) into the scratch folder ``into``."""
    if cache.is_dir():
        shutil.copytree(cache, into, symlinks=True, dirs_exist_ok=True)
        _relocate_groups(into)
        os.utime(cache)  # recently used


def _relocate_groups(root: Path) -> None:
    """Point every member of each Triton group file (``<key>/__grp__*.json``) under
    ``root`` at its file beside the group: Triton checks each absolute path exists and
    recompiles the kernel if one does not. Links and odd files are left alone (Triton
    then misses, as without this), so nothing is written outside ``root``."""
    for entry in root.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            continue
        for group in entry.glob("__grp__*.json"):
            try:
                if group.is_symlink() or group.stat().st_size > _MAX_GROUP_BYTES:
                    continue
                children = json.loads(group.read_text())["child_paths"]
                moved = {str(name): str(entry / Path(str(path)).name)
                         for name, path in children.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if all(Path(p).parent == entry and Path(p).name not in ("", ".", "..")
                   for p in moved.values()):
                group.write_text(json.dumps({"child_paths": moved}))


def persist(compiled: Path, cache: Path) -> None:
    """Keep what was compiled into ``compiled`` as ``cache``, replacing it whole."""
    if not compiled.is_dir() or not _small(compiled):
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    fresh = cache.with_name(f"{cache.name}.{os.getpid()}.new")
    stale = cache.with_name(f"{cache.name}.{os.getpid()}.old")
    shutil.copytree(compiled, fresh, symlinks=True)
    if cache.exists():
        os.replace(cache, stale)
    os.replace(fresh, cache)
    shutil.rmtree(stale, ignore_errors=True)
    _prune(cache.parent)


def _small(path: Path) -> bool:
    """Within ``MAX_BYTES`` and ``MAX_FILES`` (the walk stops as soon as it is not)."""
    size = count = 0
    for root, _, files in os.walk(path):
        for name in files:
            count += 1
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
            if count > MAX_FILES or size > MAX_BYTES:
                return False
    return True


def _prune(task_folder: Path) -> None:
    kept = sorted((p for p in task_folder.iterdir() if p.is_dir() and "." not in p.name),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
