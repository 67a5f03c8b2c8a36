"""The pytest plugin: hooks only; each feature lives in its own module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .collector import SETTINGS_KEY, CandidateFile, is_candidate
from .options import add_options, read_settings, switch


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--avo-evolve`` and ``--avo-lineage`` take the session over, as ``--fixtures`` does."""
    if switch(config, "evolve"):
        from .evolve.loop import main

        return main(config)
    if switch(config, "lineage"):
        from .evolve.loop import print_lineage

        return print_lineage(config)
    return None


def pytest_avo_operators(config: pytest.Config) -> dict[str, object]:
    from .evolve.operators.builtin import BuiltinOperator

    return {"builtin": lambda _config: BuiltinOperator()}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    settings = read_settings(config)
    config.stash[SETTINGS_KEY] = settings
    if not settings.cuda:
        # Inherited by every candidate's process, before anything there imports triton.
        os.environ["TRITON_INTERPRET"] = "1"
    if settings.report is not None:
        from .report import JSONReport

        config.pluginmanager.register(JSONReport(settings.report, settings), "avo-report")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CandidateFile | None:
    if is_candidate(file_path):
        return CandidateFile.from_parent(parent, path=file_path)
    return None
