"""The static first filter: forbidden library calls and the means of tampering."""
from __future__ import annotations

from pathlib import Path

import pytest

from avo_harness.judge.scan import scan_file, scan_source
from avo_harness.tasks import get_task

FORBIDDEN = get_task("attention").forbidden
# A self-test comparing with the library: never run when the harness imports the module.
MAIN = ("if __name__ == '__main__':\n    import sys, torch\n"
        "    print(torch.nn.functional.scaled_dot_product_attention, sys.argv)\n")


@pytest.mark.parametrize("source, rule, words", [
    ("import torch\ny = torch.nn.functional.scaled_dot_product_attention", "forbidden-call",
     "scaled_dot_product_attention"),
    ("from flash_attn import flash_attn_func", "forbidden-call", "flash_attn"),
    ("name = 'torch._C._nn.scaled_dot_product_attention'", "forbidden-call", "in a string"),
    ("op = 'aten::_scaled_dot_product_flash_attention'", "forbidden-call", "in a string"),
    ("import importlib\nm = importlib.import_module('flash_attn.cute')", "forbidden-call",
     "in a string ('flash_attn')"),
    # A name the module binds is scanned where it is bound; an imported one is the library's.
    ("import torch\nrms = torch.nn.functional.scaled_dot_product_attention\n"
     "def scaled_dot_product_attention(q):\n    return rms(q)", "forbidden-call",
     "names forbidden torch.nn.functional.scaled_dot_product_attention"),
    ("from torch.nn.functional import scaled_dot_product_attention as s\ny = s",
     "forbidden-call", "imports forbidden"),
    ("import cudnn", "forbidden-call", "imports forbidden cudnn"),
    ("import torch\nf = getattr(torch, 'nn' + '')", "tampering", "computed attribute name"),
    ("import time\ntime.perf_counter = None", "tampering", "assigns to time.perf_counter"),
    ("from torch import cuda\ncuda.synchronize = print", "tampering", "assigns to"),
    ("import sys\nsys._getframe(1)", "tampering", "imports sys"),
    ("x = eval('1')", "tampering", "uses eval"),
    ("import os\nos._exit(0)", "tampering", "._exit"),
    ("import ctypes", "tampering", "imports ctypes"),
    ("import os\nos.system('kill 1')", "tampering", "uses .system"),
    ("import os as o\no.system('kill 1')", "tampering", "uses .system"),
    ("from os import system", "tampering", "imports os.system"),
    ("from os import fork", "tampering", "imports os.fork"),
    ("import os\nos.posix_spawn('/bin/sh', [], {})", "tampering", ".posix_spawn"),
    ("from gc import get_objects", "tampering", "imports gc"),
    ("import pytest\npytest.skip()", "tampering", "imports pytest"),
    ("def f(e):\n    return e.__traceback__.tb_frame", "tampering", ".tb_frame"),
    # A __main__ block is scanned when the module can make itself __main__ ...
    (f"__name__ = '__main__'\n{MAIN}", "forbidden-call", "scaled_dot_product_attention"),
    (f"for __name__ in ['__main__']:\n    pass\n{MAIN}", "forbidden-call", "scaled"),
    (f"from os import sep as __name__\n{MAIN}", "forbidden-call", "scaled"),
    # ... and when it is not the plain top-level test.
    (MAIN.replace("==", "!="), "forbidden-call", "scaled"),
    (f"{MAIN}else:\n    pass\n", "forbidden-call", "scaled"),
    ("def f():\n    " + MAIN.replace("\n", "\n    "), "forbidden-call", "scaled"),
])
def test_scan_finds(source: str, rule: str, words: str) -> None:
    findings = scan_source(source, FORBIDDEN)
    assert findings, source
    assert any(f.rule == rule and words in str(f) for f in findings), findings


