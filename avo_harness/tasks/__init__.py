"""The Task API: everything the harness needs to know about one kind of kernel.

A task is one module in this package that defines ``TASK``, an instance of a
:class:`Task` subclass. Candidates for it live in ``candidates/<task name>/``.
Adding a task is adding a module here; nothing else changes.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    import torch
    from hypothesis.strategies import SearchStrategy

#: One input of a task, described by JSON-able values (shapes, dtype, flags, seed).
#: A case, not the tensors, is what hypothesis draws, reports print and replays take.
Case = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """The concrete arguments of one call of a candidate's entry function."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration: a name for reports and the case it times."""

    name: str
    case: Case


class Task(ABC):
    """What a kernel must compute, on which inputs, to what precision, and how fast it is."""

    #: Task name; also the folder under ``candidates/``.
    name: ClassVar[str]
    #: The function every candidate module must define.
    entry: ClassVar[str]
    #: Names of the output's dimensions, used to say where the worst error is.
    output_dims: ClassVar[tuple[str, ...]]
    #: Dotted names of callables a candidate may not use (library versions of the task).
    forbidden: ClassVar[tuple[str, ...]] = ()
    #: ATen operators behind those callables; the candidate's process gets raising kernels
    #: for them, so no route through torch reaches them.
    forbidden_ops: ClassVar[tuple[str, ...]] = ()
    #: torch functions that would turn honest code into a call of a forbidden operator (a
    #: torch.compile pass that fuses plain math into the library kernel); the candidate's
    #: process makes them do nothing.
    silenced: ClassVar[tuple[str, ...]] = ()
    #: Name of the library implementation that :meth:`baseline` runs.
    baseline_name: ClassVar[str | None] = None

    @abstractmethod
    def cases(self, *, large: bool) -> SearchStrategy[Case]:
        """All valid inputs; ``large`` widens shapes to what a GPU checks quickly."""

    @abstractmethod
    def boundary_cases(self, *, large: bool) -> list[Case]:
        """Edge cases that are always checked, before any drawn example."""

    @abstractmethod
    def make_inputs(self, case: Case, device: str) -> Call:
        """Build the tensors of ``case`` on ``device`` from the case's seed."""

    @abstractmethod
    def reference(self, call: Call, compute_dtype: torch.dtype) -> torch.Tensor:
        """The exact computation carried out in ``compute_dtype``.

        In float64 it is the truth; in the inputs' own dtype it is the yardstick of
        how much error that precision honestly costs (see ``avo_harness.checker``).
        """

    @abstractmethod
    def bench_configs(self, *, cuda: bool) -> list[BenchConfig]:
        """The timed configurations: the real suite on a GPU, tiny ones in the interpreter."""

    @abstractmethod
    def flops(self, case: Case) -> float:
        """Floating-point operations of one call (the numerator of TFLOP/s)."""

    @abstractmethod
    def bytes_moved(self, case: Case) -> float:
        """The fewest bytes one call must move through device memory."""

    def baseline(self, call: Call) -> torch.Tensor | None:
        """The library implementation on ``call``, timed next to candidates; None if none."""
        return None

    def extra_baselines(self, case: Case,
                        device: str) -> dict[str, Callable[[Call], torch.Tensor] | str]:
        """More libraries timed beside :meth:`baseline` on ``case``, by report name: each
        one's forward, or one line saying why it is absent there. None by default."""
        return {}

    def output_like(self, call: Call) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype the output must have; by default those of the first argument."""
        first = call.args[0]
        return tuple(first.shape), first.dtype


def task_names() -> list[str]:
    """Every task module in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def is_candidate(path: Path) -> bool:
    """``candidates/<known task>/<name>.py`` with a name that does not start with ``_``."""
    return (path.suffix == ".py" and not path.name.startswith("_")
            and path.parent.parent.name == "candidates" and path.parent.name in task_names())


#: A helper module's name: ``_name.py`` beside the candidates, a plain name, never a path.
HELPER_NAME = re.compile(r"_[A-Za-z0-9_]+\.py")


def helper_paths(folder: Path) -> list[Path]:
    """The helper modules in ``folder`` that a candidate there may import (links
    included: an import reads through them), sorted by name."""
    return [p for p in sorted(folder.glob("_*.py")) if HELPER_NAME.fullmatch(p.name)
            and p.is_file()]


def helper_files(candidate: Path) -> dict[str, bytes]:
    """The helper modules beside ``candidate``, by name, read as its import reads them."""
    return {p.name: p.read_bytes() for p in helper_paths(candidate.parent)}


def get_task(name: str) -> Task:
    """The task called ``name``; a ``LookupError`` naming the known ones otherwise."""
    if name not in task_names():
        raise LookupError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return importlib.import_module(f"{__name__}.{name}").TASK
