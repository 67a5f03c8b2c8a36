"""The static first filter: what a candidate's source may not name.

Run by the parent, which never imports candidate code. It is a filter, not the
defence: every rule it enforces is also enforced at run time in the candidate's
process (``lockdown``), where a name assembled from strings cannot hide.

Two rules: ``forbidden-call`` (the library implementations of the task) and
``tampering`` (the means to reach the harness, the process or the machine: frames,
the garbage collector, ctypes, threads and processes, exits, dynamic imports and
``eval``, attribute access by computed name, and assignments into imported modules).

A candidate may import helper modules beside it (``_common.py``) or from the project
(``candidates.attention._common``): ``scan_file`` scans those too, as far as they reach.

A module's top-level ``if __name__ == "__main__":`` block (a self-test that compares
with the library, say) is not scanned: it never runs when the harness imports the
candidate, unless the module rebinds ``__name__``, in which case it is scanned too.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

# Modules a kernel has no reason to import.
_TAMPER_MODULES = {
    "ctypes", "gc", "inspect", "traceback", "threading", "_thread", "multiprocessing",
    "concurrent", "subprocess", "signal", "atexit", "socket", "importlib", "builtins",
    "marshal", "pickle", "pytest", "_pytest", "hypothesis", "avo_harness", "sys", "code",
}
# Attributes (and names) that reach frames, code objects, the interpreter or the exit.
_TAMPER_NAMES = {
    "_getframe", "_current_frames", "tb_frame", "f_back", "f_globals", "f_locals", "gi_frame",
    "cr_frame", "__globals__", "__closure__", "__code__", "__builtins__", "__subclasses__",
    "__import__", "_exit", "kill", "killpg", "settrace", "setprofile", "addaudithook",
    "attrgetter", "__dict__", "__setattr__", "__getattribute__",
    # Starting processes: a shell or a fork escapes every defence of this process.
    "fork", "forkpty", "popen", "posix_spawn", "posix_spawnp", "execl", "execle", "execlp",
    "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
    "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
}
# Builtins that run or reach code by name; as attributes (``torch.compile``) they are fine.
_TAMPER_BUILTINS = {"eval", "exec", "compile", "globals", "vars", "exit", "quit"}
_DYNAMIC_ATTRIBUTE = {"getattr", "setattr", "delattr"}


@dataclass(frozen=True)
class Finding:
    """One rule the source breaks, and where."""

    rule: str
    what: str
    line: int
    file: str | None = None  # a helper the candidate imports; None: the candidate itself

    def __str__(self) -> str:
        return f"{self.file + ' ' if self.file else ''}line {self.line}: {self.what}"


def scan_file(path: Path, forbidden: Iterable[str], roots: Iterable[Path]) -> list[Finding]:
    """``scan_source`` of the candidate at ``path`` and of every local module it imports,
    directly or through other local modules (found beside it or under ``roots``)."""
    forbidden, roots = list(forbidden), [path.parent, *roots]
    findings: list[Finding] = []
    seen, todo = {path.resolve()}, [path]
    while todo:
        current = todo.pop(0)
        source = current.read_text(errors="replace")
        label = None if current == path else current.name
        findings += [replace(f, file=label) for f in scan_source(source, forbidden)]
        for module in _local_imports(source, current, roots):
            if module.resolve() not in seen:
                seen.add(module.resolve())
                todo.append(module)
    findings.sort(key=lambda f: (f.rule != "forbidden-call", f.file is not None, f.line))
    return findings


def _local_imports(source: str, here: Path, roots: list[Path]) -> list[Path]:
    """The files of the modules ``source`` (the file ``here``) imports that live under
    ``roots``, or relative to ``here``; packages' ``__init__`` files included."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    wanted: list[tuple[list[Path], list[str]]] = []  # (where to look, dotted parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted += [(roots, a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > len(here.parents):
                continue
            base = [here.parents[node.level - 1]] if node.level else roots
            module = node.module.split(".") if node.module else []
            wanted += [(base, module)] if module else []
            wanted += [(base, [*module, a.name]) for a in node.names]
    found = []
    for bases, parts in wanted:
        for base in bases:
            for i in range(1, len(parts) + 1):  # a.b.c imports a and a.b first
                for path in (base.joinpath(*parts[:i]).with_suffix(".py"),
                             base.joinpath(*parts[:i], "__init__.py")):
                    if path.is_file():
                        found.append(path)
    return found


