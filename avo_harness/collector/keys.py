"""What the collector keeps on the pytest config, one key each, so that every value
has one home, once per session. The settings are not among them: they are
``options.settings_of``'s, read once for the whole session."""
from __future__ import annotations

from typing import Any

import pytest

from ..judge.compile_server import CompileServer
from ..judge.machine import Machine

#: The machine's ceilings and protocol costs (``judge.machine``).
MACHINE_KEY = pytest.StashKey[Machine]()
#: The task's library baselines, timed once per session, by configuration.
BASELINES_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
#: The commit bar's cascade (``--avo-cascade``), or None without one.
CASCADE_KEY = pytest.StashKey[Any]()
#: The session's compile server (``judge.compile_server``), on a GPU only.
COMPILE_SERVER_KEY = pytest.StashKey[CompileServer]()
#: Set once a calibration save waited its longest for the lock: the session saves no more.
SAVES_STOPPED_KEY = pytest.StashKey[bool]()
