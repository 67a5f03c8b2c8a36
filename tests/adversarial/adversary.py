"""Dropping the cheating and the honest-but-unusual candidates into a project."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

import avo_harness

HERE = Path(__file__).parent
BASE = (HERE / "_base.py").read_text()


def candidate(kind: str, name: str) -> str:
    """The source of ``<kind>/<name>.py``, with the honest helpers it wraps prepended (after
    its PEP 263 coding line, if it has one, which must stay first)."""
    path = HERE / kind / f"{name}.py"
    with open(path, "rb") as f:
        encoding, _ = tokenize.detect_encoding(f.readline)
    text = path.read_text(encoding=encoding)
    first, _, rest = text.partition("\n")
    if _CODING.match(first):
        return first + "\n" + BASE + "\n\n" + rest
    return BASE + "\n\n" + text


_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def names(kind: str) -> list[str]:
    return sorted(p.stem for p in (HERE / kind).glob("*.py"))


def run_project(root: Path, sources: dict[str, str], *args: str,
                timeout: float = 900) -> tuple[dict[str, Any], str]:
    """Write ``sources`` as candidates/attention/<name>.py under ``root`` (a name
    ``<task>/<name>`` under that task's folder) and run pytest on them in a fresh process;
    returns the JSON report by candidate name, and the output."""
    for name, source in sources.items():
        task, _, stem = name.rpartition("/")
        folder = root / "candidates" / (task or "attention")
        folder.mkdir(parents=True, exist_ok=True)
        coding = _CODING.match(source.partition("\n")[0])
        (folder / f"{stem}.py").write_bytes(source.encode(coding.group(1) if coding else "utf-8"))
    (root / "pytest.ini").write_text("[pytest]\n")
    # What a backdoor would append to: a project's root conftest.py.
    (root / "conftest.py").write_text("# the project's own hooks\n")
    report = root / "report.json"
    package_root = str(Path(avo_harness.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "avo_harness.plugin", "candidates",
         "--avo-report", str(report), "-q", "-p", "no:cacheprovider", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    document = json.loads(report.read_text())
    by_name = {Path(entry["path"]).stem: entry for entry in document["candidates"].values()}
    return by_name, proc.stdout + proc.stderr


def rules(entry: dict[str, Any]) -> set[str]:
    """Every rule a candidate's entry names: its correctness failure and benchmark failures."""
    found = set()
    failure = entry["correctness"].get("failure")
    if failure:
        found.add(failure["rule"])
    for bench in entry["benchmarks"].values():
        if bench.get("outcome") == "failed":
            found.add(bench["rule"])
    return found
