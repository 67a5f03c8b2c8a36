"""The ``avo`` option group: every option is a command-line flag mirrored as an ini key.

``OPTIONS`` (and ``FLAGS``) declare every option, the agent's included, with its one
default; this module alone reads them. A session reads them once, into the object
:func:`settings_of` keeps on the pytest config: :class:`HarnessSettings` (the checks and
timings of a test run), :class:`EvolveSettings` (the search) and :class:`AgentSettings`
(``--avo-agent-*``), each read and validated on first use. A bad value is a one-line
``pytest.UsageError``.
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from .tasks import Case

if TYPE_CHECKING:
    from .evolve.cascade import Cascade


@dataclass(frozen=True)
class Option:
    name: str           # "examples" -> --avo-examples and ini key avo_examples
    help: str
    default: str | None
    metavar: str = "VALUE"
    switch: bool = False  # a flag without a value (ini: a bool)

    @property
    def flag(self) -> str:
        return "--avo-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "avo_" + self.name


OPTIONS = (
    Option("device", "where candidates run: auto (CUDA if present), cuda, or cpu (the Triton "
           "interpreter)", "auto", "auto|cuda|cpu"),
    # No default here: it depends on where candidates run (``default_examples``).
    Option("examples", "hypothesis examples per correctness check, after the boundary cases "
           "(default: 50 in the interpreter, 100 on a GPU; a search's evaluations: 20 in the "
           "interpreter)", None, "N"),
    Option("timeout", "seconds a candidate may take to answer one request (import, call, or a "
           "whole timing run) before it is killed", "300", "SECONDS"),
    Option("memory_limit", "GiB of address space for a candidate's process in the interpreter "
           "(0: no limit; not applied under CUDA)", "8", "GIB"),
    Option("report", "write the machine-readable JSON report of this run to PATH", None, "PATH"),
    Option("evolve", "run the evolutionary search instead of tests (see docs/search.md)", None,
           switch=True),
    Option("resume", "continue the latest run of the task in the store (on the command "
           "line it implies --avo-evolve)",
           None, switch=True),
    Option("lineage", "print the lineage in the store as a table and exit", None, switch=True),
    Option("task", "the task to evolve (a module of avo_harness.tasks)", "attention", "NAME"),
    Option("operator", "the variation operator: builtin (tunables, no model), anthropic (a "
           "Claude agent), more through the pytest_avo_operators hook; auto: anthropic if "
           "ANTHROPIC_API_KEY is set, else builtin", "auto", "NAME"),
    Option("generations", "stop after this many new candidates", "8", "N"),
    Option("time_budget", "stop proposing after this long (e.g. 900, 15m, 2h; 0: no limit)",
           "0", "DURATION"),
    Option("cost_budget", "stop once operators have spent this many US dollars (0: no limit)",
           "0", "USD"),
    Option("token_budget", "stop once operators have used this many tokens, prompt (cached or "
           "not) and output (0: no limit)", "0", "N"),
    Option("seed", "seed of the operators' random choices (same seed, same proposals)", "0",
           "N"),
    Option("store", "folder of the lineage store, the staging area and the caches of "
           "compiled kernels", ".avo", "PATH"),
    Option("eval_timeout", "seconds one whole evaluation may take before it is killed and "
           "recorded as failed", "1800", "SECONDS"),
    Option("margin", "a candidate is committed if its geomean is at least (1 - margin) x the "
           "best so far (ties always are)", "0", "FRACTION"),
    Option("cascade_optimism", "in the search, stop timing a candidate once its geomean "
           "could not reach the commit bar even if each configuration left reached FACTOR x "
           "the lineage's best there (0: time every configuration)", "1.5", "FACTOR"),
    Option("workers", "evaluations in flight at once, each a fresh process on one GPU "
           "(auto: one per visible GPU, 2 on a single GPU so that one compiles and checks "
           "while another is timed; 1 on CPU)", "auto", "N|auto"),
    Option("ray", "send evaluations to a Ray cluster (ADDRESS, or auto to start or join a "
           "local one; needs the ray extra); the lineage and the operator stay here", None,
           "ADDRESS|auto"),
    Option("islands", "lineages evolving side by side; every --avo-migration evaluations "
           "the best committed candidate joins the others as a parent", "1", "N"),
    Option("migration", "evaluations between two migrations of the islands' best", "6", "N"),
    Option("paired_rounds", "before a commit, time the candidate and the current best "
           "interleaved (A, B, then B, A) on one GPU over this many rounds; a candidate slower "
           "beyond their spread is not committed (0: commit on the evaluation alone; auto: 3 "
           "on a GPU, 0 in the interpreter)", "auto", "N|auto"),
    Option("precision_drift", "do not commit a candidate whose RMS error over the tolerance "
           "is more than FACTOR x the starting candidates' highest on a benchmark "
           "configuration (0: off)", "2", "FACTOR"),
    Option("compile_server", "on a GPU, compile candidates' kernels in the sandboxed compile "
           "server, whose cache every candidate of the store shares (off: each compiles its "
           "own, in its own process)", "on", "on|off"),
    Option("stress", "run each benchmark configuration N more times on identical inputs and "
           "compare the outputs bit for bit (within the tolerance for a candidate declaring "
           "DETERMINISTIC = False); a change fails nondeterministic (0: off)", "0", "N"),
    Option("agent_model", "the Claude model of --avo-operator anthropic", "claude-opus-5-5",
           "MODEL"),
    Option("agent_turns", "most model calls in one agent step", "40", "N"),
    Option("agent_step_tokens", "most tokens (prompt and output) one agent step may use",
           "3000000", "N"),
    Option("agent_step_usd", "most US dollars one agent step may spend", "5", "USD"),
    Option("agent_step_time", "longest one agent step may take, evaluations included (e.g. "
           "1800, 30m)", "60m", "DURATION"),
    Option("agent_stagnation", "the supervisor steps in after this many agent steps without "
           "a committed improvement, or on repeated ideas (0: never)", "4", "K"),
)
# Only a single run wants this, so it is a flag and not an ini key.
REPLAY_FLAG = "--avo-replay"
# An ini key would turn every run of the project (and each evaluation of a search) into it.
HTML_FLAG = "--avo-html"
# Only the search passes it to an evaluation: an ini key would let a CI gate cut candidates.
CASCADE_FLAG = "--avo-cascade"
CALIBRATION_FLAG = "--avo-calibration"
PROGRESS_FLAG = "--avo-progress"
# The scheduler gives each evaluation on a GPU that GPU's lock: an ini key would serialise
# unrelated runs of the project.
GPU_LOCK_FLAG = "--avo-gpu-lock"
#: Flags without an ini key (the reasons above): flag, metavar, help.
FLAGS = (
    (REPLAY_FLAG, "CASE_JSON", "check exactly this one input (as printed in a failure report) "
     "instead of running hypothesis"),
    (HTML_FLAG, "DIR", "write the latest run of --avo-task in the store as a static HTML "
     "report to DIR/index.html and exit (with --avo-evolve: after the run)"),
    (CASCADE_FLAG, "PATH", "the cascade (JSON) of one evaluation: skip the configurations left "
     "once a candidate cannot reach the commit bar (used by --avo-evolve; a CI gate never "
     "passes it)"),
    (PROGRESS_FLAG, "PATH", "keep PATH (JSON) up to date with where the evaluation is: phase, "
     "inputs done, configurations timed (--avo-evolve reads it)"),
    (GPU_LOCK_FLAG, "PATH", "hold an exclusive lock on PATH while timing, so evaluations that "
     "share a GPU compile and check at once but are timed one at a time (--avo-evolve "
     "passes one per GPU)"),
    (CALIBRATION_FLAG, "PATH", "keep the harness's measurements of the machine (ceilings, the "
     "protocol's cost, the baseline) in PATH and reuse them in the next session on the same "
     "device (--avo-evolve passes one per run)"),
)


#: ``--avo-examples`` left unset: on a GPU; in the interpreter; and in the interpreter for
#: the evaluations of a search (``evolve.evaluate``), so that its default budget finishes in
#: a few minutes on a CPU.
EXAMPLES_GPU, EXAMPLES_INTERPRETER, EXAMPLES_SEARCH_INTERPRETER = 100, 50, 20


def default_examples(cuda: bool, search: bool = False) -> int:
    """The hypothesis examples of a correctness check when ``--avo-examples`` is not given."""
    if cuda:
        return EXAMPLES_GPU
    return EXAMPLES_SEARCH_INTERPRETER if search else EXAMPLES_INTERPRETER


@dataclass(frozen=True)
class HarnessSettings:
    cuda: bool
    examples: int
    timeout_s: float
    memory_limit_bytes: int
    report: Path | None
    replay: Case | None
    #: Extra runs of each benchmark configuration compared with the timed output (0: off).
    stress: int = 0
    #: ``--avo-examples`` as given; None when ``examples`` is the default.
    examples_given: int | None = None
    #: Kernels compile in the shared compile server (``judge/compile_server.py``) on a GPU.
    compile_server: bool = True


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("avo", "avo-harness: collect, check, time and evolve kernels")
    for opt in OPTIONS:
        if opt.switch:
            group.addoption(opt.flag, dest=opt.ini, action="store_true", default=None,
                            help=f"{opt.help} [ini: {opt.ini}]")
            parser.addini(opt.ini, opt.help, type="bool", default=False)
        else:
            group.addoption(opt.flag, dest=opt.ini, default=None, metavar=opt.metavar,
                            help=f"{opt.help} [ini: {opt.ini}]")
            parser.addini(opt.ini, opt.help, default=opt.default)
    for flag, metavar, text in FLAGS:
        group.addoption(flag, dest="avo_" + flag.removeprefix("--avo-").replace("-", "_"),
                        default=None, metavar=metavar, help=text)


def switch(config: pytest.Config, name: str) -> bool:
    value = config.getoption("avo_" + name)
    return bool(config.getini("avo_" + name)) if value is None else bool(value)


def raw(config: pytest.Config, name: str) -> str | None:
    """The option's value: the flag if given, else the ini key, else its default."""
    value = config.getoption("avo_" + name)
    if value is None:
        value = config.getini("avo_" + name)
    return None if value in (None, "") else str(value)


