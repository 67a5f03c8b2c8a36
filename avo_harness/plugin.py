"""The pytest plugin: hooks only; each feature lives in its own module.

It is loaded by every pytest session of its environment (an entry point), so it imports
nothing heavy (the collector, the judge, torch) until a candidate is collected or an
``--avo-*`` mode runs: a session without candidates costs it options and a few path checks.
"""
from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .options import (add_options, raw, read_device, read_settings, resolve_cuda, settings_of,
                      switch)
from .results import ENTRY
from .tasks import is_candidate


class _Deferred:
    """What the plugin knows of a session; the harness proper starts on :meth:`start`.

    The results and the terminal summary are registered at configure time, as stand-ins
    (so their hooks keep their place among other plugins'), and given their real objects
    when the harness starts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: Any = None  # the HarnessSettings, once started
        self.results = _ResultsStandIn(self)
        self.summary = _SummaryStandIn()

    def start(self) -> Any:
        """Resolve the device, read the settings, build the report plugins (once)."""
        if self.settings is not None:
            return self.settings
        settings = settings_of(self.config).harness
        from .report import JSONReport, Results
        from .summary import TerminalSummary

        self.settings = settings
        results = Results()
        self.results.target = results
        self.summary.target = TerminalSummary(settings.cuda, results)
        # An xdist worker's results travel to the controller, which writes the one report.
        if settings.report is not None and not hasattr(self.config, "workerinput"):
            self.config.pluginmanager.register(JSONReport(settings.report, settings, results),
                                               "avo-report")
        return settings


class _ResultsStandIn:
    target: Any = None

    def __init__(self, deferred: _Deferred) -> None:
        self.deferred = deferred

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        if self.target is None:
            return (yield)
        return (yield from self.target.pytest_runtest_makereport(item, call))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """An xdist controller's share: its workers' candidate reports (it runs none)."""
        if (hasattr(report, ENTRY) and not hasattr(self.deferred.config, "workerinput")
                and self.deferred.config.pluginmanager.has_plugin("dsession")):
            self.deferred.start()
            self.target.merge(report)


class _SummaryStandIn:
    target: Any = None

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.target is not None:
            self.target.pytest_terminal_summary(terminalreporter)


_DEFERRED = pytest.StashKey[_Deferred]()


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
    if not (switch(config, "evolve") or config.getoption("avo_resume")
            or switch(config, "lineage") or config.getoption("avo_html") is not None):
        return None  # a test run: the search and its store stay unimported
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
    # Every value is checked now, torch-free: a bad one is a usage error before anything runs.
    read_settings(config, cuda=False)
    if read_device(config) == "cuda":
        resolve_cuda("cuda")  # asked for by name: no GPU is a usage error now, too
    deferred = _Deferred(config)
    config.stash[_DEFERRED] = deferred
    config.pluginmanager.register(deferred.results, "avo-results")
    # On by default, as pytest's own summaries are; ``-p no:avo-summary`` blocks it.
    config.pluginmanager.register(deferred.summary, "avo-summary")
    if raw(config, "report") is not None:
        deferred.start()  # the JSON report is written even when nothing was collected


def pytest_collection_finish(session: pytest.Session) -> None:
    deferred = session.config.stash.get(_DEFERRED, None)
    if deferred is None or deferred.settings is None:
        return  # no candidate was collected: nothing to calibrate
    from .collector import CandidateFile, load_calibration

    if any(isinstance(item.parent, CandidateFile) for item in session.items):
        load_calibration(session.config, deferred.settings.cuda)


def pytest_sessionfinish(session: pytest.Session) -> None:
    deferred = session.config.stash.get(_DEFERRED, None)
    if deferred is None or deferred.settings is None:
        return
    from .collector import save_calibration

    save_calibration(session.config, deferred.settings.cuda)


#: pytest-xdist's modes that keep a file's items together, in one worker.
_ONE_WORKER_PER_FILE = ("loadscope", "loadfile")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On an xdist controller: a candidate's items share one process, and its benchmark
    items read its correctness verdict, so no mode may split them over workers."""
    dist = node.config.getoption("dist")
    if dist not in _ONE_WORKER_PER_FILE and any(
            is_candidate(Path(nodeid.split("::", 1)[0])) for nodeid in ids):
        pytest.exit(f"avo-harness: a candidate's items must run in one pytest-xdist worker: "
                    f"use --dist loadscope or --dist loadfile, not --dist {dist}",
                    returncode=pytest.ExitCode.USAGE_ERROR)


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
    if not parent.config.stash[_DEFERRED].start().cuda:
        # A candidate will run in the interpreter: set before anything imports triton, here
        # or in a process this one starts (a JSON report alone sets nothing).
        os.environ["TRITON_INTERPRET"] = "1"
    from .collector import CandidateFile

    return [c for c in collected if not isinstance(c, pytest.Module)] + [
        CandidateFile.from_parent(parent, path=file_path)]