@pytest.mark.parametrize("source", [
    '"""Unlike scaled_dot_product_attention, this docstring may name it."""\nimport torch',
    "import torch\nout = torch.compile(lambda x: x)",
    "import triton\nimport triton.language as tl\nimport math\nimport os\nx = os.environ",
    "import torch\ndt = getattr(torch, 'float16')\nobj = type('A', (), {})()\nobj.x = 1",
    "import torch\n" + MAIN,
    "import platform\nname = platform.system()",
    # A CUDA or C++ kernel of its own: compiled inside the sandbox, its native code bound by it.
    "from torch.utils.cpp_extension import load_inline\nm = load_inline('m', 'int f();')",
    "import torch\n" + MAIN.replace("__name__ == '__main__'", "'__main__' == __name__"),
    # Found rejected by a review of honest code: prose and longer names in strings, a helper
    # named as a library function, torch's own cudnn settings read.
    "import logging\nlogging.getLogger('x').info('faster than cudnn for Transformer shapes')",
    "import torch\nlib = torch.library.custom_op('kern::scaled_dot_product_attention_fwd', "
    "mutates_args=())",
    "def scaled_dot_product_attention(q, k, v):\n    return q\n"
    "def attention(q, k, v):\n    return scaled_dot_product_attention(q, k, v)",
    "import torch\nfast = torch.backends.cudnn.is_available()",
])
def test_scan_passes_honest_code(source: str) -> None:
    assert scan_source(source, FORBIDDEN) == []


def test_the_seeds_are_clean() -> None:
    root = Path(__file__).resolve().parent.parent / "candidates"
    for path in root.glob("*/*.py"):
        task = get_task(path.parent.name)
        assert scan_source(path.read_text(), task.forbidden) == [], path


def test_scan_file_follows_local_imports(tmp_path: Path) -> None:
    folder = tmp_path / "candidates" / "attention"
    folder.mkdir(parents=True)
    (folder / "_clean.py").write_text("import _dirty\nimport math\n")
    (folder / "_dirty.py").write_text("import _clean\nimport ctypes\n")  # a cycle
    (folder / "_library.py").write_text(
        "import torch\nf = torch.nn.functional.scaled_dot_product_attention\n")
    beside = folder / "beside.py"
    beside.write_text("import torch\nfrom _clean import x\n")
    packaged = folder / "packaged.py"
    packaged.write_text("from candidates.attention import _library\n")

    found = scan_file(beside, FORBIDDEN, [tmp_path])
    assert [(f.rule, f.file, f.line) for f in found] == [("tampering", "_dirty.py", 2)]
    assert str(found[0]) == "_dirty.py line 2: imports ctypes"
    found = scan_file(packaged, FORBIDDEN, [tmp_path])
    assert [(f.rule, f.file) for f in found] == [("forbidden-call", "_library.py")]
    assert scan_file(packaged, FORBIDDEN, []) == []  # outside the roots it is not ours

    package = folder / "_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import impl\n")
    (package / "impl.py").write_text("import gc\n")
    (folder / "nested.py").write_text("import _pkg\n")
    found = scan_file(folder / "nested.py", FORBIDDEN, [tmp_path])
    assert [(f.rule, f.file) for f in found] == [("tampering", "impl.py")]
    (folder / "deep.py").write_text("from ........ import x\n")  # above the filesystem root
    assert scan_file(folder / "deep.py", FORBIDDEN, [tmp_path]) == []


