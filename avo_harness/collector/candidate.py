"""A candidate module as a pytest file, collected without importing it.

``candidates/<task>/<name>.py`` becomes a :class:`CandidateFile` holding one
``correctness`` item and one ``benchmark[<config>]`` item per benchmark configuration.
All of them talk to the candidate through one :class:`~avo_harness.judge.sandbox.Sandbox`,
started on first use and closed with the file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ..judge import compile_server, kernel_cache
from ..judge.compile_server import CompileServer
from ..judge.sandbox import Sandbox, candidate_settings
from ..live import Live
from ..options import HarnessSettings, raw, settings_of
from ..phases import Phases
from ..tasks import Task, get_task, helper_files
from .benchmark import BenchmarkItem
from .correctness import CorrectnessItem
from .keys import COMPILE_SERVER_KEY


class CandidateFile(pytest.File):
    """A candidate module: its items share one sandboxed child process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task: Task = get_task(self.path.parent.name)
        self.settings: HarnessSettings = settings_of(self.config).harness
        self.source = self.path.read_bytes()
        #: The helper modules beside it, read with it: they are part of what it compiles.
        self.helpers = helper_files(self.path)
        self.correctness_failed = False
        self.phases = Phases()
        #: What compiling ahead cost, process by process (the report shows it).
        self.compile_ahead: dict[str, Any] | None = None
        #: TFLOP/s of each configuration timed so far, and, once the cascade (``--avo-evolve``
        #: only) found the rest cannot lift the candidate to the commit bar, their entry.
        self.timed: dict[str, float] = {}
        self.cut: dict[str, str] | None = None
        progress = self.config.getoption("avo_progress")
        self.live = Live(None if progress is None else Path(progress))
        self._sandbox: Sandbox | None = None

    @property
    def device(self) -> str:
        return "cuda" if self.settings.cuda else "cpu"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source).hexdigest()

    @property
    def cache_key(self) -> str:
        """Its kept kernels' name: the module and its helpers (``kernel_cache.key``)."""
        return kernel_cache.key(self.source, self.helpers)

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            # The OS sandbox makes all of these read-only; the in-process line refuses too.
            root = self.config.rootpath
            store = root / str(raw(self.config, "store"))
            protected = [root, store]
            if self.settings.report is not None:
                protected.append(self.settings.report.resolve())
            calibration = self.config.getoption("avo_calibration")
            if calibration is not None:  # read again after candidates ran (catch_up)
                protected.append(Path(calibration).resolve())
            # Compiled kernels are kept for the next evaluation of these very bytes, helpers
            # included (the interpreter compiles nothing).
            kept = kernel_cache.folder(store / "kernel-cache", self.task.name,
                                       self.cache_key) if self.settings.cuda else None
            self._sandbox = Sandbox(self.path, self.task.name, candidate_settings(
                [self.path], cuda=self.settings.cuda, timeout_s=self.settings.timeout_s,
                memory_limit_bytes=self.settings.memory_limit_bytes, protected=protected),
                kernel_cache=kept, compile_server=self._compile_server(store))
        return self._sandbox

    def _compile_server(self, store: Path) -> CompileServer | None:
        """The session's compile server, whose cache every candidate of the store shares
        (``judge/compile_server.py``); none in the interpreter, which compiles nothing, or
        with ``--avo-compile-server off``."""
        if not (self.settings.cuda and self.settings.compile_server):
            return None
        stash = self.config.stash
        if COMPILE_SERVER_KEY not in stash:
            stash[COMPILE_SERVER_KEY] = CompileServer(store / compile_server.FOLDER)
        return stash[COMPILE_SERVER_KEY]

    def counters(self) -> tuple[float, float]:
        """Seconds the candidate's sandbox spent starting children, and compiling."""
        box = self._sandbox
        return (box.start_s, box.compile_s) if box is not None else (0.0, 0.0)

    def collect(self) -> list[pytest.Item]:
        items: list[pytest.Item] = [CorrectnessItem.from_parent(self, name="correctness")]
        if self.settings.replay is None:
            items += [BenchmarkItem.for_config(self, config)
                      for config in self.task.bench_configs(cuda=self.settings.cuda)]
        self.live.update(configs_total=len(items) - 1, force=True)
        return items

    def teardown(self) -> None:
        self.live.update(phase="done", force=True)
        if self._sandbox is not None:
            self._sandbox.close()