def scan_source(source: str, forbidden: Iterable[str]) -> list[Finding]:
    """Every finding in ``source``, forbidden calls first; empty if it is clean."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the child's import reports the syntax error with its line
    leaves = {name.rsplit(".", 1)[-1]: name for name in forbidden}
    nodes = list(_walk_imported_code(tree))
    imported = _imported_names(nodes)
    os_names = {a.asname or a.name for node in nodes if isinstance(node, ast.Import)
                for a in node.names if a.name == "os"}
    docstrings = _docstrings(tree)
    findings: list[Finding] = []

    def add(rule: str, what: str, node: ast.AST) -> None:
        finding = Finding(rule, what, getattr(node, "lineno", 0))
        if all((f.rule, f.what) != (rule, what) for f in findings):
            findings.append(finding)

    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for module in modules:
                for part in module.split("."):
                    if part in leaves:
                        add("forbidden-call", f"imports forbidden {leaves[part]}", node)
                if module.split(".")[0] in _TAMPER_MODULES:
                    add("tampering", f"imports {module}", node)
                if module.split(".")[-1] in _TAMPER_NAMES or module == "os.system":
                    add("tampering", f"imports {module}", node)
        elif isinstance(node, ast.Name):
            if node.id in leaves:
                add("forbidden-call", f"names forbidden {leaves[node.id]}", node)
            if node.id in _TAMPER_NAMES or node.id in _TAMPER_BUILTINS:
                add("tampering", f"uses {node.id}", node)
        elif isinstance(node, ast.Attribute):
            if node.attr in leaves:
                add("forbidden-call", f"names forbidden {leaves[node.attr]}", node)
            if node.attr in _TAMPER_NAMES or (node.attr == "system" and _root(node) in os_names):
                add("tampering", f"uses .{node.attr}", node)
            if isinstance(node.ctx, (ast.Store, ast.Del)) and _root(node) in imported:
                add("tampering", f"assigns to {ast.unparse(node)}, an imported module's "
                    "attribute", node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _DYNAMIC_ATTRIBUTE:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                add("tampering", f"calls {node.func.id} with a computed attribute name", node)
            elif node.func.id != "getattr":
                add("tampering", f"calls {node.func.id}", node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            for leaf, full in leaves.items():
                if leaf in node.value:
                    add("forbidden-call", f"spells forbidden {full} in a string", node)
    findings.sort(key=lambda f: (f.rule != "forbidden-call", f.line))
    return findings


def _walk_imported_code(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node of ``tree`` that can run when the module is imported under its own name:
    all of it but the top-level ``__main__`` blocks, if nothing rebinds ``__name__``."""
    skip = set() if _rebinds_name(tree) else {id(stmt) for stmt in tree.body if _is_main(stmt)}
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if id(node) in skip:
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_main(stmt: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either way round) with no ``else``."""
    if not isinstance(stmt, ast.If) or stmt.orelse or not isinstance(stmt.test, ast.Compare):
        return False
    test = stmt.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
    return sides == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}


def _rebinds_name(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "__name__" \
                and isinstance(node.ctx, (ast.Store, ast.Del)):
            return True
        if isinstance(node, (ast.Global, ast.Nonlocal)) and "__name__" in node.names:
            return True
        if isinstance(node, ast.alias) and "__name__" in (node.asname, node.name):
            return True
        if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name == "__name__":
            return True
    return False


def _imported_names(nodes: list[ast.AST]) -> set[str]:
    """Names bound by imports (``torch``, ``tl``, ``F``...): assigning into them is patching."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
