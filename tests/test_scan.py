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
    "import torch\n" + MAIN.replace("__name__ == '__main__'", "'__main__' == __name__"),
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
