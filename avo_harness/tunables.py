"""A candidate's tunables (and other declarations), read and rewritten as source text,
never by importing it.

A candidate declares ``TUNABLES = {"NAME": {"value": v, "choices": [...]}, ...}`` (a
literal) and optionally ``CONSTRAINTS = ["expr", ...]``: predicates over the tunable
names, using numbers, arithmetic, comparisons and ``and``/``or``/``not``. They are
evaluated by a small interpreter of that grammar, not by ``eval``.
"""
from __future__ import annotations

import ast
import json
import operator
from dataclasses import dataclass
from typing import Any

Values = dict[str, Any]


class TunablesError(ValueError):
    """The source declares no readable tunables, or a constraint outside the grammar."""


@dataclass(frozen=True)
class Space:
    """The declared search space of one candidate."""

    values: Values
    choices: dict[str, list[Any]]
    constraints: list[str]

    def allows(self, values: Values) -> bool:
        """Every value is a declared choice and every constraint holds."""
        return all(values.get(k) in c for k, c in self.choices.items()) and all(
            satisfies(expr, values) for expr in self.constraints)


def read_space(source: str) -> Space:
    tunables = _assignment(source, "TUNABLES")
    if tunables is None:
        raise TunablesError("the candidate declares no TUNABLES literal")
    try:
        spec = ast.literal_eval(tunables.value)
        constraints_node = _assignment(source, "CONSTRAINTS")
        constraints = [] if constraints_node is None else ast.literal_eval(constraints_node.value)
        values = {name: s["value"] for name, s in spec.items()}
        choices = {name: list(s["choices"]) for name, s in spec.items()}
    except (ValueError, TypeError, KeyError, SyntaxError) as exc:
        raise TunablesError(f"TUNABLES is not a literal of the documented shape: {exc}") from None
    for expr in constraints:
        _check_grammar(expr)
    return Space(values, choices, list(constraints))


def write_values(source: str, values: Values) -> str:
    """``source`` with each tunable's ``value`` replaced; everything else untouched."""
    node = _assignment(source, "TUNABLES")
    if node is None:
        raise TunablesError("the candidate declares no TUNABLES literal")
    spec = ast.literal_eval(node.value)
    for name, value in values.items():
        if name not in spec:
            raise TunablesError(f"unknown tunable {name!r}")
        spec[name]["value"] = value
    body = ",\n".join(f"    {json.dumps(name)}: {{\"value\": {s['value']!r}, "
                      f"\"choices\": {s['choices']!r}}}" for name, s in spec.items())
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:node.lineno - 1]) + node.col_offset
    end = sum(len(line) for line in lines[:node.end_lineno - 1]) + node.end_col_offset
    return source[:start] + f"TUNABLES = {{\n{body},\n}}" + source[end:]


def declared(source: str | bytes, name: str, default: Any) -> Any:
    """The literal that ``source`` assigns to ``name`` at module level (``DETERMINISTIC =
    False``), read as its tunables are, without importing it; ``default`` where it assigns
    none, assigns something other than a literal, or does not parse."""
    try:
        node = _assignment(source, name)
        return default if node is None else ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return default


def satisfies(expr: str, values: Values) -> bool:
    return bool(_evaluate(ast.parse(expr, mode="eval").body, values))


def _assignment(source: str | bytes, name: str) -> ast.Assign | None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise TunablesError(f"the candidate does not parse: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}


def _check_grammar(expr: str) -> None:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise TunablesError(f"constraint {expr!r} does not parse: {exc.msg}") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
               ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant,
               *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise TunablesError(f"constraint {expr!r} uses {type(node).__name__}, "
                                "outside the constraint grammar")


def _evaluate(node: ast.AST, values: Values) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise TunablesError(f"constraint names unknown tunable {node.id!r}")
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.BoolOp):
        results = (_evaluate(v, values) for v in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values),
                                      _evaluate(node.right, values))
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise TunablesError(f"{type(node).__name__} is outside the constraint grammar")
