"""Candidate files become items; a wrong candidate fails with a review and a replay that works."""
from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from avo_harness.collector import compile_ahead, correctness
from avo_harness.judge import machine, roofline
from avo_harness.judge.roofline import Roofline
from avo_harness.tasks import get_task
from avo_harness.tunables import read_space

CANDIDATES = Path(__file__).parents[1] / "candidates" / "attention"
SEED = (CANDIDATES / "seed.py").read_text()
#: The seed's kernels: the helper module beside it, which the seed imports.
KERNELS = (CANDIDATES / "_triton_attention.py").read_text()
IMPORT = "from _triton_attention import"


def _longest_key_block() -> int:
    """No key block of the seed, whatever its tunables, is longer than this."""
    return max(choice for name, choices in read_space(SEED).choices.items()
               if name.endswith("BLOCK_N") for choice in choices)


def _items(result: pytest.RunResult) -> set[str]:
    return {line for line in result.outlines if "::" in line}


def _expected_items(path: str, task: str) -> set[str]:
    names = ["correctness"] + [f"benchmark[{c.name}]"
                               for c in get_task(task).bench_configs(cuda=False)]
    return {f"{path}::{name}" for name in names}


def _import_marker(marker: Path) -> str:
    """Candidate source that records the id of every process that imports it."""
    return f"import os\nwith open({str(marker)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"


def test_each_candidate_of_a_known_task_is_collected_without_being_imported(
        pytester: pytest.Pytester, write_candidate: Callable[..., Path], honest_attention: str,
        honest_rmsnorm: str) -> None:
    marker = pytester.path / "imported"
    write_candidate("a", _import_marker(marker) + honest_attention)
    write_candidate("b", _import_marker(marker) + honest_rmsnorm, task="rmsnorm")
    write_candidate("_private", _import_marker(marker) + honest_attention)
    write_candidate("c", _import_marker(marker) + honest_attention, task="not_a_task")
    (pytester.path / "elsewhere" / "attention").mkdir(parents=True)
    (pytester.path / "elsewhere" / "attention" / "d.py").write_text(honest_attention)

    result = pytester.runpytest("--collect-only", "-q", "--avo-device", "cpu")

    assert result.ret == 0, result.outlines
    assert _items(result) == (_expected_items("candidates/attention/a.py", "attention")
                              | _expected_items("candidates/rmsnorm/b.py", "rmsnorm"))
    assert not marker.exists(), "collection imported a candidate"


def test_a_candidate_named_on_the_command_line_is_not_imported_by_pytest(
        pytester: pytest.Pytester, write_candidate: Callable[..., Path],
        honest_attention: str) -> None:
    marker = pytester.path / "imported"
    path = write_candidate("a", _import_marker(marker) + honest_attention)
    result = pytester.runpytest("--collect-only", "-q", "--avo-device", "cpu", str(path))
    assert _items(result) == _expected_items("candidates/attention/a.py", "attention")
    assert not marker.exists(), "pytest's process imported the candidate"


# Right in its sandbox; named on the command line, it rewrites the harness around it.
FORGER = '''
import torch

try:
    from avo_harness.collector import correctness
    from avo_harness.judge import machine
    from avo_harness.judge.checker import Verdict

    correctness.scan_file = lambda *args, **kwargs: []
    correctness.check_case = lambda *args, **kwargs: Verdict(True, "ok", "forged")
    machine.check_timed = lambda *args, **kwargs: (Verdict(True, "ok", "forged"), [1e-9] * 3)
except ImportError:  # the sandbox refuses the import: look honest there
    pass


def attention(q, k, v, causal=False, sm_scale=None):
    return torch.zeros_like(q)
'''


@pytest.mark.slow
def test_a_candidate_named_on_the_command_line_cannot_forge_its_verdict(
        make_project: Callable[..., Path], fresh_run: Callable[..., Any]) -> None:
    root = make_project({"forger": FORGER})
    run = fresh_run(root, "candidates/attention/forger.py", examples=1)
    assert run.candidate("forger")["correctness"]["outcome"] == "failed", run.text