def parsed(config: pytest.Config, name: str, convert: Callable[[str], Any],
           check: Callable[[Any], bool], expected: str) -> Any:
    text = raw(config, name)
    if text is None:
        return None
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not check(value):
        raise pytest.UsageError(f"--avo-{name.replace('_', '-')}: expected {expected}, "
                                f"got {text!r}")
    return value


def read_device(config: pytest.Config) -> str:
    """``--avo-device`` checked, not resolved: auto, cuda or cpu."""
    return str(parsed(config, "device", str, lambda v: v in ("auto", "cuda", "cpu"),
                      "one of auto, cuda, cpu"))


def resolve_cuda(device: str) -> bool:
    """Whether candidates run on CUDA. Asks torch (seconds of import) unless the device is
    cpu, so the plugin calls it only once a candidate is collected, or at start-up for an
    explicit ``--avo-device cuda`` (whose lack of a GPU is a usage error)."""
    if device == "cpu":
        return False
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise pytest.UsageError("--avo-device cuda: no CUDA device is visible "
                                "(torch.cuda.is_available() is False)")
    return has_cuda


def read_settings(config: pytest.Config, *, cuda: bool | None = None) -> HarnessSettings:
    """Every harness option read and checked. ``cuda``: the device already resolved (the
    plugin checks the options at start-up with ``cuda=False``, torch-free, and reads them
    for real once a candidate is collected); None resolves it here."""
    device = read_device(config)
    if cuda is None:
        cuda = resolve_cuda(device)
    examples = parsed(config, "examples", int, lambda v: v >= 0, "an integer >= 0")
    replay_text = config.getoption("avo_replay")
    replay = None
    if replay_text is not None:
        try:
            replay = json.loads(replay_text)
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"{REPLAY_FLAG}: not valid JSON ({exc})") from None
        if not isinstance(replay, dict):
            raise pytest.UsageError(f"{REPLAY_FLAG}: expected a JSON object, got {replay_text!r}")
    report = raw(config, "report")
    return HarnessSettings(
        cuda=cuda,
        examples=default_examples(cuda) if examples is None else examples,
        examples_given=examples,
        timeout_s=parsed(config, "timeout", float, lambda v: v > 0, "a number of seconds > 0"),
        memory_limit_bytes=int(parsed(config, "memory_limit", float, lambda v: v >= 0,
                                      "a number of GiB >= 0") * 2**30),
        report=Path(report) if report else None,
        replay=replay,
        stress=parsed(config, "stress", int, lambda v: v >= 0, "an integer >= 0"),
        compile_server=parsed(config, "compile_server", str, lambda v: v in ("on", "off"),
                              "on or off") == "on",
    )