# Holes an attacker found, each a route the scan once let through.
@pytest.mark.parametrize("source, words", [
    # sys, builtins and sys.modules reached as an attribute of another module.
    ("import os\nos.sys.modules['ctypes'] = None", ".sys"),
    ("import torch\nmodules = torch.sys", ".sys"),
    ("import numpy as np\nframes = np.sys._current_frames()", ".sys"),
    ("def f(x):\n    return x.modules['ctypes']", "sys.modules by another route"),
    ("import os\nb = os.__builtins__", ".__builtins__"),
    ("import torch\nb = torch._dynamo.utils.builtins", ".builtins"),
    ("loader = __loader__", "__loader__"),
    ("loader = __spec__.loader", "__spec__"),
    ("b = len.__self__\nb.exec('1')", ".__self__"),  # a builtin's __self__ is builtins
    ("import torch\nm = torch._ops.importlib", ".importlib"),
    # Imports by a name built at run time, through torch's own helpers.
    ("import torch\nm = torch.ops.import_module('torch.nn.' + 'x')", ".import_module"),
    ("import torch\nf = torch._utils._import_dotted_name('torch.' + 'x')", "._import_dotted_name"),
    ("import numpy as np\nc = np.ctypeslib.ctypes", ".ctypes"),
    ("import numpy as np\nc = np.zeros(1).ctypes._ctypes", "._ctypes"),
    # getattr with a constant name is the attribute it names; getattr as a value is computed.
    ("import os\ngetattr(os, 'system')('id')", ".system"),
    ("import os\ngetattr(os, 'popen')('id')", ".popen"),
    ("def f(e):\n    return getattr(e.__traceback__, 'tb_frame')", ".tb_frame"),
    ("s = getattr(object, '__subclasses__')()", ".__subclasses__"),
    ("import torch\ng = getattr\nm = g(torch, 's' + 'ys')", "passes getattr around"),
    ("import functools\nm = functools.reduce(getattr, ['os', 'system'], object)", "getattr"),
    ("import torch\nop = torch.ops.aten.__getattr__('x' + 'y')", ".__getattr__"),
    ("locals()['__builtins__']['__import__']('ctypes')", "['__builtins__']"),
    ("import operator, os\noperator.methodcaller('system', 'id')(os)", ".methodcaller"),
    ("import string\nf = string.Formatter().get_field('0.sys', [object], {})", ".get_field"),
    # os.system by any route, the shell's other doors, and raw writes to the worker's pipe.
    ("import torch\ntorch.os.system('id')", ".system"),
    ("import posix\nposix.system('id')", "imports posix"),
    ("from os import *\nsystem('id')", "imports * from os"),
    ("from torch import *\nx = load('f')", "imports * from torch"),
    ("import pty", "imports pty"),
    ("import runpy", "imports runpy"),
    ("import shutil\nshutil.rmtree('/')", "imports shutil"),
    ("import asyncio", "imports asyncio"),
    ("import _xxsubinterpreters", "imports _xxsubinterpreters"),  # no audit hook in there
    ("import os\nos.write(3, b'forged reply')", "uses os.write"),
    ("import os\nos.dup2(1, 3)", "uses os.dup2"),
    ("import os\nf = os.fdopen(3, 'wb')", "uses os.fdopen"),
    # Frames without an audit event the candidate raises, and tracers.
    ("import logging\nf = logging.currentframe()", ".currentframe"),
    ("from logging import currentframe", "imports logging.currentframe"),
    ("import torch\ncb = torch._jit_internal.createResolutionCallbackFromFrame(1)",
     ".createResolutionCallbackFromFrame"),
    ("from torch._jit_internal import createResolutionCallbackFromEnv", "_jit_internal"),
    ("import torch\ntorch._dynamo.eval_frame.set_eval_frame(None)", ".set_eval_frame"),
    ("async def a():\n    yield 1\nf = a().ag_frame", ".ag_frame"),
    ("breakpoint()", "uses breakpoint"),
    # Found by a red team: a .pth file's import lines run; a host socket through logging; a
    # forbidden operator's decomposition called around the dispatcher's backend keys.
    ("import site\nsite.addsitedir('.')", "imports site"),
    ("from logging.handlers import SysLogHandler", "logging.handlers"),
    ("import torch\nop = torch._library.utils.lookup_op('aten::x.default')", ".lookup_op"),
    ("import torch\ntorch.ops.aten.mm.default.decompose(1, 2)", ".decompose"),
    ("import pdb", "imports pdb"),
    ("import bdb", "imports bdb"),
    # Compilers and loaders that run any command or load code from outside the candidate.
    ("import torch\ntorch._inductor.cpp_builder.run_compile_cmd('id', '.')", ".run_compile_cmd"),
    ("from torch._inductor.cpp_builder import run_command_and_check", "run_command_and_check"),
    ("import triton\ntriton.runtime.build.subprocess.check_call(['id'])", ".subprocess"),
    ("import triton\ntriton.runtime.build._build('m', 'm.c', '.', '', [], [])", "._build"),
    ("from triton.runtime import build", "triton.runtime.build"),
    ("import torch\nm = torch._inductor.codecache.PyCodeCache.load('')", ".PyCodeCache"),
    ("import torch\ntorch.ops.load_library('/tmp/x.so')", ".load_library"),
    ("import torch\nm = torch.hub.load('/tmp', 'm', source='local')", "torch.hub"),
    # Unpickling and logging.config call anything by name.
    ("import torch, io\nx = torch.load(io.BytesIO(b''))", "torch.load"),
    ("import torch as t, io\nx = t.load(io.BytesIO(b''), weights_only=False)", "unpickles"),
    ("import numpy as np\nx = np.load('f.npy', allow_pickle=True)", "unpickles"),
    ("import yaml", "imports yaml"),
    ("import logging.config", "imports logging.config"),
    ("import logging\nlogging.config.dictConfig({})", ".dictConfig"),
    # Kernels for ATen operators and dispatch modes answer the harness's own calls.
    ("import torch\nlib = torch.library.Library('aten', 'IMPL')", "ATen operators in a string"),
    ("import torch\n@torch.library.impl('aten::clone', 'CPU')\ndef f(x):\n    return x",
     "ATen operators in a string"),
    ("from torch.utils._python_dispatch import TorchDispatchMode", "TorchDispatchMode"),
    # Patching through an alias, a class, or a module handed to a function.
    ("import torch\nE = torch.cuda.Event\nE.elapsed_time = lambda *a: 0.0", "assigns to E."),
    ("def f(q):\n    type(q).clone = lambda s: s", "assigns to type(q).clone"),
    ("def f(q):\n    q.__class__.clone = lambda s: s", "assigns to q.__class__.clone"),
    ("def f(q):\n    T = type(q)\n    T.clone = lambda s: s", "assigns to T.clone"),
    ("import time\ndef patch(m):\n    m.perf_counter = lambda: 0.0\npatch(time)",
     "passes the module time around"),
    ("import unittest.mock", "imports unittest.mock"),
    ("import torch\n[torch.cuda][0].synchronize = print", "assigns to [torch.cuda][0]"),
    ("import torch\nfor m in (torch.cuda,):\n    m.synchronize = print", "assigns to m."),
    ("import torch\ndef f(m=torch.cuda):\n    m.synchronize = print", "assigns to m."),
    ("import torch\nwith torch.cuda.device(0) as d, torch.cuda as m:\n    m.synchronize = print",
     "assigns to m."),
    # A class pattern reads attributes by name, with no attribute in sight.
    ("import torch\nmatch torch.os:\n    case object(system=run):\n        run('id')",
     "reads .system in a pattern"),
    ("def f(m):\n    match m:\n        case object(sys=s):\n            return s", ".sys"),
    # Code run from a string: eval by another name; the worker's own __main__.
    ("import timeit\ntimeit.timeit('import ctypes', number=1)", "imports timeit"),
    ("import torch\nt = torch.utils.benchmark.Timer('import ctypes')", "torch.utils.benchmark"),
    ("import typing\ndef f(x: 'eval(1)'):\n    pass\ntyping.get_type_hints(f)",
     ".get_type_hints"),
    ("import torch\nf = torch.fx.graph_module._forward_from_src('', {})", "._forward_from_src"),
    ("import __main__", "imports __main__"),
])
def test_scan_finds_tampering_routes(source: str, words: str) -> None:
    findings = scan_source(source, FORBIDDEN)
    assert any(f.rule == "tampering" and words in str(f) for f in findings), findings


