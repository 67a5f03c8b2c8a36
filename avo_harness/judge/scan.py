"""The static first filter: what a candidate's source may not name.

Run by the parent, which never imports candidate code. It is a filter, not the only
defence: the candidate's process is locked down at run time (``lockdown``), where a name
assembled from strings cannot hide. The filter refuses by name, before anything runs, the
routes that run time backs up and some it cannot see (a descriptor write, a loaded library).

Three rules:

- ``unparsable``: a file the scan cannot decode or parse as the import would (its PEP 263
  coding line and BOM honoured), a helper among them, or a compiled helper it cannot read.
  The scan fails closed: what it cannot read, it refuses.
- ``forbidden-call``: the library implementations of the task (the ``forbidden`` entries'
  last names, as names the module does not define itself, attributes, parts of an import
  path, or parts of a name or dotted path written as a string).
- ``tampering``: the means to reach the harness, the process or the machine:

  * frames and code (``_getframe``, ``tb_frame``, ``f_back``, ``gi_frame``, ``currentframe``,
    ``__globals__``, ``__code__``, dynamo's ``set_eval_frame``, torch's
    ``_jit_internal`` resolution callbacks), the garbage collector, ``ctypes`` (numpy's
    ``ctypeslib`` and ``.ctypes`` too), tracers and debuggers, subinterpreters;
  * the interpreter and its import system: ``sys``, ``builtins`` and ``__builtins__``,
    ``importlib``, ``runpy``, ``pkgutil``, ``__import__`` and imports by a name built at run
    time (``torch.ops.import_module``, ``torch._utils._import_dotted_name``), ``__loader__``,
    ``__spec__``, ``.modules`` not called as a method (``sys.modules`` by any route),
    ``__self__`` (a builtin's is the builtins module), the worker's ``__main__``; any of these
    reached as an attribute of another module (``os.sys``, ``torch.__builtins__``,
    ``torch._ops.importlib``) as well as imported;
  * code run from a string: ``eval``/``exec``/``compile``/``globals``/``locals``, and eval
    by other names (``timeit``, ``torch.utils.benchmark``, ``get_type_hints``, fx's
    ``_forward_from_src``);
  * processes, signals and exits: ``subprocess``, ``multiprocessing``, ``threading``,
    ``asyncio``, ``pty``, ``os.system`` by any route (``platform.system`` is fine), the
    ``fork``/``exec*``/``spawn*``/``popen`` family, ``kill``, ``_exit``, ``exit``; raw writes to
    inherited descriptors (``os.write``, ``os.dup2``, ``os.fdopen``: the worker's pipe);
  * compilers and loaders that run commands or load code from outside the candidate:
    inductor's ``cpp_builder``
    (``run_compile_cmd``, ``run_command_and_check``) and ``codecache`` (``PyCodeCache``),
    Triton's ``runtime.build``, ``load_library``, ``torch.hub``; unpickling, which calls
    anything by name (``pickle``, ``torch.load``, ``allow_pickle``/``weights_only``,
    ``yaml``), and ``logging.config`` (``dictConfig`` builds any callable by name);
  * ATen operators named in a string (``"aten::..."``: a kernel registration or a lookup by
    name) and dispatch modes (``TorchDispatchMode``), which reach the harness's own calls;
  * attribute access by computed name: ``getattr``/``setattr``/``delattr`` with a computed
    name, or passed around as values; ``__getattr__``, ``__getattribute__``, ``__dict__``,
    ``vars``, ``attrgetter``/``methodcaller``, ``Formatter.get_field``. ``getattr`` with a
    constant name is read as the attribute it names, ``x["__builtins__"]`` and a pattern's
    ``case object(system=run)`` likewise;
  * patching what the harness shares: assignments into an imported module (or a name bound
    to one of its attributes, ``E = torch.cuda.Event``, ``def f(m=torch.cuda)``), into an
    object's class (``type(x).f``, ``x.__class__.f``) or into an object the scan cannot follow
    to a name (``[torch.cuda][0].f``); an imported module passed around as a value;
    ``from m import *`` (its names cannot be told from modules); the harness's and pytest's
    own modules. A module handed on as an attribute (``patch(torch.cuda)``) is the run-time
    snapshot's to catch.

A candidate may import helper modules beside it (``_common.py``) or from the project
(``candidates.attention._common``): ``scan_file`` scans those too, as far as they reach.

A module's top-level ``if __name__ == "__main__":`` block (a self-test that compares
with the library, say) is not scanned: it never runs when the harness imports the
candidate, unless the module rebinds ``__name__``, in which case it is scanned too.
"""
from __future__ import annotations

