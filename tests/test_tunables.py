"""Reading and rewriting TUNABLES as text, and the constraint grammar (no eval)."""
from __future__ import annotations

from pathlib import Path

import pytest

from avo_harness.tunables import TunablesError, declared, read_space, satisfies, write_values

SEEDS = sorted((Path(__file__).parent.parent / "candidates").glob("*/seed.py"))
SOURCE = '''"""A candidate."""
import torch

TUNABLES = {
    "BLOCK_M": {"value": 128, "choices": [32, 64, 128]},
    "num_warps": {"value": 8, "choices": [4, 8]},
}
CONSTRAINTS = ["BLOCK_M * num_warps <= 1024"]


def attention(q, k, v, causal=False, sm_scale=None):
    return TUNABLES["BLOCK_M"]["value"]
'''


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.parent.name)
def test_reads_every_seed_space(seed: Path) -> None:
    space = read_space(seed.read_text())
    assert space.values and set(space.values) == set(space.choices)
    assert all(space.values[k] in space.choices[k] for k in space.values)
    assert space.allows(space.values)


def test_write_values_changes_only_the_values() -> None:
    new = write_values(SOURCE, {"BLOCK_M": 64, "num_warps": 4})
    space = read_space(new)
    assert space.values == {"BLOCK_M": 64, "num_warps": 4}
    assert space.choices == read_space(SOURCE).choices
    assert SOURCE.split("TUNABLES = {")[0] == new.split("TUNABLES = {")[0]
    assert SOURCE.split("CONSTRAINTS")[1] == new.split("CONSTRAINTS")[1]


def test_unknown_tunable_is_refused() -> None:
    with pytest.raises(TunablesError, match="unknown tunable 'BLOCK_Z'"):
        write_values(SOURCE, {"BLOCK_Z": 1})


@pytest.mark.parametrize("expr, values, expected", [
    ("BLOCK_M * BLOCK_N <= 128 * 128", {"BLOCK_M": 128, "BLOCK_N": 128}, True),
    ("BLOCK_M * BLOCK_N <= 128 * 128", {"BLOCK_M": 128, "BLOCK_N": 256}, False),
    ("not (A == 1 and B < 8)", {"A": 1, "B": 4}, False),
    ("A % B == 0 or B % A == 0", {"A": 32, "B": 64}, True),
    ("1 <= A < 4", {"A": 4}, False),
])
def test_constraint_grammar(expr: str, values: dict[str, int], expected: bool) -> None:
    assert satisfies(expr, values) is expected


@pytest.mark.parametrize("constraint", [
    "__import__('os').system('true')", "A.bit_length() > 1", "[x for x in A]", "A if B else C",
])
def test_constraints_outside_the_grammar_are_refused_not_run(constraint: str) -> None:
    source = ('TUNABLES = {"A": {"value": 1, "choices": [1, 2]}}\n'
              f"CONSTRAINTS = [{constraint!r}]\n")
    with pytest.raises(TunablesError, match="outside the constraint grammar"):
        read_space(source)


def test_missing_or_malformed_tunables() -> None:
    with pytest.raises(TunablesError, match="no TUNABLES"):
        read_space("x = 1\n")
    with pytest.raises(TunablesError, match="documented shape"):
        read_space("TUNABLES = {'A': 3}\n")


def test_a_declaration_is_read_as_a_literal_or_not_at_all() -> None:
    assert declared("DETERMINISTIC = False\n" + SOURCE, "DETERMINISTIC", True) is False
    assert declared(SOURCE, "DETERMINISTIC", True) is True
    assert declared(SOURCE, "TUNABLES", None)["num_warps"]["value"] == 8
    for source in ("import os\nDETERMINISTIC = os.environ == {}\n", "def f(:\n",
                   "def f():\n    DETERMINISTIC = False\n"):
        assert declared(source, "DETERMINISTIC", True) is True, source
    latin1 = "# -*- coding: latin-1 -*-\nDETERMINISTIC = False  # é\n".encode("latin-1")
    assert declared(latin1, "DETERMINISTIC", True) is False  # decoded as Python would