@dataclass(frozen=True)
class EvolveSettings:
    task: str
    operator: str
    generations: int
    time_budget_s: float
    cost_budget_usd: float
    token_budget: int
    seed: int
    store: Path
    resume: bool
    eval_timeout_s: float
    margin: float
    cascade_optimism: float
    #: None: auto (one per visible GPU, see ``scheduler.local_slots``).
    workers: int | None = None
    ray: str | None = None
    islands: int = 1
    migration: int = 6
    #: None: auto (3 on a GPU, 0 in the interpreter).
    paired_rounds: int | None = None
    precision_drift: float = 2.0


def duration(text: str) -> float:
    """Seconds in ``900``, ``15m`` or ``2h``."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def resolve_operator(name: str) -> str:
    """``auto`` is the agent when a key is there to pay for it, else the built-in operator."""
    if name != "auto":
        return name
    return "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "builtin"


def read_evolve_settings(config: pytest.Config) -> EvolveSettings:
    from .tasks import task_names

    task = parsed(config, "task", str, lambda v: v in task_names(),
                  f"one of {', '.join(task_names())}")
    return EvolveSettings(
        task=task,
        operator=resolve_operator(str(raw(config, "operator"))),
        generations=parsed(config, "generations", int, lambda v: v >= 0, "an integer >= 0"),
        time_budget_s=parsed(config, "time_budget", duration, lambda v: v >= 0,
                             "a duration >= 0 such as 900, 15m or 2h"),
        cost_budget_usd=parsed(config, "cost_budget", float, lambda v: v >= 0,
                               "a number of dollars >= 0"),
        token_budget=parsed(config, "token_budget", int, lambda v: v >= 0, "an integer >= 0"),
        seed=parsed(config, "seed", int, lambda v: True, "an integer"),
        store=config.rootpath / str(raw(config, "store")),
        resume=switch(config, "resume"),
        eval_timeout_s=parsed(config, "eval_timeout", float, lambda v: v > 0,
                              "a number of seconds > 0"),
        margin=parsed(config, "margin", float, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
        cascade_optimism=parsed(config, "cascade_optimism", float,
                                lambda v: v == 0 or 1 <= v < math.inf, "0 (off) or a factor >= 1"),
        workers=None if raw(config, "workers") in (None, "auto") else parsed(
            config, "workers", int, lambda v: v >= 1, "auto or an integer >= 1"),
        ray=raw(config, "ray"),
        islands=parsed(config, "islands", int, lambda v: v >= 1, "an integer >= 1"),
        migration=parsed(config, "migration", int, lambda v: v >= 1, "an integer >= 1"),
        paired_rounds=None if raw(config, "paired_rounds") in (None, "auto") else parsed(
            config, "paired_rounds", int, lambda v: v >= 0, "auto or an integer >= 0"),
        precision_drift=parsed(config, "precision_drift", float,
                               lambda v: v == 0 or 1 <= v < math.inf, "0 (off) or a factor >= 1"),
    )


@dataclass(frozen=True)
class AgentSettings:
    """``--avo-agent-*``: the agent operator's model and what one step may use."""

    model: str
    turns: int
    step_tokens: int
    step_usd: float
    step_time_s: float
    stagnation: int