def test_a_replay_collects_only_the_correctness_item(
        pytester: pytest.Pytester, write_candidate: Callable[..., Path],
        honest_attention: str) -> None:
    write_candidate("a", honest_attention)
    result = pytester.runpytest("--collect-only", "-q", "--avo-device", "cpu",
                                "--avo-replay", json.dumps({"seed": 0}))
    assert _items(result) == {"candidates/attention/a.py::correctness"}


# Each bug as a text substitution in the seed's kernels (old, new), and what every input that
# exposes it has. The kernels change: when ``old`` is gone, the test says so and the bug needs
# updating.
BROKEN = {
    "no_diagonal": ("<= rows[:, None]", "< rows[:, None]", lambda case: case["causal"]),
    "gqa_mapping": ("off_h // GROUP", "off_h % (Hq // GROUP)",
                    lambda case: case["Hkv"] not in (1, case["Hq"])),
    "scale_ignored": ("qk_scale = sm_scale * _LOG2E", "qk_scale = _LOG2E / math.sqrt(D)",
                      lambda case: case["sm_scale"] is not None),
    "tail_unmasked": ("visible = offs_n[None, :] < Nk", "visible = offs_n[None, :] >= 0",
                      lambda case: case["Nk"] % _longest_key_block() != 0),
}


@pytest.fixture(scope="module")
def broken(make_project: Callable[..., Path],
           fresh_run: Callable[..., Any]) -> tuple[Path, Any]:
    """One run over the seed with each bug put wherever its kernels have its text: each
    broken candidate imports broken kernels of its own, under a helper name of their own."""
    assert IMPORT in SEED
    sources = {}
    for name, (old, new, _) in BROKEN.items():
        if old in KERNELS:
            sources[f"_kernels_{name}"] = KERNELS.replace(old, new)
            sources[name] = SEED.replace(IMPORT, f"from _kernels_{name} import")
    root = make_project(sources)
    return root, fresh_run(root, examples=1)


def _failure(broken: tuple[Path, Any], name: str) -> dict[str, Any]:
    old = BROKEN[name][0]
    assert old in KERNELS, f"the kernels no longer contain {old!r}: update the bug {name!r}"
    return broken[1].candidate(name)["correctness"]["failure"]


@pytest.mark.parametrize("name", list(BROKEN))
@pytest.mark.slow
def test_a_broken_seed_fails_with_a_review_of_the_minimal_input(
        broken: tuple[Path, Any], name: str) -> None:
    failure = _failure(broken, name)
    run = broken[1]
    entry = run.candidate(name)
    assert entry["correctness"]["outcome"] == "failed"
    assert failure["rule"] == "tolerance"
    assert BROKEN[name][2](failure["case"]), failure["case"]
    assert failure["max_abs_err"] > failure["tolerance"] > 0
    assert failure["lowp_err"] >= 0 and failure["rel_err"] > 0
    assert 0 < failure["n_exceeding"] <= failure["n_total"]
    assert failure["n_nan"] == 0 and failure["n_inf"] == 0
    assert set(failure["worst_index"]) == set(get_task("attention").output_dims)
    assert failure["worst_value"] != failure["worst_expected"]
    assert {b["outcome"] for b in entry["benchmarks"].values()} == {"skipped"}
    review = [
        f"{name}.py is wrong (rule: tolerance)",
        "minimal failing input: " + " ".join(f"{k}={v}" for k, v in failure["case"].items()),
        f"max abs error {failure['max_abs_err']:.4g} vs tolerance {failure['tolerance']:.4g}",
        "worst element: " + ", ".join(f"{k}={v}" for k, v in failure["worst_index"].items())
        + f": got {failure['worst_value']:.6g}, expected {failure['worst_expected']:.6g}",
        f"elements over tolerance: {failure['n_exceeding']}/{failure['n_total']}; NaN: 0; Inf: 0",
        f"replay: {failure['replay']}",
    ]
    for line in review:
        assert line in run.text, line