@pytest.mark.parametrize("source", [
    "def f(net):\n    return [m for m in net.modules()]",  # nn.Module.modules() is a method
    "import torch\nF = torch.nn.functional\ny = F.relu\nc = torch.cuda.is_available()",
    "import triton.language as tl\nx = tl.load\ns = tl.sum",
    "import triton\nd = triton.runtime.driver.active.get_current_device()",
    "f = open('/tmp/x', 'w')\nf.write('x')",
    "import torch\nt = torch.jit.trace\nfrom torch.profiler import profile",
    "import torch\ny = torch.ops.aten.mm.default",
    "import numpy as np\nx = np.load('f.npy')",
    "import logging\nlog = logging.getLogger('x')",
    "import tempfile\nd = tempfile.mkdtemp()",
    "import torch\nclass A:\n    def __init__(self):\n        self.dtype = torch.float32",
    ("import torch\nclass B(torch.nn.Module):\n    def __init__(self, dtype=torch.float16):\n"
     "        super().__init__()\n        self.dtype = dtype"),
    "def f(shape):\n    match shape:\n        case (b, h, n, d):\n            return b * h * n * d",
])
def test_scan_passes_honest_lookalikes(source: str) -> None:
    assert scan_source(source, FORBIDDEN) == []


@pytest.mark.parametrize("source", [
    "from torch.nn.attention.flex_attention import flex_attention",
    "import torch.nn.attention.flex_attention as fa",
    "from torch.nn.attention import flex_attention",
    "import torch\nout = torch.nn.attention.flex_attention.flex_attention",
])
def test_a_forbidden_module_is_matched_by_its_last_name(source: str) -> None:
    """A forbidden entry may be a module (flex attention); any import path through it counts."""
    findings = scan_source(source, ("torch.nn.attention.flex_attention",))
    assert [f.rule for f in findings][:1] == ["forbidden-call"], findings
    assert "torch.nn.attention.flex_attention" in str(findings[0])


