"""Keeping a candidate away from the library implementations of its own task.

Two layers: a static scan of the source (run by the parent, which never imports
candidate code) and tripwires installed in the child before the candidate is
imported, so that a call assembled at run time is still caught.
"""
from __future__ import annotations

import ast
import importlib
import importlib.abc
import sys
from collections.abc import Iterable, Sequence


class ForbiddenCall(Exception):
    """A candidate reached for something its task forbids."""


def scan_source(source: str, forbidden: Iterable[str]) -> list[str]:
    """Forbidden names that appear as identifiers, attributes, imports or strings."""
    leaves = {name.rsplit(".", 1)[-1]: name for name in forbidden}
    found: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return found  # the child's import reports the syntax error with its line
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        words: list[str] = []
        if isinstance(node, ast.Name):
            words = [node.id]
        elif isinstance(node, ast.Attribute):
            words = [node.attr]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.append(node.module)
            words = [part for m in modules for part in m.split(".")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            words = [leaf for leaf in leaves if leaf in node.value]
        for word in words:
            if word in leaves and leaves[word] not in found:
                found.append(leaves[word])
    return found


def install_tripwires(forbidden: Sequence[str]) -> None:
    """Replace each forbidden callable with one that raises, and refuse forbidden imports."""
    blocked_modules = [name for name in forbidden if "." not in name]
    sys.meta_path.insert(0, _ImportBlocker(blocked_modules))
    for name in forbidden:
        if "." not in name:
            continue
        owner_name, attr = name.rsplit(".", 1)
        owner = _resolve(owner_name)
        if owner is None or not hasattr(owner, attr):
            continue
        try:
            setattr(owner, attr, _tripwire(name))
        except (AttributeError, TypeError):
            pass  # a read-only owner; the static scan still covers it


def _resolve(dotted: str) -> object | None:
    parts = dotted.split(".")
    try:
        obj: object = importlib.import_module(parts[0])
    except ImportError:
        return None
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _tripwire(name: str):  # noqa: ANN202
    def refuse(*args: object, **kwargs: object) -> None:
        raise ForbiddenCall(f"forbidden call: {name}")

    return refuse


class _ImportBlocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: list[str]) -> None:
        self._names = names

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.split(".")[0] in self._names:
            raise ForbiddenCall(f"forbidden import: {fullname}")
        return None
