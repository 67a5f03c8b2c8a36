"""README.md's layout is a map a newcomer can trust: every path it names exists, and every
module of the package is on it (a module added or moved without its line fails here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
#: What an entry of the layout names: files and folders, a few to a line, before the gap
#: that starts its description.
_NAME = re.compile(r"[\w<>.-]+(/[\w<>.-]+)*/?")


def _layout() -> list[str]:
    """The indented block under ``## Layout``."""
    section = README.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("    ")]


def _entries() -> dict[str, str]:
    """Each path the layout names (relative to the root, ``<task>`` as it is), with its line:
    a line's names are its parent folder's (the nearest less indented folder line) children."""
    found: dict[str, str] = {}
    folders: list[tuple[int, str]] = []
    for line in _layout():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        names = [words.pop(0)]
        while names[-1].endswith(",") and words:
            names[-1] = names[-1][:-1]
            names.append(words.pop(0))
        if not all(_NAME.fullmatch(n) and (n.endswith("/") or "." in n) for n in names):
            continue  # a description's second line
        while folders and folders[-1][0] >= indent:
            folders.pop()
        parent = folders[-1][1] if folders else ""
        for name in names:
            found[parent + name] = line
        if names[-1].endswith("/"):
            folders.append((indent, parent + names[-1]))
    return found


def _exists(path: str) -> bool:
    return any(ROOT.glob(path.replace("<task>", "*").rstrip("/")))


def test_every_path_the_layout_names_exists() -> None:
    entries = _entries()
    assert "avo_harness/plugin.py" in entries and "candidates/<task>/" in entries
    missing = [path for path in entries if not _exists(path)]
    assert not missing, f"README's layout names what is not there: {missing}"
    cited = {m for line in _layout() for m in re.findall(r"\b(?:docs|benchmarks)/[\w./-]+\.\w+",
                                                         line)}
    assert not [path for path in cited if not (ROOT / path).exists()]


@pytest.mark.parametrize("role, path", [
    ("the collector", "avo_harness/collector/"), ("the judge", "avo_harness/judge/"),
    ("the timer", "avo_harness/judge/timer.py"), ("the lineage", "avo_harness/evolve/lineage.py"),
    ("the loop", "avo_harness/evolve/loop.py"),
    ("the scheduler", "avo_harness/evolve/scheduler.py"),
    ("the built-in operator", "avo_harness/evolve/operators/builtin.py"),
    ("the agent operator", "avo_harness/agent/operator.py")])
def test_each_part_of_the_architecture_has_its_line(role: str, path: str) -> None:
    assert role in _entries().get(path, ""), f"no line says {path} is {role}"


def test_every_module_of_the_package_is_on_the_map() -> None:
    """Named as an entry, or in its folder's line (``tasks/``: attention.py, rmsnorm.py); a
    package's ``__init__.py`` by its folder."""
    entries = _entries()
    unnamed = []
    for path in sorted((ROOT / "avo_harness").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if relative in entries or folder in entries and (
                path.name == "__init__.py" or path.name in entries[folder]):
            continue
        unnamed.append(relative)
    assert not unnamed, f"README's layout does not say where these live: {unnamed}"


def test_the_readme_stays_a_map() -> None:
    assert len(README.splitlines()) < 200
