"""Where an evaluation is now, for whoever waits on it (``--avo-progress PATH``).

The evaluation's pytest process (the collector) rewrites one small JSON file as it goes:
the phase, the inputs done out of those planned, the configurations timed out of all,
and the seconds since it began. The search (``evolve.evaluate``) reads it while it waits
and shows it live. Written atomically and at most a few times a second; a reader that
finds no file, or half of none, just shows nothing new.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_EVERY_S = 0.25


@dataclass
class Live:
    path: Path | None
    phase: str = "start"
    cases_done: int = 0
    cases_total: int = 0
    configs_done: int = 0
    configs_total: int = 0
    began: float = field(default_factory=time.monotonic)
    _written: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, *, force: bool = False, **changes: Any) -> None:
        """Set ``changes``; write the file unless it was written a moment ago (``force``:
        write now). Safe from several threads (compiling ahead updates from each)."""
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            now = time.monotonic()
            if self.path is None or not force and now - self._written < _EVERY_S:
                return
            self._written = now
            state = {"phase": self.phase, "cases_done": self.cases_done,
                     "cases_total": self.cases_total, "configs_done": self.configs_done,
                     "configs_total": self.configs_total,
                     "elapsed_s": round(now - self.began, 1)}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            try:
                tmp.write_text(json.dumps(state))
                os.replace(tmp, self.path)
            except OSError:  # progress is for show: never a reason to fail an evaluation
                pass


def read(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def describe(state: dict[str, Any]) -> str:
    """``correctness: 40/113 inputs, 0/16 configurations, 12 s``."""
    return (f"{state.get('phase')}: {state.get('cases_done', 0)}/{state.get('cases_total', 0)} "
            f"inputs, {state.get('configs_done', 0)}/{state.get('configs_total', 0)} "
            f"configurations, {float(state.get('elapsed_s', 0)):,.0f} s")