import ast
import importlib.machinery
import io
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

# Modules a kernel has no reason to import.
_TAMPER_MODULES = {
    "ctypes", "_ctypes", "cffi", "gc", "inspect", "traceback", "threading", "_thread",
    "multiprocessing", "concurrent", "asyncio", "_asyncio", "subprocess", "_posixsubprocess",
    "pty", "signal", "_signal", "atexit", "socket", "posix", "nt", "shutil", "importlib",
    "_imp", "_frozen_importlib", "_frozen_importlib_external", "runpy", "pkgutil", "zipimport",
    "pydoc", "builtins", "sys", "code", "marshal", "pickle", "_pickle", "shelve", "dill",
    "cloudpickle", "joblib", "yaml", "pdb", "bdb", "trace", "profile", "cProfile", "_lsprof",
    "unittest", "mock", "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
    "_xxinterpchannels", "_interpreters", "_interpchannels", "_interpqueues", "interpreters",
    "timeit", "doctest", "rlcompleter", "__main__", "__mp_main__", "pytest", "_pytest",
    "hypothesis", "avo_harness",
    # .pth files run their import lines: site.addsitedir is exec by another name.
    "site",
}
# Packages whose own submodules are refused (``import logging`` itself is honest).
_TAMPER_PACKAGES = {"logging.config", "logging.handlers"}
# The same modules reached as an attribute of another (``os.sys``, ``np.ctypeslib.ctypes``);
# not those whose names are also common attributes (``torch.jit.trace``, ``Timer.timeit``).
_TAMPER_MODULE_ATTRIBUTES = _TAMPER_MODULES - {"code", "trace", "profile", "timeit", "site"}
# Attributes (and names, and parts of an import path) that reach frames, code objects, the
# interpreter, processes or the exit.
_TAMPER_NAMES = {
    # Kernels reached around the dispatcher's backend keys (a forbidden operator's
    # decomposition, an operator looked up by a name built at run time).
    "decompose", "lookup_op", "_op_dk", "_jit_get_operation",
    # Frames and code.
    "_getframe", "_current_frames", "currentframe", "tb_frame", "f_back", "f_globals",
    "f_locals", "f_builtins", "f_trace", "gi_frame", "cr_frame", "ag_frame", "__globals__",
    "__closure__", "__code__", "set_eval_frame", "eval_frame", "_jit_internal",
    "createResolutionCallbackFromEnv", "createResolutionCallbackFromFrame",
    "createResolutionCallbackFromClosure", "settrace", "setprofile", "addaudithook",
    # The interpreter, its import system and attribute access by name.
    "__builtins__", "__import__", "__loader__", "__spec__", "__self__", "__subclasses__",
    "__dict__", "__getattr__", "__getattribute__", "__setattr__", "__delattr__", "attrgetter",
    "methodcaller", "get_field", "ctypeslib", "import_module", "_import_module",
    "import_submodule", "_import_dotted_name", "resolve_name",
    # Exits and signals.
    "_exit", "kill", "killpg",
    # Starting processes: a shell or a fork escapes every defence of this process.
    "fork", "forkpty", "popen", "posix_spawn", "posix_spawnp", "execl", "execle", "execlp",
    "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp",
    "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "check_call", "check_output",
    "getoutput", "getstatusoutput",
    # Compilers and loaders: any command, or code loaded from outside the candidate's files.
    "cpp_builder", "run_compile_cmd", "run_command_and_check",
    "codecache", "PyCodeCache", "CppCodeCache", "load_by_key_path", "load_library",
    "compile_module_from_src", "compile_module_from_file", "compile_so_from_src",
    "compile_so_from_file", "_compile_so", "_load_module_from_path",
    # Code run from a string: eval by another name.
    "_forward_from_src", "_exec_with_source", "_method_from_src", "get_type_hints",
    "_eval_type", "ForwardRef",
    # Unpickling calls anything by name; logging.config builds anything by name.
    "serialization", "add_safe_globals", "safe_globals", "dictConfig", "fileConfig",
    # Dispatch modes see (and answer) every operator the harness calls in this process.
    "TorchDispatchMode", "TorchFunctionMode", "_python_dispatch", "py_impl",
    "_push_on_torch_dispatch_stack", "_push_on_torch_function_stack",
}
# Refused as attributes and as parts of an import path: the names above, the modules, and a
# name too common among a kernel's own functions to refuse bare (Triton's ``build._build``).
_TAMPER_ATTRIBUTES = _TAMPER_NAMES | _TAMPER_MODULE_ATTRIBUTES | {"_build"}
# Dotted routes whose last names alone are honest elsewhere (``tl.load``, ``f.write``); they
# match the end of a chain (``torch.os.system`` too) or any part of an import path.
_TAMPER_DOTTED = {
    "os.system", "os.write", "os.writev", "os.pwrite", "os.pwritev", "os.sendfile", "os.dup",
    "os.dup2", "os.fdopen", "torch.load", "torch.hub", "torch.utils.benchmark",
    "triton.runtime.build",
}
# A pattern ``case C(name=x)`` reads ``name`` of whatever it matches: every route's last name.
_PATTERN_ATTRIBUTES = _TAMPER_ATTRIBUTES | {"modules"} | {
    t.rsplit(".", 1)[1] for t in _TAMPER_DOTTED}
