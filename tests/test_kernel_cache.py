"""Compiled kernels kept per candidate source, and only for it."""
from __future__ import annotations

import os
from pathlib import Path

from avo_harness.judge import kernel_cache


def test_what_one_evaluation_compiled_is_put_back_for_the_next_of_the_same_source(
        tmp_path: Path) -> None:
    root = tmp_path / "kernel-cache"
    mine = kernel_cache.folder(root, "attention", "a" * 64)
    other = kernel_cache.folder(root, "attention", "b" * 64)
    compiled = tmp_path / "scratch1" / "triton"
    (compiled / "KEY").mkdir(parents=True)
    (compiled / "KEY" / "kernel.cubin").write_bytes(b"\x7fELF")
    os.symlink("/etc/passwd", compiled / "KEY" / "link")
    kernel_cache.persist(compiled, mine)

    again = tmp_path / "scratch2" / "triton"
    kernel_cache.restore(mine, again)
    assert (again / "KEY" / "kernel.cubin").read_bytes() == b"\x7fELF"
    assert os.readlink(again / "KEY" / "link") == "/etc/passwd"  # copied as a link
    elsewhere = tmp_path / "scratch3" / "triton"
    kernel_cache.restore(other, elsewhere)
    assert not elsewhere.exists()  # another source sees nothing


def test_a_cache_is_replaced_whole_and_the_oldest_sources_go(tmp_path: Path,
                                                             monkeypatch: object) -> None:
    root = tmp_path / "kernel-cache"
    monkeypatch.setattr(kernel_cache, "KEEP", 2)  # type: ignore[attr-defined]
    for i, name in enumerate(("old", "mid", "new")):
        compiled = tmp_path / f"s{i}"
        compiled.mkdir()
        (compiled / f"{name}.json").write_text("{}")
        target = kernel_cache.folder(root, "rmsnorm", name)
        kernel_cache.persist(compiled, target)
        os.utime(target, (i * 1000.0 + 1e9, i * 1000.0 + 1e9))
    kernel_cache.persist(tmp_path / "s2", kernel_cache.folder(root, "rmsnorm", "new"))
    assert sorted(p.name for p in (root / "rmsnorm").iterdir()) == ["mid", "new"]
    assert [p.name for p in (root / "rmsnorm" / "new").iterdir()] == ["new.json"]


def test_a_cache_too_large_is_not_kept(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(kernel_cache, "MAX_BYTES", 10)  # type: ignore[attr-defined]
    compiled = tmp_path / "c"
    compiled.mkdir()
    (compiled / "big").write_bytes(b"x" * 100)
    target = kernel_cache.folder(tmp_path / "root", "attention", "c" * 64)
    kernel_cache.persist(compiled, target)
    assert not target.exists()


def test_a_folder_of_too_many_files_is_not_kept(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(kernel_cache, "MAX_FILES", 5)  # type: ignore[attr-defined]
    compiled = tmp_path / "c"
    compiled.mkdir()
    for i in range(6):
        (compiled / f"f{i}").write_text("")
    target = kernel_cache.folder(tmp_path / "root", "attention", "d" * 64)
    kernel_cache.persist(compiled, target)
    assert not target.exists()
