"""The pytest plugin: hooks only; each feature lives in its own module."""
from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .collector import (SETTINGS_KEY, CandidateFile, is_candidate, load_calibration,
                        save_calibration)
from .options import add_options, read_settings, switch


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--avo-evolve``, ``--avo-lineage`` and ``--avo-html`` take the session over, as
    ``--fixtures`` does; ``--avo-html`` comes last, so it reports on a run just made.
    ``--avo-resume`` given on the command line means the search too (not as an ini key:
    that would turn every test run into one)."""
    from .evolve.lineage import LineageError

    status, flag = None, ""
    try:
        if switch(config, "evolve") or config.getoption("avo_resume"):
            from .evolve.loop import main

            flag = "--avo-evolve"
            status = main(config)
        elif switch(config, "lineage"):
            from .evolve.loop import print_lineage

            flag = "--avo-lineage"
            status = print_lineage(config)
        if config.getoption("avo_html") is not None:
            from .html.render import main as write_html

            flag = "--avo-html"
            status = max(status or 0, write_html(config))
    except LineageError as exc:
        raise pytest.UsageError(f"{flag}: {exc}") from None
    return status


def pytest_avo_operators(config: pytest.Config) -> dict[str, object]:
    from .evolve.operators.builtin import BuiltinOperator

    def anthropic(config: pytest.Config) -> object:
        # Imported only when chosen: the agent needs the anthropic SDK, nothing else does.
        from .agent.operator import build

        return build(config)

    return {"builtin": lambda _config: BuiltinOperator(), "anthropic": anthropic}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    settings = read_settings(config)
    config.stash[SETTINGS_KEY] = settings
    if not settings.cuda:
        # Inherited by every candidate's process, before anything there imports triton.
        os.environ["TRITON_INTERPRET"] = "1"
    from .report import JSONReport, Results
    from .summary import TerminalSummary

    results = Results()
    config.pluginmanager.register(results, "avo-results")
    if settings.report is not None:
        config.pluginmanager.register(JSONReport(settings.report, settings, results),
                                      "avo-report")
    # On by default, as pytest's own summaries are; ``-p no:avo-summary`` blocks it.
    config.pluginmanager.register(TerminalSummary(settings.cuda, results), "avo-summary")


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(isinstance(item.parent, CandidateFile) for item in session.items):
        load_calibration(session.config, session.config.stash[SETTINGS_KEY].cuda)


def pytest_sessionfinish(session: pytest.Session) -> None:
    save_calibration(session.config, session.config.stash[SETTINGS_KEY].cuda)


def pytest_report_header(config: pytest.Config) -> str:
    from .judge.confine import detect

    conf = detect()
    return f"avo-harness sandbox: {conf.label}" + (f" ({conf.reason})" if conf.reason else "")


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path,
                        parent: pytest.Collector) -> Generator[None, list[Any], list[Any]]:
    """A candidate becomes our File only: pytest's python plugin would otherwise import a
    ``.py`` named on the command line (a replay, an evaluation) into this very process."""
    collected = yield
    if not is_candidate(file_path):
        return collected
    return [c for c in collected if not isinstance(c, pytest.Module)] + [
        CandidateFile.from_parent(parent, path=file_path)]
