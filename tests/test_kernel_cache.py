"""Compiled kernels kept per candidate source, and only for it."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

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


def test_kernels_kept_from_another_scratch_folder_are_found_by_triton(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton's group files name their members by absolute path: a restore into a new
    scratch folder must point them there, or every kept kernel compiles again."""
    from triton.runtime.cache import FileCacheManager

    first = tmp_path / "scratch1" / "triton"
    monkeypatch.setenv("TRITON_CACHE_DIR", str(first))
    manager = FileCacheManager("KEY")
    paths = {name: manager.put(b"x", name) for name in ("k.cubin", "k.json")}
    manager.put_group("k.json", paths)
    kept = kernel_cache.folder(tmp_path / "kernel-cache", "attention", "a" * 64)
    kernel_cache.persist(first, kept)

    again = tmp_path / "scratch2" / "triton"
    kernel_cache.restore(kept, again)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(again))
    group = FileCacheManager("KEY").get_group("k.json")
    assert group is not None
    assert set(group) == {"k.cubin", "k.json"}
    assert all(Path(p).parent == again / "KEY" for p in group.values())


def test_a_hostile_group_file_is_left_as_it_is(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    (kept / "KEY").mkdir(parents=True)
    odd = '{"child_paths": {"k": "/x/.."}}'
    (kept / "KEY" / "__grp__k.json").write_text(odd)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "__grp__k.json").write_text('{"child_paths": {"k": "/elsewhere/k"}}')
    os.symlink(outside, kept / "LINKED")
    into = tmp_path / "into"
    kernel_cache.restore(kept, into)
    assert (into / "KEY" / "__grp__k.json").read_text() == odd
    assert "/elsewhere/k" in (outside / "__grp__k.json").read_text()  # not written through


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


def test_a_changed_helper_misses_the_cache(tmp_path: Path) -> None:
    """The module imports its helpers: the same module beside other helpers is another
    candidate, and never sees the kernels this one compiled."""
    root = tmp_path / "kernel-cache"
    source = b"from _kernels import BLOCK\n"
    helpers = {"_kernels.py": b"BLOCK = 64\n"}
    compiled = tmp_path / "scratch1" / "triton"
    (compiled / "KEY").mkdir(parents=True)
    (compiled / "KEY" / "kernel.cubin").write_bytes(b"\x7fELF")
    kernel_cache.persist(compiled, kernel_cache.folder(
        root, "attention", kernel_cache.key(source, helpers)))

    def restored(files: dict[str, bytes]) -> bool:
        into = tmp_path / f"scratch{len(list(tmp_path.iterdir()))}" / "triton"
        kernel_cache.restore(kernel_cache.folder(root, "attention",
                                                 kernel_cache.key(source, files)), into)
        return (into / "KEY" / "kernel.cubin").exists()

    assert restored(dict(helpers))
    assert not restored({"_kernels.py": b"BLOCK = 128\n"})
    assert not restored({"_other.py": b"BLOCK = 64\n"})
    assert not restored({**helpers, "_more.py": b""})
    assert not restored({})
    # Without helpers the key is the module's sha256, as the report names it.
    assert kernel_cache.key(source, {}) == hashlib.sha256(source).hexdigest()


def test_a_candidate_file_keys_its_cache_on_the_helpers_beside_it(
        pytester: pytest.Pytester, write_candidate: Callable[..., Path],
        honest_attention: str) -> None:
    path = write_candidate("seed", honest_attention)
    helper = path.with_name("_kernels.py")
    keys = []
    for text in ("BLOCK = 64\n", "BLOCK = 128\n", None):
        if text is None:
            helper.unlink()
        else:
            helper.write_text(text)
        items, _ = pytester.inline_genitems("--avo-device", "cpu", "candidates")
        keys.append(items[0].parent.cache_key)
    assert keys[0] == kernel_cache.key(path.read_bytes(), {"_kernels.py": b"BLOCK = 64\n"})
    assert len(set(keys)) == 3
    assert keys[2] == hashlib.sha256(path.read_bytes()).hexdigest()
