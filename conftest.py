"""Loads the avo-harness plugin when the package is run from a checkout without being
installed (``PYTHONPATH=.``), or when plugin autoloading is off (then with pytest-benchmark,
which its items need); an installed package is otherwise loaded through its entry point, and
is not loaded twice."""
from __future__ import annotations

import os
from importlib.metadata import entry_points

_installed = any(ep.value == "avo_harness.plugin" for ep in entry_points(group="pytest11"))
if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins = ["pytest_benchmark.plugin", "avo_harness.plugin"]
elif not _installed:
    pytest_plugins = ["avo_harness.plugin"]
