"""Every cheating candidate is rejected, naming the rule it broke; the honest but unusual
ones pass. All of them run in one CPU session, as ``pytest candidates/...`` in CI would."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adversary import candidate, names, rules, run_project

# The rule each cheat must be caught by (one of, where two defences can fire first).
EXPECTED = {
    "sdpa_direct": {"forbidden-call"},
    "sdpa_ops_by_string": {"forbidden-call", "tampering"},
    "sdpa_getattr": {"tampering"},
    "import_flash_attn": {"tampering"},
    "eval_sdpa": {"forbidden-call", "tampering"},
    "fake_main": {"forbidden-call"},
    # Whichever reuse of an address comes first: new data, a new shape or a new dtype.
    "cache_by_pointer": {"tolerance", "output-shape", "output-dtype"},
    "cache_by_shape": {"tolerance"},
    "cache_by_partial_hash": {"tolerance"},
    "id_keyed_replay": {"tampering"},
    "empty_partial_write": {"tolerance"},
    "reuse_previous_output": {"tolerance"},
    "mutate_input": {"input-mutated"},
    "count_calls": {"tolerance"},
    "benchmark_shape_shortcut": {"tolerance"},
    "deferred_thread": {"tampering"},
    "exit_zero": {"raised"},
    "os_exit_import": {"tampering"},
    "raise_skip": {"tampering"},
    "patch_timer": {"tampering"},
    "read_frames": {"tampering"},
    "write_other_candidate": {"tampering"},
    "tensor_subclass": {"output-type"},
    "wrong_dtype": {"output-dtype"},
    "view_of_input": {"output-aliases-input"},
    "float8_scores": {"tolerance"},
    # The holes of a judge that ran in the candidate's interpreter (issue 11):
    "function_mode_at_import": {"tampering"},
    "tensor_method_shadowed": {"tampering"},
    "frames_through_logging": {"tampering"},
    "lockdown_switched_off": {"tampering"},
    "conftest_backdoor": {"tampering"},
    "payload_outside_candidates": {"tampering"},
    "zeros_on_middle_rounds": {"tolerance"},
    "latin1_scan_evasion": {"tampering"},
    "link_into_project": {"tampering"},
    "flex_attention": {"forbidden-call"},
    "flex_attention_hidden": {"forbidden-call", "tampering"},
    "flex_operator": {"forbidden-call"},
    "transformer_layer": {"forbidden-call"},
    # Found by a red team against the rebuilt judge:
    "forged_device_time": {"tampering"},
    "socket_takeover": {"tampering", "protocol"},
    "forged_nan_time": {"tampering", "protocol"},
    "json_bomb_harness_error": {"tampering", "protocol", "tolerance"},
    "tmpfs_memory_bomb": {"import"},
    "pth_exec_scan_bypass": {"tampering"},
    "host_unix_socket_logging": {"tampering"},
    "sdpa_math_decompose": {"forbidden-call", "tampering"},
    # Found by a red team against the sandboxed child (2026-12-02):
    "dispatcher_copy_hijack": {"tampering"},
    "cwd_shadow_restart": {"crash"},
    "sparse_triton_attention": {"forbidden-call"},
}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    root = tmp_path_factory.mktemp("adversarial")
    sources = {name: candidate("cheats", name) for name in names("cheats")}
    sources.update({name: candidate("honest", name) for name in names("honest")})
    # The cheat that writes to other candidates aims at this one.
    sources["seed"] = candidate("honest", "several_kernels")
    report, output = run_project(root, sources, "--avo-examples", "8", "--avo-device", "cpu")
    return report, output, root


def test_every_cheat_is_listed() -> None:
    assert sorted(EXPECTED) == names("cheats")
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.slow
def test_cheat_is_rejected_naming_its_rule(session: tuple[dict[str, Any], str, Path],
                                           name: str) -> None:
    report, output, _ = session
    entry = report[name]
    assert entry["correctness"]["outcome"] == "failed" or any(
        b.get("outcome") == "failed" for b in entry["benchmarks"].values()), output
    assert rules(entry) & EXPECTED[name], (name, rules(entry), entry["correctness"])


@pytest.mark.parametrize("name", [*names("honest"), "seed"])
@pytest.mark.slow
def test_honest_unusual_candidates_pass(session: tuple[dict[str, Any], str, Path],
                                        name: str) -> None:
    report, output, _ = session
    entry = report[name]
    assert entry["correctness"]["outcome"] == "passed", entry["correctness"]
    assert entry["benchmarks"] and all(
        b["outcome"] == "passed" for b in entry["benchmarks"].values()), entry["benchmarks"]


@pytest.mark.slow
def test_no_cheat_wrote_outside_its_process(session: tuple[dict[str, Any], str, Path]) -> None:
    _, _, root = session
    for path in (root / "candidates" / "attention" / "seed.py", root / "conftest.py"):
        assert "pwned" not in (path.read_text() if path.exists() else ""), path
    assert not (root / "candidates" / "attention" / "evil.py").exists()
