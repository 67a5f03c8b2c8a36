"""Loads the avo-harness plugin when the package is run from a checkout without being
installed (``PYTHONPATH=.``); an installed package loads it through its entry point."""
from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value == "avo_harness.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["avo_harness.plugin"]
