"""The knowledge base: markdown files in ``avo_harness/knowledge/``, read by the agent one
section at a time through a table of contents, a search, or a section's id.

A step's knowledge base is its task's own files (``knowledge/<task>/*.md``: its contract, its
notes, its measured baselines), the files every task shares (``knowledge/*.md``: Triton,
Hopper, the harness) and the Triton language reference of the installed version
(``triton-api``, ``triton_api.py``); no other task's material. The search ranks the task's own
sections first where they match about as well.

A section is a ``## `` heading and what follows it up to the next one; its id is
``<file>#<slug of the heading>`` (the text before the first ``## `` is ``<file>#intro``), a
task's file being named ``<task>/<stem>``. Reading a bare file name gives the whole file.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .triton_api import reference

_WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    text: str


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def _sections(stem: str, text: str) -> list[Section]:
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), stem)
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    sections = []
    for part in parts:
        if not part.strip():
            continue
        if part.startswith("## "):
            heading = part.splitlines()[0][3:].strip()
            sections.append(Section(f"{stem}#{_slug(heading)}", f"{title}: {heading}",
                                    part.strip()))
        else:
            sections.append(Section(f"{stem}#intro", title, part.strip()))
    return sections


#: How much more a section of the task's own files counts in the search than a shared one.
OWN_BOOST = 1.5


class Knowledge:
    def __init__(self, files: dict[str, str], task: str | None = None) -> None:
        self.task = task
        self.files = dict(sorted(files.items(), key=lambda item: (not self._own(item[0]),
                                                                    item[0])))
        self.sections = [s for stem, text in self.files.items() for s in _sections(stem, text)]
        # Inverse document frequencies for the search, over sections.
        counts = Counter(w for s in self.sections for w in set(_WORD.findall(s.text.lower())))
        n = len(self.sections)
        self._idf = {w: math.log(1 + n / c) for w, c in counts.items()}

    def _own(self, name: str) -> bool:
        return self.task is not None and name.startswith(f"{self.task}/")

    @classmethod
    def load(cls, task: str, folder: Path | None = None) -> Knowledge:
        """The knowledge base of ``task``: the package's, or that of ``folder``."""
        root = folder if folder is not None else resources.files("avo_harness") / "knowledge"
        files = {p.name.removesuffix(".md"): p.read_text(encoding="utf-8")
                 for p in root.iterdir() if p.name.endswith(".md")}
        own = root / task
        if own.is_dir():
            files.update({f"{task}/{p.name.removesuffix('.md')}": p.read_text(encoding="utf-8")
                          for p in own.iterdir() if p.name.endswith(".md")})
        api = reference()
        if api is not None:
            files["triton-api"] = api
        return cls(files, task)

    def contents(self) -> str:
        """One line per section: its id and title."""
        return "\n".join(f"{s.id}  {s.title}" for s in self.sections)

    def read(self, id: str) -> str:
        """A section by id, or a whole file by stem; KeyError lists what exists."""
        if id in self.files:
            return self.files[id]
        for section in self.sections:
            if section.id == id:
                return section.text
        raise KeyError(f"no section {id!r}; files: {', '.join(self.files)}; sections are "
                       "listed in the knowledge base contents")

    def search(self, query: str, limit: int = 3) -> list[Section]:
        """Sections ranked by how much of the query they hold (tf-idf, length-damped)."""
        terms = set(_WORD.findall(query.lower()))
        scored = []
        for section in self.sections:
            counts = Counter(_WORD.findall(section.text.lower()))
            score = sum(self._idf.get(t, 0.0) * (1 + math.log(counts[t]))
                        for t in terms if counts[t])
            score += sum(2 * self._idf.get(t, 0.0) for t in terms if t in section.id)
            if score > 0:
                boost = OWN_BOOST if self._own(section.id) else 1.0
                scored.append((boost * score / math.log(10 + sum(counts.values())), section))
        scored.sort(key=lambda pair: -pair[0])
        return [section for _, section in scored[:limit]]
