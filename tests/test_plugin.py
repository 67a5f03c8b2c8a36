"""The plugin is loaded once however it is found, and registers features only when asked."""
from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import avo_harness.plugin

ROOT_CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text()


def _registrations(config: pytest.Config) -> int:
    return sum(plugin is avo_harness.plugin for plugin in config.pluginmanager.get_plugins())


def test_installed_and_named_by_the_root_conftest_it_is_registered_once(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest(ROOT_CONFTEST)
    config = pytester.parseconfigure()
    assert _registrations(config) == 1
    assert config.pluginmanager.get_plugin("avo_harness.plugin") is avo_harness.plugin


def test_not_installed_the_root_conftest_loads_it_once(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # What a checkout run with PYTHONPATH=. sees: no entry point anywhere.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])
    pytester.makeconftest(ROOT_CONFTEST)
    config = pytester.parseconfigure()
    assert _registrations(config) == 1
    assert config.getoption("avo_examples") is None  # its options are there


def test_without_the_conftest_the_entry_point_loads_it_once(pytester: pytest.Pytester) -> None:
    assert _registrations(pytester.parseconfigure()) == 1


def test_the_report_plugin_is_registered_only_when_asked_for(pytester: pytest.Pytester) -> None:
    assert pytester.parseconfigure().pluginmanager.get_plugin("avo-report") is None
    asked = pytester.parseconfigure("--avo-report", str(pytester.path / "r.json"))
    assert asked.pluginmanager.get_plugin("avo-report") is not None


def test_without_cuda_candidates_run_in_the_triton_interpreter(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        write_candidate: Callable[..., Path], honest_attention: str) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pytester.parseconfigure("--avo-device", "cpu")
    assert "TRITON_INTERPRET" not in os.environ  # nothing will run in it yet
    write_candidate("seed", honest_attention)
    result = pytester.runpytest("--avo-device", "cpu", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*seed.py::correctness"])
    assert os.environ["TRITON_INTERPRET"] == "1"


def test_a_session_without_candidates_sets_nothing(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    pytester.makepyfile("def test_one():\n    assert True\n")
    result = pytester.runpytest("--avo-device", "cpu")
    result.assert_outcomes(passed=1)
    assert "TRITON_INTERPRET" not in os.environ
    assert "avo-harness candidates" not in result.stdout.str()
    # A report of no candidate is written, and nothing runs in the interpreter for it.
    result = pytester.runpytest("--avo-device", "cpu", "--avo-report", "r.json")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "r.json").exists() and "TRITON_INTERPRET" not in os.environ


# Printed by a conftest at the end of a session in a process of its own (hypothesis is not
# among them: its own pytest plugin imports it in every session).
_IMPORTED = ("import sys\n\ndef pytest_unconfigure(config):\n"
             "    print('heavy:', sorted(m for m in ('torch', 'triton', 'numpy', 'rich', "
             "'matplotlib', 'avo_harness.collector', 'avo_harness.judge.sandbox', "
             "'avo_harness.evolve.lineage', 'avo_harness.report') if m in sys.modules))\n")


def test_a_session_without_candidates_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(_IMPORTED)
    pytester.makepyfile("def test_one():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["heavy: []"])


def test_a_candidate_session_imports_the_harness(pytester: pytest.Pytester,
                                                 write_candidate: Callable[..., Path],
                                                 honest_attention: str) -> None:
    pytester.makeconftest(_IMPORTED)
    write_candidate("seed", honest_attention)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "candidates", "--co", "-q")
    result.stdout.fnmatch_lines(["*seed.py::correctness", "heavy: [[]'avo_harness.collector'*"])
    assert "'torch'" in result.stdout.str()


@pytest.mark.parametrize("dist", ["load", "worksteal"])
def test_an_xdist_mode_that_splits_a_candidate_s_items_is_refused(
        dist: str, make_project: Callable[..., Path], fresh_run: Callable[..., Any],
        honest_attention: str) -> None:
    root = make_project({"honest": honest_attention})
    run = fresh_run(root, "-n", "2", "--dist", dist)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.text
    assert ("a candidate's items must run in one pytest-xdist worker: use --dist loadscope "
            f"or --dist loadfile, not --dist {dist}") in run.text
    assert run.report["candidates"] == {}  # nothing judged
