"""Shared fixtures: throwaway projects of candidates, run through pytest with the plugin.

Plain-torch candidates stand in wherever the Triton seed is not the subject: the
interpreter is slow, and a test of the harness should not wait for it.
"""
from __future__ import annotations

import importlib
import itertools
import json
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import avo_harness

# pytester's in-process runs forget the modules imported during a run when it ends. A module
# imported again is a new object, and a candidate's process is started with a function that
# pickle must find as the very same object: so every harness module is imported up front.
for _module in pkgutil.walk_packages(avo_harness.__path__, "avo_harness."):
    importlib.import_module(_module.name)

#: Exact in float64, then rounded once: always within tolerance.
HONEST_ATTENTION = '''
import torch

def attention(q, k, v, causal=False, sm_scale=None):
    g = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(g, 1).double()
    v = v.repeat_interleave(g, 1).double()
    s = q.double() @ k.transpose(-1, -2) * (sm_scale or q.shape[-1] ** -0.5)
    if causal:
        nq, nk = q.shape[2], k.shape[2]
        i = torch.arange(nq)[:, None]
        j = torch.arange(nk)[None, :]
        s = s.masked_fill(j > i + nk - nq, float("-inf"))
    return (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
'''

HONEST_RMSNORM = '''
import torch

def rmsnorm(x, weight, eps=1e-6):
    x64 = x.double()
    y = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * weight.double()
    return y.to(x.dtype)
'''


@pytest.fixture(scope="session")
def honest_attention() -> str:
    """The source of a right (and slow) attention candidate in plain torch."""
    return HONEST_ATTENTION


@pytest.fixture(scope="session")
def honest_rmsnorm() -> str:
    """The source of a right rmsnorm candidate in plain torch."""
    return HONEST_RMSNORM


@dataclass
class AvoRun:
    """One pytest run over a project: exit status, output and the JSON report it wrote."""

    ret: int
    lines: list[str]
    report: dict[str, Any]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def outcomes(self) -> dict[str, int]:
        return pytest.RunResult.parse_summary_nouns(self.lines)

    def candidate(self, name: str, task: str = "attention") -> dict[str, Any]:
        return self.report["candidates"][f"candidates/{task}/{name}.py"]


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _options(examples: int, report: Path) -> list[str]:
    return ["--avo-device", "cpu", "--avo-examples", str(examples), "--avo-report", str(report)]


def write_candidate_file(root: Path, name: str, source: str, task: str = "attention") -> Path:
    folder = root / "candidates" / task
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


@pytest.fixture
def write_candidate(pytester: pytest.Pytester) -> Callable[..., Path]:
    """Write ``candidates/<task>/<name>.py`` into the pytester project."""

    def write(name: str, source: str, task: str = "attention") -> Path:
        return write_candidate_file(pytester.path, name, source, task)

    return write


@pytest.fixture(scope="session")
def make_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """A new project folder holding ``{name: source}`` as candidates of ``task``."""

    def make(candidates: dict[str, str], task: str = "attention") -> Path:
        root = tmp_path_factory.mktemp("project")
        (root / "pytest.ini").write_text("[pytest]\n")
        for name, source in candidates.items():
            write_candidate_file(root, name, source, task)
        return root

    return make


@pytest.fixture
def avo_run(pytester: pytest.Pytester) -> Callable[..., AvoRun]:
    """Run pytest in this process over the pytester project, on the CPU, with a JSON report."""
    runs = itertools.count()

    def run(*args: str, examples: int = 2) -> AvoRun:
        report = pytester.path / f"report-{next(runs)}.json"
        result = pytester.runpytest(*_options(examples, report), *args)
        return AvoRun(result.ret, result.outlines + result.errlines, _report(report))

    return run


@pytest.fixture(scope="session")
def fresh_run() -> Callable[..., AvoRun]:
    """Run pytest in a new process in ``root``, as a command typed in a shell would be.

    For what must not share this process: a candidate pytest itself might import, or
    a project whose run more than one module's tests read.
    """
    runs = itertools.count()

    def run(root: Path, *args: str, examples: int = 2) -> AvoRun:
        report = root / f"report-{next(runs)}.json"
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               *_options(examples, report), *args],
                              check=False, cwd=root, capture_output=True, text=True,
                              timeout=600)
        return AvoRun(done.returncode, (done.stdout + done.stderr).splitlines(), _report(report))

    return run


@pytest.fixture(autouse=True)
def _no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--avo-operator auto`` picks the agent when a key is set: no test may spend money."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """This suite runs under pytest-xdist (README's test command); the pytest runs a test
    starts are not its workers: pytest-benchmark turns itself off in any process that says
    it is one, and the plugin's benchmark items would time nothing."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