def read_agent_settings(config: pytest.Config) -> AgentSettings:
    return AgentSettings(
        model=str(raw(config, "agent_model")),
        turns=parsed(config, "agent_turns", int, lambda v: v >= 1, "an integer >= 1"),
        step_tokens=parsed(config, "agent_step_tokens", int, lambda v: v > 0,
                           "an integer > 0"),
        step_usd=parsed(config, "agent_step_usd", float, lambda v: v > 0,
                        "a number of dollars > 0"),
        step_time_s=parsed(config, "agent_step_time", duration, lambda v: v > 0,
                           "a duration > 0 such as 1800, 30m or 1h"),
        stagnation=parsed(config, "agent_stagnation", int, lambda v: v >= 0,
                          "an integer >= 0"),
    )


class Settings:
    """Every option of one session, each part read and checked once, on first use (so a
    test run never asks torch for a device, nor checks the search's options, unless it
    needs them). Kept on the pytest config: :func:`settings_of`."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    @functools.cached_property
    def harness(self) -> HarnessSettings:
        """With the device resolved (this may import torch)."""
        return read_settings(self._config)

    @functools.cached_property
    def evolve(self) -> EvolveSettings:
        return read_evolve_settings(self._config)

    @functools.cached_property
    def agent(self) -> AgentSettings:
        return read_agent_settings(self._config)


_SETTINGS = pytest.StashKey[Settings]()


def settings_of(config: pytest.Config) -> Settings:
    """The session's settings: the one object every reader of an option asks."""
    if _SETTINGS not in config.stash:
        config.stash[_SETTINGS] = Settings(config)
    return config.stash[_SETTINGS]


def cascade_from(config: pytest.Config) -> Cascade | None:
    """The cascade an evaluation was given (``--avo-cascade``), or None."""
    from .evolve.cascade import Cascade

    path = config.getoption("avo_cascade")
    if path is None:
        return None
    try:
        return Cascade.from_json(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise pytest.UsageError(f"{CASCADE_FLAG}: {path}: {exc}".splitlines()[0]) from None
