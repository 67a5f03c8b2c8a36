"""Bytecode for read-only installs: harness processes write it, sandboxed ones only read it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avo_harness.judge import bytecode, confine
from avo_harness.judge.sandbox import Sandbox, SandboxSettings, candidate_settings

ROOT = Path(__file__).resolve().parent.parent


def _without_bytecode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """torch as an install without .pyc files; the user's cache folder under ``tmp_path``."""
    package = tmp_path / "site" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(torch, "__file__", str(package / "__init__.py"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_install_with_its_bytecode_needs_no_folder(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    cache = _without_bytecode(monkeypatch, tmp_path)
    pycache = Path(torch.__file__).parent / "__pycache__"
    pycache.mkdir()
    (pycache / f"__init__.{sys.implementation.cache_tag}.pyc").write_bytes(b"")
    assert bytecode.folder() is None
    env: dict[str, str] = {}
    bytecode.for_harness(env)
    assert env == {} and not cache.exists()


def test_without_bytecode_harness_processes_write_to_the_user_s_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache = _without_bytecode(monkeypatch, tmp_path)
    monkeypatch.setattr(confine, "detect", lambda: confine.Confinement(None, 7, None))
    env = {"PYTHONDONTWRITEBYTECODE": "1"}  # for source trees: this folder is the harness's
    bytecode.for_harness(env)
    assert set(env) == {bytecode.VARIABLE}
    where = Path(env[bytecode.VARIABLE])
    assert where.is_dir() and where.parent == cache / "avo-harness"
    chosen = {bytecode.VARIABLE: str(tmp_path / "mine")}
    bytecode.for_harness(chosen)  # the user's own folder stays theirs
    assert chosen == {bytecode.VARIABLE: str(tmp_path / "mine")}
    monkeypatch.setattr(confine, "detect", lambda: confine.Confinement(None, 0, "none here"))
    unconfined: dict[str, str] = {}
    bytecode.for_harness(unconfined)  # the lockdown alone around the children: no folder
    assert unconfined == {}


def test_a_child_reads_the_parent_s_folder_never_writes_and_may_not_touch_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "pyc"))
    env: dict[str, str] = {}
    bytecode.for_child(env)
    assert env == {bytecode.VARIABLE: str(tmp_path / "pyc"), "PYTHONDONTWRITEBYTECODE": "1"}
    settings = candidate_settings([ROOT / "candidates" / "attention" / "seed.py"], cuda=False,
                                  timeout_s=10, memory_limit_bytes=0, protected=[])
    assert str(tmp_path / "pyc") in settings.protected
    box = Sandbox(None, "attention", SandboxSettings(False, 10, 0))
    try:
        box.scratch_folder()
        assert box._environment()[bytecode.VARIABLE] == str(tmp_path / "pyc")
    finally:
        box.close()


_PARENT = """
import sys
from pathlib import Path
import torch
from avo_harness.judge.sandbox import Sandbox, candidate_settings
from avo_harness.tasks import get_task

task = get_task("rmsnorm")
path = Path(sys.argv[1])
box = Sandbox(path, "rmsnorm", candidate_settings([path], cuda=False, timeout_s=120,
                                                  memory_limit_bytes=0, protected=[]))
case = {"shape": [4, 64], "dtype": "float16", "layout": "contiguous", "eps": None,
        "spread": 1.0, "seed": 2}
call = task.make_inputs(case, "cpu")
_, returned = box.call(call, *task.output_like(call))
box.close()
print("ok" if returned.out is not None else returned.described)
"""


def test_an_honest_candidate_runs_in_a_child_given_a_read_only_folder(tmp_path: Path) -> None:
    """The parent writes its bytecode into the folder; its child (under the lockdown, which
    refuses writes there) imports its harness and the candidate with it and writes none."""
    project = tmp_path / "project" / "candidates" / "rmsnorm"
    project.mkdir(parents=True)
    candidate = project / "plain.py"
    candidate.write_text("import torch\n\n\ndef rmsnorm(x, weight, eps=None):\n"
                         "    x32 = x.float()\n    e = 1e-6 if eps is None else eps\n"
                         "    y = x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + e)\n"
                         "    return (y * weight.float()).to(x.dtype)\n")
    prefix = tmp_path / "pyc"
    done = subprocess.run([sys.executable, "-c", _PARENT, str(candidate)], cwd=ROOT,
                          env={**_env(), bytecode.VARIABLE: str(prefix)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"
    tag = sys.implementation.cache_tag
    judge = prefix / str(ROOT.relative_to("/")) / "avo_harness" / "judge"
    assert (judge / f"sandbox.{tag}.pyc").is_file()  # the parent's
    assert not (judge / f"worker.{tag}.pyc").exists()  # the child's alone: never written
    assert not (judge / f"lockdown.{tag}.pyc").exists()
    assert not any(prefix.rglob("plain*.pyc"))  # nor the candidate's


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if k not in (bytecode.VARIABLE, "PYTHONDONTWRITEBYTECODE")}
