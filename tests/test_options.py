"""The ``avo`` options: a bad value stops pytest with one line; every flag is an ini key too."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from avo_harness.options import OPTIONS, Option, raw, switch

# A bad value of each option checked at start-up, and the start of the one line it must give.
BAD = [
    ("device", "gpu", "--avo-device: expected one of auto, cuda, cpu, got 'gpu'"),
    ("examples", "-1", "--avo-examples: expected an integer >= 0, got '-1'"),
    ("examples", "many", "--avo-examples: expected an integer >= 0, got 'many'"),
    ("timeout", "0", "--avo-timeout: expected a number of seconds > 0, got '0'"),
    ("timeout", "soon", "--avo-timeout: expected a number of seconds > 0, got 'soon'"),
    ("memory_limit", "-2", "--avo-memory-limit: expected a number of GiB >= 0, got '-2'"),
    ("compile_server", "maybe", "--avo-compile-server: expected on or off, got 'maybe'"),
]


def _one_error_line(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, result.errlines
    return lines[0]


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_a_bad_flag_value_is_one_line_usage_error(pytester: pytest.Pytester, name: str,
                                                   value: str, message: str) -> None:
    flag = "--avo-" + name.replace("_", "-")
    assert _one_error_line(pytester.runpytest(flag, value)) == f"ERROR: {message}"


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_a_bad_ini_value_is_the_same_error(pytester: pytest.Pytester, name: str, value: str,
                                           message: str) -> None:
    pytester.makeini(f"[pytest]\navo_{name} = {value}\n")
    assert _one_error_line(pytester.runpytest()) == f"ERROR: {message}"


def test_a_flag_overrides_a_bad_ini_value(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\navo_examples = -1\navo_timeout = 0\n")
    result = pytester.runpytest("--avo-examples", "3", "--avo-timeout", "5")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize(("value", "message"), [
    ("{not json", "ERROR: --avo-replay: not valid JSON ("),
    ("[1, 2]", "ERROR: --avo-replay: expected a JSON object, got '[1, 2]'"),
])
def test_a_bad_replay_is_one_line_usage_error(pytester: pytest.Pytester, value: str,
                                              message: str) -> None:
    assert _one_error_line(pytester.runpytest("--avo-replay", value)).startswith(message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_asking_for_cuda_without_a_gpu_is_one_line_usage_error(
        pytester: pytest.Pytester) -> None:
    line = _one_error_line(pytester.runpytest("--avo-device", "cuda"))
    assert line.startswith("ERROR: --avo-device cuda: no CUDA device is visible")


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_flag_is_mirrored_by_an_ini_key(pytester: pytest.Pytester, option: Option) -> None:
    name, flag = option.name, "--avo-" + option.name.replace("_", "-")
    default = pytester.parseconfig()
    if option.switch:
        pytester.makeini(f"[pytest]\navo_{name} = true\n")
        assert not switch(default, name)
        assert switch(pytester.parseconfig(), name)
        assert switch(pytester.parseconfig(flag), name)
    else:
        pytester.makeini(f"[pytest]\navo_{name} = from-ini\n")
        assert raw(default, name) == option.default
        assert raw(pytester.parseconfig(), name) == "from-ini"
        assert raw(pytester.parseconfig(flag, "from-flag"), name) == "from-flag"


# The search's own usage errors, in this process (test_evolve_loop checks that a store that is
# not one fails the same way in a process of its own).
EVOLVE_BAD = [
    (["--avo-generations", "-1"], "--avo-generations: expected an integer >= 0"),
    (["--avo-time-budget", "soon"], "--avo-time-budget: expected a duration"),
    (["--avo-operator", "nope"],
     "--avo-operator nope: unknown operator; available: anthropic, builtin"),
    (["--avo-task", "matmul"], "--avo-task: expected one of"),
    (["--avo-margin", "1.5"], "--avo-margin: expected a fraction"),
    (["--avo-resume"], "--avo-resume: no run of task 'attention'"),
]
FAST = ["--avo-examples", "2", "--avo-device", "cpu"]


@pytest.mark.parametrize(("args", "message"), EVOLVE_BAD)
def test_a_bad_evolve_option_is_one_line_usage_error(pytester: pytest.Pytester,
                                                     write_candidate: Any, honest_attention: str,
                                                     args: list[str], message: str) -> None:
    write_candidate("seed", honest_attention)
    line = _one_error_line(pytester.runpytest("--avo-evolve", *args, *FAST))
    assert line.startswith("ERROR: ") and message in line
    assert not (pytester.path / ".avo" / "staging").exists()  # nothing was evaluated


@pytest.mark.parametrize("flag", ["--avo-evolve", "--avo-lineage", "--avo-html=report"])
def test_a_store_that_is_not_one_is_one_line_usage_error(pytester: pytest.Pytester,
                                                         write_candidate: Any,
                                                         honest_attention: str,
                                                         flag: str) -> None:
    write_candidate("seed", honest_attention)
    store = pytester.path / ".avo" / "lineage.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"notes, not a database")
    line = _one_error_line(pytester.runpytest(flag, *FAST))
    assert line == (f"ERROR: {flag.split('=')[0]}: {store} is not a lineage store (sqlite: "
                    "file is not a database); move it aside or choose another --avo-store")
    assert store.read_bytes() == b"notes, not a database"
    assert sorted(p.name for p in store.parent.iterdir()) == ["lineage.sqlite"]


def test_a_session_reads_its_settings_once_into_one_object(pytester: pytest.Pytester) -> None:
    from avo_harness.evolve.evaluate import settings_from
    from avo_harness.options import EXAMPLES_INTERPRETER, EXAMPLES_SEARCH_INTERPRETER, settings_of

    config = pytester.parseconfig("--avo-device", "cpu", "--avo-agent-turns", "7")
    settings = settings_of(config)
    assert settings_of(config) is settings
    assert settings.harness is settings.harness and settings.evolve is settings.evolve
    assert settings.agent.turns == 7 and settings.agent is settings.agent
    # One default each: a test run in the interpreter checks 50 examples, a search's
    # evaluation there 20; a value given is the value of both.
    assert settings.harness.examples == EXAMPLES_INTERPRETER == 50
    assert settings.harness.examples_given is None
    assert settings_from(config).examples == EXAMPLES_SEARCH_INTERPRETER == 20
    given = pytester.parseconfig("--avo-device", "cpu", "--avo-examples", "3")
    assert settings_of(given).harness.examples == settings_from(given).examples == 3


def test_the_agent_options_are_declared_and_read_in_options() -> None:
    from avo_harness.agent import settings as agent_settings
    from avo_harness import options

    assert agent_settings.AgentSettings is options.AgentSettings
    assert agent_settings.read_agent_settings is options.read_agent_settings
    declared = {o.name for o in OPTIONS if o.name.startswith("agent_")}
    assert declared == {"agent_" + f for f in ("model", "turns", "step_tokens", "step_usd",
                                               "step_time", "stagnation")}