def _replay_args(run: Any, name: str) -> list[str]:
    """The replay command printed for ``name``, without its leading ``pytest``."""
    # On CI (``CI`` set) pytest's short summary repeats the whole review, so dedupe.
    lines = sorted({line.strip() for line in run.lines
                    if line.strip().startswith("replay: ") and f"/{name}.py::" in line})
    assert len(lines) == 1, run.text
    command = shlex.split(lines[0].removeprefix("replay: "))
    assert command[0] == "pytest"
    return command[1:]


@pytest.mark.parametrize("name", list(BROKEN))
@pytest.mark.slow
def test_the_replay_command_of_a_broken_seed_reproduces_its_failure(
        broken: tuple[Path, Any], fresh_run: Callable[..., Any], name: str) -> None:
    first = _failure(broken, name)
    root, run = broken

    replay = fresh_run(root, *_replay_args(run, name))

    assert replay.outcomes() == {"failed": 1}
    assert f"{name}.py is wrong (rule: tolerance)" in replay.text
    again = replay.candidate(name)["correctness"]
    assert again["examples"] == 1
    for key in ("rule", "case", "max_abs_err", "tolerance", "worst_index", "n_exceeding"):
        assert again["failure"][key] == first[key], key


def test_a_failing_candidate_shows_its_traceback_and_the_session_goes_on(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    raises = write_candidate("raises", "def attention(q, k, v, causal=False, sm_scale=None):\n"
                                       "    raise ValueError('no luck today')\n")
    unimportable = write_candidate("unimportable", "raise RuntimeError('broken at import')\n")
    write_candidate("zz_honest", honest_attention)  # collected after the failing ones

    run = avo_run(examples=1)

    for name, path, rule, says in (
            ("raises", raises, "raised", "ValueError: no luck today"),
            ("unimportable", unimportable, "import", "RuntimeError: broken at import")):
        failure = run.candidate(name)["correctness"]["failure"]
        assert failure["rule"] == rule and says in failure["message"]
        assert f'File "{path}", line ' in failure["traceback"]
        assert f"{name}.py is wrong (rule: {rule})" in run.text
        # An import fails whatever the input: no input is named for it.
        assert ("case" in failure) == (rule != "import"), failure
    assert "candidate traceback:" in run.text
    assert run.candidate("zz_honest")["correctness"]["outcome"] == "passed"


def test_every_timed_output_is_verified(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    timed = get_task("attention").bench_configs(cuda=False)[0]
    shape = (timed.case["B"], timed.case["Hq"], timed.case["Nq"], timed.case["D"])
    # Right on every checked input, wrong only on the timed configuration's inputs.
    write_candidate("shortcut", honest_attention + "\n_honest = attention\n"
                    "def attention(q, k, v, causal=False, sm_scale=None):\n"
                    f"    if tuple(q.shape) == {shape} and causal == {timed.case['causal']}:\n"
                    "        return torch.zeros_like(q)\n"
                    "    return _honest(q, k, v, causal, sm_scale)\n")
    run = avo_run(examples=1)
    entry = run.candidate("shortcut")
    assert entry["correctness"]["outcome"] == "passed"
    bench = entry["benchmarks"][timed.name]
    assert bench["outcome"] == "failed" and bench["rule"] == "tolerance"
    assert f"benchmark[{timed.name}]: the timed call's output is wrong" in run.text


def test_zero_examples_checks_only_the_boundary_cases(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    write_candidate("honest", honest_attention)
    run = avo_run(examples=0)
    assert run.candidate("honest")["correctness"] == {
        "outcome": "passed", "examples": len(get_task("attention").boundary_cases(large=False))}


@pytest.mark.parametrize("busy_measurements", [1, 99])
def test_a_time_under_the_floor_is_timed_again_after_measuring_the_ceilings_again(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, monkeypatch: pytest.MonkeyPatch, busy_measurements: int) -> None:
    # Ceilings measured on a busy machine (a million times too low) make an honest time
    # look impossible: measured again, they clear it; measured low every time, they don't.
    calls: list[Roofline] = []

    def measure(cuda: bool) -> Roofline:
        real = roofline.measure(cuda)
        busy = len(calls) < busy_measurements
        calls.append(replace(real, matmul_flops_per_s=real.matmul_flops_per_s / 1e6)
                     if busy else real)
        return calls[-1]

    monkeypatch.setattr(machine, "measure", measure)
    write_candidate("honest", honest_attention)
    run = avo_run(examples=0)
    benches = run.candidate("honest")["benchmarks"].values()
    if busy_measurements == 1:
        assert len(calls) == 2 and all(b["outcome"] == "passed" for b in benches), run.text
        task = get_task("attention")
        for b in benches:  # the floor reported is the one measured again
            work = task.flops(b["params"]), task.bytes_moved(b["params"])
            assert b["floor_s"] == calls[1].floor_s(*work) < calls[0].floor_s(*work)
    else:
        assert len(calls) == 1 + len(benches)
        assert {b["rule"] for b in benches} == {"impossible-speed"}, run.text


def test_a_candidate_may_import_helpers_beside_it_and_they_are_scanned_too(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    write_candidate("_common", honest_attention)  # a helper: not a candidate itself
    write_candidate("_shortcut", "import torch\n"
                    "library = torch.nn.functional.scaled_dot_product_attention\n")
    write_candidate("beside", "from _common import attention\n")
    write_candidate("packaged", "from candidates.attention._common import attention\n")
    write_candidate("sneaky", "import _shortcut\n"
                    "def attention(q, k, v, causal=False, sm_scale=None):\n"
                    "    return _shortcut.library(q, k, v, is_causal=causal, scale=sm_scale)\n")
    run = avo_run(examples=0)
    assert set(run.report["candidates"]) == {
        f"candidates/attention/{n}.py" for n in ("beside", "packaged", "sneaky")}
    for name in ("beside", "packaged"):
        assert run.candidate(name)["correctness"]["outcome"] == "passed", run.text
    failure = run.candidate("sneaky")["correctness"]["failure"]
    assert failure["rule"] == "forbidden-call"
    assert "_shortcut.py line 2: names forbidden" in failure["message"], failure


def test_a_failure_first_seen_on_a_boundary_case_is_still_shrunk(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str) -> None:
    # Wrong for every explicit sm_scale: a boundary case shows it first, but hypothesis does
    # not shrink explicit examples; the drawn and shrunk one is smaller.
    write_candidate("no_scale", honest_attention.replace("(sm_scale or q.shape[-1] ** -0.5)",
                                                         "q.shape[-1] ** -0.5"))
    run = avo_run(examples=10)
    case = run.candidate("no_scale")["correctness"]["failure"]["case"]
    boundary = [c for c in get_task("attention").boundary_cases(large=False)
                if c["sm_scale"] is not None]
    task = get_task("attention")
    assert task.bytes_moved(case) < min(map(task.bytes_moved, boundary)), case
    # One key gives v whatever the scale: the smallest input that shows the bug has two.
    assert (case["B"], case["Hq"], case["Nq"], case["Nk"]) == (1, 1, 1, 2), case


@pytest.mark.parametrize("task_name", ["attention", "rmsnorm"])
def test_the_cases_planned_ahead_are_the_ones_the_search_then_draws(task_name: str) -> None:
    # compile_ahead relies on it: under one seed, while every example passes, hypothesis
    # draws the same inputs with or without the explicit phase in front.
    from hypothesis import Phase, example, given, seed

    task = get_task(task_name)
    planned: list[Any] = []
    searched: list[Any] = []

    @seed(1234)
    @correctness._search_settings(30, (Phase.generate,))
    @given(task.cases(large=True))
    def plan(case: Any) -> None:
        planned.append(case)

    @seed(1234)
    @correctness._search_settings(30, (Phase.explicit, Phase.generate, Phase.shrink))
    @given(task.cases(large=True))
    def search(case: Any) -> None:
        searched.append(case)

    for case in reversed(task.boundary_cases(large=True)):
        search = example(case)(search)
    plan()
    search()
    boundary = len(task.boundary_cases(large=True))
    assert len(planned) == 30 and searched[boundary:] == planned


@pytest.mark.parametrize("task_name", ["attention", "rmsnorm"])
def test_the_longest_compiles_are_planned_first(task_name: str) -> None:
    task = get_task(task_name)
    checked = task.boundary_cases(large=True)
    benches = [b.case for b in task.bench_configs(cuda=True)]
    order = compile_ahead.in_compile_order(task, checked, benches)
    assert order[:len(benches)] == benches and len(order) == len(checked) + len(benches)
    work = [task.flops(case) for case in order[len(benches):]]
    assert work == sorted(work, reverse=True) and work[0] > work[-1]


def test_no_process_compiles_ahead_in_the_interpreter() -> None:
    assert compile_ahead.compile_workers(cuda=False) == 0
    assert 1 <= compile_ahead.compile_workers(cuda=True) <= 8


def test_compiling_ahead_calls_every_planned_case_once_and_judges_nothing(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a GPU siblings compile ahead; here (no compiler) one sibling is forced to run.
    monkeypatch.setattr(correctness, "compile_workers", lambda cuda: 1)
    write_candidate("honest", honest_attention)
    run = avo_run(examples=3)
    entry = run.candidate("honest")
    task = get_task("attention")
    planned = len(task.boundary_cases(large=False)) + 3 + len(task.bench_configs(cuda=False))
    ahead = entry["compile_ahead"]
    assert ahead["cases"] == planned and len(ahead["processes"]) == 2
    assert sum(p["calls"] for p in ahead["processes"]) == planned
    assert entry["correctness"] == {"outcome": "passed",
                                    "examples": len(task.boundary_cases(large=False)) + 3}
    assert entry["phases_s"]["compile"] > 0 and entry["phases_s"]["correctness"] > 0
    assert entry["phases_s"]["timing"] > 0


def test_the_candidate_s_own_process_outlives_compiling_ahead(
        tmp_path: Path, honest_attention: str) -> None:
    # Its sandbox dies with the thread that started it (bwrap's --die-with-parent): started
    # in the pool's, it was killed as the pool closed, and the checks that came next met a
    # dying process ("killed by SIGKILL") or paid for a new one.
    import os
    import time
    from types import SimpleNamespace

    from avo_harness.judge.sandbox import Sandbox, SandboxSettings
    from avo_harness.live import Live

    folder = tmp_path / "candidates" / "attention"
    folder.mkdir(parents=True)
    (folder / "honest.py").write_text(honest_attention)
    task = get_task("attention")
    box = Sandbox(folder / "honest.py", "attention", SandboxSettings(False, 120, 0))
    file = SimpleNamespace(sandbox=lambda: box, live=Live(None), task=task, device="cpu")
    try:
        spent = compile_ahead.compile_ahead(file, task.boundary_cases(large=False)[:4], 1).finish()
        assert sum(p["calls"] for p in spent["processes"]) == 4
        pid = box.pid
        time.sleep(1.0)
        assert pid is not None and box._proc is not None and box._proc.poll() is None
        os.kill(pid, 0)
    finally:
        box.close()


def test_a_candidate_wrong_everywhere_is_still_judged_after_compiling_ahead(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(correctness, "compile_workers", lambda cuda: 1)
    write_candidate("zeros", "import torch\n"
                    "def attention(q, k, v, causal=False, sm_scale=None):\n"
                    "    return torch.zeros_like(q)\n")
    entry = avo_run(examples=2).candidate("zeros")
    assert entry["correctness"]["outcome"] == "failed"
    assert entry["correctness"]["failure"]["rule"] == "tolerance"


@pytest.mark.parametrize("bar, cut", [(1e9, True), (1e-9, False)])
def test_the_cascade_cuts_the_configurations_left_only_when_the_bar_is_out_of_reach(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, pytester: pytest.Pytester, bar: float, cut: bool) -> None:
    from avo_harness.evolve.cascade import Cascade
    from avo_harness.evolve.fitness import from_report

    configs = [c.name for c in get_task("attention").bench_configs(cuda=False)]
    cascade = pytester.path / "cascade.json"
    cascade.write_text(Cascade(bar, dict.fromkeys(configs, 1.0), 1.5).to_json())
    write_candidate("honest", honest_attention)
    entry = avo_run("--avo-cascade", str(cascade), examples=0).candidate("honest")
    first, *rest = (entry["benchmarks"][name] for name in configs)
    assert first["outcome"] == "passed"
    assert all(b["outcome"] == ("cut" if cut else "passed") for b in rest)
    fitness = from_report(entry)
    assert fitness.passed is not cut
    assert (fitness.reason or "").startswith("cut: slower") is cut


def _no_measuring(cuda: bool) -> Roofline:
    """``roofline.measure`` where a test says the machine must not be measured again."""
    raise AssertionError("measured again")


def test_a_second_session_reuses_the_machine_s_measurements_of_the_first(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_candidate("honest", honest_attention)
    kept = pytester.path / "calibration.json"
    first = avo_run("--avo-calibration", str(kept), examples=0)
    measured = json.loads(kept.read_text())
    assert measured["device"] == "cpu" and measured["roofline"]["copy_bytes_per_s"] > 0
    assert set(measured["baselines"]) == set(first.report["baselines"])

    monkeypatch.setattr(machine, "measure", _no_measuring)
    second = avo_run("--avo-calibration", str(kept), examples=0)
    assert second.report["baselines"] == first.report["baselines"]  # the same yardstick
    assert second.candidate("honest")["benchmarks"]
    kept.write_text(json.dumps({**measured, "device": "another GPU"}))
    other = avo_run("--avo-calibration", str(kept), examples=0)  # another device: measures
    assert any(b["outcome"] == "error" for b in other.candidate("honest")["benchmarks"].values())
    assert "measured again" in other.text


def test_what_an_evaluation_beside_it_measured_meanwhile_is_not_measured_again(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_candidate("honest", honest_attention)
    full = pytester.path / "measured.json"
    first = avo_run("--avo-calibration", str(full), examples=0)
    # The second session starts with nothing kept; "another evaluation" keeps the machine's
    # measurements once the first benchmark item is set up (as one started beside it would,
    # holding the GPU's lock first), and this one measures none of it.
    shared = pytester.path / "shared.json"
    pytester.makeconftest(f"""
import shutil

def pytest_runtest_setup(item):
    if item.name.startswith("benchmark[") and not {str(shared)!r} in _done:
        _done.append({str(shared)!r})
        shutil.copy({str(full)!r}, {str(shared)!r})

_done = []
""")

    monkeypatch.setattr(machine, "measure", _no_measuring)
    second = avo_run("--avo-calibration", str(shared), examples=0)
    assert second.report["baselines"] == first.report["baselines"]
    assert all(b["outcome"] == "passed"
               for b in second.candidate("honest")["benchmarks"].values())
    assert json.loads(shared.read_text())["baselines"] == first.report["baselines"]


def test_an_import_that_fails_while_compiling_ahead_is_still_the_verdict(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(correctness, "compile_workers", lambda cuda: 1)
    write_candidate("broken", "raise RuntimeError('no kernel today')\n")
    entry = avo_run(examples=1).candidate("broken")
    assert entry["correctness"]["outcome"] == "failed"
    assert entry["correctness"]["failure"]["rule"] == "import"
    assert all(p["calls"] == 0 and p["fault"] == "CandidateFault"
               for p in entry["compile_ahead"]["processes"])


def _rmsnorm_changing(honest_rmsnorm: str, change: str, declared: str = "") -> str:
    """The honest rmsnorm with ``change`` (lines on ``y``, in float64) before it rounds."""
    rounding = "    return y.to(x.dtype)\n"
    assert rounding in honest_rmsnorm
    return declared + "_seen = [0, None]\n" + honest_rmsnorm.replace(rounding, change + rounding)


#: Every other call a hair larger (within the tolerance): some elements round the other way.
FLICKER = "    _seen[0] += 1\n    y = y * (1 + (_seen[0] % 2) * 2.0 ** -14)\n"
#: 10% larger whenever the inputs are those of the call before: far beyond the tolerance,
#: though every call on fresh inputs is right.
REPEAT_DRIFT = ("    key = (tuple(x.shape), float(x.double().sum()))\n"
                "    y = y * 1.1 if key == _seen[1] else y\n"
                "    _seen[1] = key\n")
DECLARED = "DETERMINISTIC = False\n"


def test_the_stress_check_compares_outputs_on_identical_inputs(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_rmsnorm: str) -> None:
    sources = {"steady": honest_rmsnorm,
               "flicker": _rmsnorm_changing(honest_rmsnorm, FLICKER),
               "flicker_declared": _rmsnorm_changing(honest_rmsnorm, FLICKER, DECLARED),
               "drift_declared": _rmsnorm_changing(honest_rmsnorm, REPEAT_DRIFT, DECLARED)}
    for name, source in sources.items():
        write_candidate(name, source, task="rmsnorm")
    run = avo_run("--avo-stress", "3", examples=0)
    first = get_task("rmsnorm").bench_configs(cuda=False)[0]
    elements = math.prod(first.case["shape"])
    entries = {name: run.candidate(name, task="rmsnorm")["benchmarks"] for name in sources}
    for name in sources:
        assert entries[name][first.name]["stress"] == {
            "runs": 3, "exact": name in ("steady", "flicker")}, name
    for name in ("steady", "flicker_declared"):
        assert {b["outcome"] for b in entries[name].values()} == {"passed"}, run.text
    for name in ("flicker", "drift_declared"):
        assert {b["rule"] for b in entries[name].values()} == {"nondeterministic"}, run.text
    message = entries["flicker"][first.name]["message"]
    # Its calls alternate: runs 1 and 3 differ from the verified call, run 2 does not.
    shown = re.match(rf"{first.name}: 2 of 3 runs on identical inputs did not match the "
                     rf"verified output bit for bit: run 1 differed in \d+ of {elements} elements, "
                     r"first at \(row=\d+, feature=\d+\): (\S+) then (\S+); \(row=", message)
    assert shown is not None and shown[1] != shown[2], message
    message = entries["drift_declared"][first.name]["message"]
    assert re.search(rf"3 of 3 runs .* within the tolerance \S+: run 1 differed in \d+ of "
                     rf"{elements} elements", message), message
    assert f"benchmark[{first.name}]: the output changed on identical inputs " \
           "(rule: nondeterministic)" in run.text


def test_the_other_libraries_are_timed_beside_the_baseline_or_say_why_not(
        write_candidate: Callable[..., Path], avo_run: Callable[..., Any],
        honest_attention: str, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("attention")
    monkeypatch.setattr(type(task), "extra_baselines", lambda self, case, device: {
        "absent-lib": "not built for this machine", "sdpa-again": self.baseline,
        "broken-lib": lambda call: 1 / 0})
    write_candidate("honest", honest_attention)
    report = avo_run(examples=0).report
    for entry in report["baselines"].values():
        others = entry["others"]
        assert others["absent-lib"] == {"absent": "not built for this machine"}
        assert others["broken-lib"]["absent"].startswith("failed here (ZeroDivisionError")
        assert others["sdpa-again"]["tflops"] > 0
        assert entry["best_tflops"] == max(entry["tflops"], others["sdpa-again"]["tflops"])