@pytest.mark.parametrize("source, line, words", [
    ("x = 1\ndef f(:\n    pass\n", 2, "SyntaxError"),
    ("x = 1\n\0import ctypes\n", 0, "null bytes"),
    ("x = " + "-" * 100_000 + "1\n", 0, "MemoryError"),
    ("y = f" + "()" * 100_000 + "\n", 0, "RecursionError"),
    ("import time\ntime" + ".a" * 2_000 + " = 1\n", 0, "RecursionError"),  # too deep to report
])
def test_what_cannot_be_parsed_is_refused(source: str, line: int, words: str) -> None:
    """Fail closed: an empty list means clean, never "could not read it"."""
    findings = scan_source(source, FORBIDDEN)
    assert [(f.rule, f.line) for f in findings] == [("unparsable", line)], findings
    assert words in findings[0].what and "the source" in findings[0].what


def test_a_coding_line_in_the_text_counts_as_it_will_on_disk() -> None:
    """The text is saved as UTF-8 and imported as its coding line says: UTF-7 turns this
    "comment" into an import."""
    findings = scan_source("# coding: utf-7\n# +AAo-import ctypes\n", FORBIDDEN)
    assert [(f.rule, f.what) for f in findings] == [("tampering", "imports ctypes")]


@pytest.mark.parametrize("data, rule, words", [
    # One non-UTF-8 byte (in a name) with a latin-1 coding line: Python imports it, but read
    # with errors="replace" it broke the parse, and the scan used to wave it through.
    (b"# -*- coding: latin-1 -*-\ncaf\xe9 = 1\nimport ctypes\n", "tampering", "imports ctypes"),
    (b"# coding: utf-7\n# +AAo-import ctypes\n", "tampering", "imports ctypes"),
    (b"\xef\xbb\xbfimport ctypes\n", "tampering", "imports ctypes"),  # a BOM
    (b"x = 1\ny = 2\nname = '\xe9'\n", "unparsable",
     "line 3: candidate.py cannot be scanned: UnicodeDecodeError"),
    (b"# coding: rot13\nvzcbeg pglcrf\n", "unparsable", "LookupError"),  # not a text codec
    (b"# coding: no-such-codec\nx = 1\n", "unparsable", "SyntaxError: unknown encoding"),
    (b"x = 1\n\0import ctypes\n", "unparsable", "null bytes"),
])
def test_scan_file_reads_as_the_import_does(tmp_path: Path, data: bytes, rule: str,
                                            words: str) -> None:
    path = tmp_path / "candidate.py"
    path.write_bytes(data)
    found = scan_file(path, FORBIDDEN, [])
    assert [f.rule for f in found] == [rule], found
    assert words in str(found[0]) and found[0].file is None


def test_a_helper_the_scan_cannot_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "_helper.py").write_bytes(b"x = 1\nname = '\xe9'\n")
    (tmp_path / "_broken.py").write_text("def f(:\n")
    (tmp_path / "_fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (tmp_path / "_cached.pyc").write_bytes(b"\0" * 16)  # imported when no _cached.py is there
    path = tmp_path / "candidate.py"
    path.write_text("import _helper\nimport _broken\nimport _fast\nimport _cached\n")
    found = scan_file(path, FORBIDDEN, [])
    assert sorted((f.rule, f.file, f.line) for f in found) == [
        ("unparsable", "_broken.py", 1), ("unparsable", "_cached.pyc", 0),
        ("unparsable", "_fast.cpython-311-x86_64-linux-gnu.so", 0),
        ("unparsable", "_helper.py", 2)]
    assert any(str(f).startswith("_helper.py line 2: _helper.py cannot be scanned: "
                                 "UnicodeDecodeError") for f in found), found


HONEST = Path(__file__).resolve().parent / "adversarial"


@pytest.mark.parametrize("path", [
    *sorted((HONEST / "honest").glob("*.py")),
    *sorted((HONEST.parent.parent / "candidates").glob("*/*.py")),
], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_honest_code_is_clean_under_the_attention_rules(path: Path) -> None:
    """Honest kernels pass every rule, the attention task's forbidden list included. The honest
    fragments are appended to ``_base.py``, as ``adversary.candidate`` builds them."""
    if path.parent.name == "honest":
        source = (HONEST / "_base.py").read_text() + "\n\n" + path.read_text()
        assert scan_source(source, FORBIDDEN) == []
    else:
        assert scan_file(path, FORBIDDEN, [path.parents[2]]) == []
