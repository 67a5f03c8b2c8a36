"""Evaluating one candidate: the very pytest items a user runs, in a fresh process.

The controller never imports candidate code. It starts ``python -m pytest FILE
--avo-report R`` in its own process group (killed whole on timeout: the candidate's
failure), and the report R is the fitness. No report, or no entry in it, is the
harness's failure: that pytest process runs the harness, the candidate its sandbox.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import avo_harness

from .fitness import Fitness, from_report, harness_fault

if TYPE_CHECKING:
    import pytest


@dataclass(frozen=True)
class EvalSettings:
    device: str
    examples: int
    call_timeout_s: float
    eval_timeout_s: float
    memory_limit_gib: float
    rootdir: Path


def settings_from(config: pytest.Config) -> EvalSettings:
    """How this session evaluates a candidate: one place for the loop and for any operator
    that evaluates drafts on its behalf, so both see the same numbers."""
    from ..options import raw, read_evolve_settings, read_settings

    harness = read_settings(config)
    examples = raw(config, "examples")
    return EvalSettings(
        device="cuda" if harness.cuda else "cpu",
        examples=int(examples) if examples is not None else (100 if harness.cuda else 20),
        call_timeout_s=harness.timeout_s,
        eval_timeout_s=read_evolve_settings(config).eval_timeout_s,
        memory_limit_gib=harness.memory_limit_bytes / 2**30, rootdir=config.rootpath)


@dataclass(frozen=True)
class Evaluation:
    fitness: Fitness
    report: dict[str, Any] | None
    wall_s: float


def evaluate(path: Path, settings: EvalSettings) -> Evaluation:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="avo-eval-") as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", str(path), "-p", "avo_harness.plugin",
               "-p", "no:cacheprovider", "-q", "--benchmark-quiet",
               "--rootdir", str(settings.rootdir), "--avo-report", str(report_path),
               "--avo-device", settings.device, "--avo-examples", str(settings.examples),
               "--avo-timeout", str(settings.call_timeout_s),
               "--avo-memory-limit", str(settings.memory_limit_gib)]
        package_root = str(Path(avo_harness.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        proc = subprocess.Popen(cmd, cwd=settings.rootdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=settings.eval_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Evaluation(Fitness(False, f"evaluation timed out after "
                                      f"{settings.eval_timeout_s:g} s", {}, 0.0),
                              None, time.monotonic() - started)
        if not report_path.exists():
            # The candidate runs in the sandbox's child, so this is the harness's own fault.
            tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return Evaluation(harness_fault(f"pytest exited with status {proc.returncode} "
                                            f"and no report: {tail[0][:300]}"),
                              None, time.monotonic() - started)
        report = json.loads(report_path.read_text())
    entries = list(report.get("candidates", {}).values())
    return Evaluation(from_report(entries[0] if entries else None), report,
                      time.monotonic() - started)