# Builtins that run or reach code by name; as attributes (``torch.compile``) they are fine.
_TAMPER_BUILTINS = {"eval", "exec", "compile", "globals", "locals", "vars", "breakpoint",
                    "exit", "quit"}
_DYNAMIC_ATTRIBUTE = {"getattr", "setattr", "delattr"}
# Class attributes: a store through them patches a class the harness uses (torch.Tensor).
_CLASS_ATTRIBUTES = {"__class__", "__bases__", "__base__", "__mro__"}
# What reading, decoding or parsing a file raises (MemoryError: the parser's stack overflowed).
_UNREADABLE = (SyntaxError, ValueError, LookupError, RecursionError, MemoryError, OSError)
_COMPILED_SUFFIXES = [*importlib.machinery.EXTENSION_SUFFIXES, ".pyc"]


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
    directly or through other local modules (found beside it or under ``roots``), each read
    as its import decodes it."""
    forbidden, roots = list(forbidden), [path.parent, *roots]
    findings: list[Finding] = []
    seen, todo = {path.resolve()}, [path]
    while todo:
        current = todo.pop(0)
        label = None if current == path else current.name
        if current.suffix != ".py":
            findings.append(Finding("unparsable", f"imports {current.name}, a compiled module "
                                    "the scan cannot read", 0, label))
            continue
        tree = _read(current)
        if isinstance(tree, Finding):
            findings.append(replace(tree, file=label))
            continue
        findings += [replace(f, file=label) for f in _scan_tree(tree, forbidden, current.name)]
        for module in _local_imports(tree, current, roots):
            if module.resolve() not in seen:
                seen.add(module.resolve())
                todo.append(module)
    findings.sort(key=lambda f: (f.rule != "forbidden-call", f.file is not None, f.line))
    return findings


def scan_source(source: str, forbidden: Iterable[str]) -> list[Finding]:
    """Every finding in ``source``, forbidden calls first; empty if it is clean. The text is
    read as the file it is saved to (UTF-8) will be imported: a coding line in it counts."""
    try:
        tree = _parse(_decoded(io.BytesIO(source.encode())), "the source")
    except _UNREADABLE as exc:
        return [_unparsable("the source", exc)]
    if isinstance(tree, Finding):
        return [tree]
    return _scan_tree(tree, list(forbidden), "the source")


def _read(path: Path) -> ast.Module | Finding:
    """The module at ``path`` as its import decodes and parses it, or why it cannot be."""
    try:
        with path.open("rb") as file:
            source = _decoded(file)
    except _UNREADABLE as exc:
        return _unparsable(path.name, exc)
    return _parse(source, path.name)


def _decoded(buffer: BinaryIO) -> str:
    """What the import reads from these bytes: ``tokenize.open``'s decoding (the BOM, else
    the PEP 263 coding line, else UTF-8), which ``errors="replace"`` would not match."""
    encoding, _ = tokenize.detect_encoding(buffer.readline)
    buffer.seek(0)
    return io.TextIOWrapper(buffer, encoding, line_buffering=True).read()


def _parse(source: str, name: str) -> ast.Module | Finding:
    try:
        return ast.parse(source)
    except _UNREADABLE as exc:
        return _unparsable(name, exc)


def _unparsable(name: str, exc: BaseException) -> Finding:
    """Failing closed: a file the scan cannot read is refused, not waved through."""
    line = getattr(exc, "lineno", None) or 0
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        line = exc.object[:exc.start].count(b"\n") + 1
    message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    return Finding("unparsable", f"{name} cannot be scanned: {type(exc).__name__}: "
                   f"{message or 'nested too deeply'}", line)


def _local_imports(tree: ast.Module, here: Path, roots: list[Path]) -> list[Path]:
    """The files of the modules ``tree`` (the file ``here``) imports that live under
    ``roots``, or relative to ``here``; packages' ``__init__`` files and compiled modules
    included."""
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
                folder, name = base.joinpath(*parts[:i - 1]), parts[i - 1]
                for suffix in (".py", *_COMPILED_SUFFIXES):
                    for path in (folder / f"{name}{suffix}", folder / name / f"__init__{suffix}"):
                        if path.is_file():
                            found.append(path)
    return found


def _scan_tree(tree: ast.Module, forbidden: list[str], name: str) -> list[Finding]:
    try:
        return _findings(tree, forbidden)
    except RecursionError as exc:  # an expression nested deeper than the scan can follow
        return [_unparsable(name, exc)]


def _findings(tree: ast.Module, forbidden: list[str]) -> list[Finding]:
    leaves: dict[str, str] = {}
    for name in forbidden:  # a leaf is named by its first entry: the task lists public first
        leaves.setdefault(name.rsplit(".", 1)[-1], name)
    # A package's name is refused where it can only mean the package: in an import, a name
    # or a string, not as another object's attribute (torch.backends.cudnn is torch's own).
    attribute_leaves = {leaf: name for leaf, name in leaves.items() if "." in name}
    nodes = list(_walk_imported_code(tree))
    aliases = _import_aliases(nodes)
    # Names the module defines itself and never imports (a helper ``def rms_norm``): what
    # they are bound to is scanned where it is bound.
    own = _own_names(nodes) - set(aliases)
    shared = _shared_names(nodes, set(aliases))
    module_names = {a.asname or a.name.split(".")[0] for node in nodes
                    if isinstance(node, ast.Import) for a in node.names}
    parents = {id(child): node for node in nodes for child in ast.iter_child_nodes(node)}
    docstrings = _docstrings(tree)
    findings: list[Finding] = []

    def add(rule: str, what: str, node: ast.AST) -> None:
        finding = Finding(rule, what, getattr(node, "lineno", 0))
        if all((f.rule, f.what) != (rule, what) for f in findings):
            findings.append(finding)

    def attribute(node: ast.AST, value: ast.expr | None, attr: str) -> None:
        """``value.attr``; ``value`` None for a pattern ``case C(attr=x)``, which reads the
        attribute of whatever it matches."""
        if attr in attribute_leaves:
            add("forbidden-call", f"names forbidden {leaves[attr]}", node)
        if value is None:
            if attr in _PATTERN_ATTRIBUTES:
                add("tampering", f"reads .{attr} in a pattern", node)
            return
        dotted = _dotted(node, aliases)
        if attr in _TAMPER_ATTRIBUTES or (
                attr == "system" and _dotted(value, aliases) != "platform"):
            add("tampering", f"uses .{attr}", node)
        elif attr == "modules" and not _called(node, parents):
            add("tampering", "uses .modules (sys.modules by another route)", node)
        elif any(f".{dotted}".endswith(f".{t}") for t in _TAMPER_DOTTED):
            add("tampering", f"uses {dotted}", node)

    for node in nodes:
        access = _attribute(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for module in _import_paths(node):
                parts = module.split(".")
                for part in parts:
                    if part in leaves:
                        add("forbidden-call", f"imports forbidden {leaves[part]}", node)
                if parts[0] in _TAMPER_MODULES or any(p in _TAMPER_ATTRIBUTES for p in parts) \
                        or any(_in_path(module, t) for t in _TAMPER_DOTTED | _TAMPER_PACKAGES):
                    add("tampering", f"imports {module}", node)
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                add("tampering", f"imports * from {node.module}: its names cannot be told "
                    "from modules", node)
        elif isinstance(node, ast.Name):
            if node.id in leaves and node.id not in own:
                add("forbidden-call", f"names forbidden {leaves[node.id]}", node)
            if node.id in _TAMPER_NAMES or node.id in _TAMPER_BUILTINS:
                add("tampering", f"uses {node.id}", node)
            parent = parents.get(id(node))
            if node.id in _DYNAMIC_ATTRIBUTE and not (
                    isinstance(parent, ast.Call) and parent.func is node):
                add("tampering", f"passes {node.id} around as a value", node)
            if node.id in module_names and isinstance(node.ctx, ast.Load) \
                    and not _attribute_base(node, parent):
                add("tampering", f"passes the module {node.id} around as a value", node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _DYNAMIC_ATTRIBUTE and access is None:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                add("tampering", f"calls {node.func.id} with a computed attribute name", node)
            else:
                add("tampering", f"calls {node.func.id}", node)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and node.slice.value in _TAMPER_NAMES:
            add("tampering", f"uses [{node.slice.value!r}]", node)
        elif isinstance(node, ast.keyword) and _unpickles(node):
            add("tampering", f"unpickles ({node.arg}=): a call of anything by name", node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            for leaf, full in leaves.items():
                if _spells(node.value, leaf):
                    add("forbidden-call", f"spells forbidden {full} in a string ({leaf!r})",
                        node)
            if node.value == "aten" or node.value.startswith(("aten::", "aten.")):
                add("tampering", f"names ATen operators in a string ({node.value!r})", node)
        elif isinstance(node, ast.MatchClass):
            for attr in node.kwd_attrs:
                attribute(node, None, attr)
        if access is not None:
            value, attr = access
            attribute(node, value, attr)
            if isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)) \
                    and _patches(value, shared):
                add("tampering", f"assigns to {ast.unparse(node)}, an attribute of an imported "
                    "module, a class or an object the scan cannot follow", node)
    findings.sort(key=lambda f: (f.rule != "forbidden-call", f.line))
    return findings


def _import_paths(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted modules (and ``module.name`` pairs) an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not node.module:
        return [a.name for a in node.names]
    return [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]


def _in_path(dotted: str, target: str) -> bool:
    """Whether ``target`` (``os.system``) is a run of whole names in ``dotted``."""
    return f".{target}." in f".{dotted}."


def _attribute(node: ast.AST) -> tuple[ast.expr, str] | None:
    """``(x, "name")`` for ``x.name`` and for ``getattr(x, "name"[, default])``, which is the
    same access spelled differently; None for anything else."""
    if isinstance(node, ast.Attribute):
        return node.value, node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == "getattr" and len(node.args) in (2, 3) and not node.keywords \
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
            and not any(isinstance(a, ast.Starred) for a in node.args):
        return node.args[0], node.args[1].value
    return None


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str:
    """``os.path.join`` for that chain, its root resolved through the imports (``o.system``
    after ``import os as o`` is ``os.system``); ``?`` stands for a root that is not a name."""
    parts: list[str] = []
    access = _attribute(node)
    while access is not None:
        node, attr = access
        parts.append(attr)
        access = _attribute(node)
    root = aliases.get(node.id, node.id) if isinstance(node, ast.Name) else "?"
    return ".".join([root, *reversed(parts)])


def _root(node: ast.expr) -> ast.expr:
    """The object at the base of a chain of attributes and subscripts."""
    while True:
        access = _attribute(node)
        if access is not None:
            node = access[0]
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return node


def _patches(value: ast.expr, shared: set[str]) -> bool:
    """Whether storing into an attribute of ``value`` may change something the harness shares:
    an imported module (or an alias of one of its attributes), an object's class, or an object
    the scan cannot follow to a name (``[torch.cuda][0]``, ``f()``)."""
    node = value
    while True:
        access = _attribute(node)
        if access is not None:
            node, attr = access
            if attr in _CLASS_ATTRIBUTES:
                return True
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    return not isinstance(node, ast.Name) or node.id in shared


def _shared_names(nodes: list[ast.AST], imported: set[str]) -> set[str]:
    """The imported names, and the names bound to their attributes or to an object's class
    (``E = torch.cuda.Event``, ``T = type(x)``, ``for m in (torch.cuda,)``, ``def f(m=time)``,
    ``with torch.cuda as m``), transitively."""
    bindings: list[tuple[str, ast.expr]] = []
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bindings += _pairs(target, node.value)
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            bindings += _pairs(node.target, node.value)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            bindings += _pairs(node.optional_vars, node.context_expr)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) \
                and isinstance(node.iter, (ast.Tuple, ast.List, ast.Set)):
            bindings += [(n.id, elt) for elt in node.iter.elts for n in ast.walk(node.target)
                         if isinstance(n, ast.Name)]
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            bindings += [(a.arg, d) for a, d in zip(positional[::-1], node.defaults[::-1])]
            bindings += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults)
                         if d is not None]
    shared, grown = set(imported), True
    while grown:
        grown = False
        for name, value in bindings:
            if name not in shared and _is_chain(value) and _patches(value, shared):
                shared.add(name)
                grown = True
    return shared


def _pairs(target: ast.expr, value: ast.expr) -> list[tuple[str, ast.expr]]:
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        return [pair for t, v in zip(target.elts, value.elts) for pair in _pairs(t, v)]
    return []


def _is_chain(node: ast.expr) -> bool:
    """A name, ``type(x)``, or attributes and subscripts of one: no call hands back a new object."""
    root = _root(node)
    return isinstance(root, ast.Name) or (
        isinstance(root, ast.Call) and isinstance(root.func, ast.Name) and root.func.id == "type")


def _attribute_base(node: ast.Name, parent: ast.AST | None) -> bool:
    """Whether the module ``node`` is only looked into here (``torch.x``, ``getattr(torch, "x")``,
    ``hasattr``), not handed on."""
    if isinstance(parent, ast.Attribute):
        return parent.value is node
    return isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) \
        and parent.func.id in ("getattr", "hasattr") and bool(parent.args) \
        and parent.args[0] is node


def _called(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    parent = parents.get(id(node))
    return isinstance(parent, ast.Call) and parent.func is node


def _unpickles(keyword: ast.keyword) -> bool:
    """``allow_pickle=`` not False, ``weights_only=`` not True, or any ``pickle_module=``."""
    value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
    return (keyword.arg == "allow_pickle" and value is not False) \
        or (keyword.arg == "weights_only" and value is not True) \
        or keyword.arg == "pickle_module"


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


def _spells(text: str, leaf: str) -> bool:
    """``text`` is a name or a dotted path (no spaces) with ``leaf`` as one of its parts:
    ``"aten::rms_norm"``, ``"flash_attn.cute"``; not prose (``"faster than cudnn"``) nor a
    longer name (``"mylib::rms_norm_fwd"``). Strings are a backstop: the tripwires trip a
    name however it was assembled."""
    return not any(c.isspace() for c in text) and leaf in re.split(r"\W+", text)


def _own_names(nodes: list[ast.AST]) -> set[str]:
    """Every name the module binds by a definition, an assignment or a parameter."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _import_aliases(nodes: list[ast.AST]) -> dict[str, str]:
    """Each name an import binds (``torch``, ``tl``, ``F``...) and the dotted path it stands
    for: assigning into them is patching, and ``o.system`` is ``os.system`` for ``import os as
    o``."""
    aliases: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module or "")
            for a in node.names:
                if a.name != "*":
                    aliases[a.asname or a.name] = f"{prefix}.{a.name}" if prefix else a.name
    return aliases


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
