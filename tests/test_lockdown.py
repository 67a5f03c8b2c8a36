"""The run-time defences of the candidate's process, on their own: each cheat here would
pass the static scan's absence (the sandbox does not scan), so only ``lockdown`` and the
checker's run-time rules can catch it."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from avo_harness.judge.checker import check_case, check_timed
from avo_harness.judge.sandbox import Sandbox, SandboxSettings
from avo_harness.tasks import get_task

TASK = get_task("attention")
CASE = {"B": 1, "Hq": 2, "Hkv": 1, "Nq": 9, "Nk": 13, "D": 32, "dtype": "float16",
        "causal": True, "sm_scale": None, "layout": "bhnd", "spread": 1.0, "seed": 3}
HONEST = (Path(__file__).parent / "adversarial" / "_base.py").read_text() + '''

def attention(q, k, v, causal=False, sm_scale=None):
    {body}
    return _honest(q, k, v, causal, sm_scale)
'''


def _sandbox(tmp_path: Path, body: str, header: str = "") -> Sandbox:
    if "sys." in body and "import sys" not in header:
        header = "import sys\n" + header
    folder = tmp_path / "candidates" / "attention"
    folder.mkdir(parents=True)
    (folder / "seed.py").write_text("# another candidate\n")
    path = folder / "cheat.py"
    path.write_text(header + HONEST.replace("{body}", body))
    return Sandbox(path, "attention", SandboxSettings(
        cuda=False, timeout_s=120, memory_limit_bytes=0, protected=(str(folder.parent),)))


CHEATS = {
    "patched clock": ("import time as _t\n", "_t.perf_counter = lambda: 0.0", "tampering",
                      "replaced time.perf_counter"),
    "frames via a traceback": ("", "try:\n        raise ValueError\n    except ValueError as e:"
                               "\n        e.__traceback__.tb_frame.f_back", "tampering",
                               "reads interpreter frames"),
    "garbage collector": ("import gc\n", "gc.get_objects()", "tampering", "garbage collector"),
    "identity keys": ("", "id(q)", "tampering", "object identity"),
    "write a candidate": ("", "open(__file__.replace('cheat', 'seed'), 'w').write('x')",
                          "tampering", "protected path"),
    "ATen attention by name": ("", "torch.ops.aten.__getattr__('_scaled_dot_product_'"
                               " + 'attention_math')(q, k, v)", "forbidden-call",
                               "_scaled_dot_product_attention_math"),
    "ATen triton attention": ("", "torch.ops.aten._triton_scaled_dot_attention(q, k, v)",
                              "forbidden-call", "_triton_scaled_dot_attention"),
    "functional attention": ("", "torch.nn.functional.scaled_dot_product_attention(q, k, v)",
                             "forbidden-call", "scaled_dot_product_attention"),
    "import a library attention": ("", "__import__('xformers')", "forbidden-call",
                                   "xformers"),
    "a wrapper that looks like torch's": (
        "import functools\n", "torch.manual_seed = functools.wraps(torch.manual_seed)("
        "lambda seed: None)", "tampering", "replaced torch.manual_seed"),
    "a library class, subclassed": (
        "", "class Mine(torch.nn.MultiheadAttention):\n        pass\n    Mine(16, 2)",
        "forbidden-call", "torch.nn.MultiheadAttention"),
    "the parent's memory": ("import os\n", "open(f'/proc/{os.getppid()}/mem', 'rb')",
                            "tampering", "another process's memory"),
    "the parent's memory, by a relative path": (
        "import os\n", "os.chdir('/proc')\n    open(f'{os.getppid()}/environ', 'rb')",
        "tampering", "another process's memory"),
    "a shell command": ("import os\n", "os.system('true')", "tampering",
                        "runs a shell command"),
    "a process through the standard library": (
        "import subprocess\n", "subprocess.run(['true'])", "tampering", "starts a process"),
    "a shell through a library's helper": (
        "import torch.utils.collect_env as ce\n", "ce.run('true')", "tampering",
        "starts a process"),
    "a shell from a thread": ("import asyncio\nimport os\n",
                              "asyncio.run(asyncio.to_thread(os.system, 'true'))",
                              "tampering", "runs a shell command"),
    "the parent's memory through a directory descriptor": (
        "import os\n", "fd = os.open('/proc', os.O_RDONLY)\n"
        "    os.open(f'{os.getppid()}/mem', os.O_RDONLY, dir_fd=fd)", "tampering",
        "another process's memory"),
    "a candidate written through a directory descriptor": (
        "import os\n", "fd = os.open(os.path.dirname(__file__), os.O_RDONLY)\n"
        "    os.open('seed.py', os.O_WRONLY | os.O_TRUNC, dir_fd=fd)", "tampering",
        "relative path"),
    "a fork": ("import os\n", "os.fork() or os._exit(0)", "tampering", "forks its process"),
    "frames from code compiled at run time": (
        "", "exec('import sys; sys._getframe(0)')", "tampering", "reads interpreter frames"),
    "exit with status 0": ("import os\n", "os._exit(0)", "crash", "status 0"),
    # The holes of the judge that lived in the candidate's interpreter:
    "a function mode left on at import": (
        "from torch.overrides import TorchFunctionMode\nTorchFunctionMode().__enter__()\n",
        "pass", "tampering", "TorchFunctionMode"),
    "a dispatch mode left on by a call": (
        "from torch.utils._python_dispatch import TorchDispatchMode\n"
        "class Spy(TorchDispatchMode):\n"
        "    def __torch_dispatch__(self, f, t, a=(), k=None):\n"
        "        return f(*a, **(k or {}))\n",
        "Spy().__enter__()", "tampering", "TorchDispatchMode"),
    "a method set on Tensor over TensorBase's": (
        "", "torch.Tensor.copy_ = lambda self, src, non_blocking=False: self",
        "tampering", "torch.Tensor.copy_"),
    "frames through logging": ("import logging\n", "logging.currentframe().f_back",
                               "tampering", "reads interpreter frames"),
    "the lockdown's tables rebound": (
        "import os\n", "m = os.sys.modules['avo_harness.judge.lockdown']\n"
        "    m._PROCESS_EVENTS = m._ALWAYS = m._CANDIDATE_EVENTS = {}\n"
        "    os.system('true')", "tampering", "runs a shell command"),
    "a shell through inductor's compiler runner": (
        "import os\nfrom torch._inductor.cpp_builder import run_compile_cmd\n",
        "run_compile_cmd('sh -c true', os.getcwd())", "tampering", "which is not a compiler"),
    "a payload written to its folder and imported": (
        "import os\n", "open(os.path.join(os.getcwd(), 'payload.py'), 'w').write("
        "'import sys\\ndef peek():\\n    return sys._getframe(1)\\n')\n"
        "    sys.path.insert(0, os.getcwd())\n    __import__('payload').peek()",
        "tampering", "reads interpreter frames"),
    "a forbidden operator's decomposition": (
        "import torch._library.utils as lu\n",
        "lu.lookup_op('aten::_scaled_dot_product_attention_math.default').decompose("
        "q.float(), k.float(), v.float(), None, 0.0, False, None)", "forbidden-call",
        "_scaled_dot_product_attention_math"),
    "a host's Unix socket through logging": (
        "import logging.handlers\n", "logging.handlers.SysLogHandler(address='/tmp/no.sock')",
        "tampering", "network connection"),
    "the worker's socket opened by number": (
        "import json, sys\n", "open(json.loads(sys.argv[1])['socket'], 'wb', closefd=False)",
        "tampering", "file descriptor"),
    "a .pth file's import lines": (
        "import os, site\n", "d = os.getcwd()\n"
        "    open(os.path.join(d, 'x.pth'), 'w').write('import ctypes; ctypes.CDLL(None)\\n')\n"
        "    site.addsitedir(d)", "tampering", "ctypes"),
    "a link whose destination is the project": (
        "import os\n", "src = os.path.join(os.getcwd(), 'x')\n    open(src, 'w').close()\n"
        "    os.link(src, os.path.join(os.path.dirname(__file__), 'evil.py'))",
        "tampering", "protected path"),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_runtime_defence_catches(tmp_path: Path, name: str) -> None:
    header, body, rule, words = CHEATS[name]
    sandbox = _sandbox(tmp_path, body, header)
    try:
        verdict = check_case(TASK, sandbox, CASE, "cpu")
    finally:
        sandbox.close()
    assert (verdict.rule, verdict.passed) == (rule, False), verdict
    assert words in verdict.message
    assert (tmp_path / "candidates" / "attention" / "seed.py").read_text() == \
        "# another candidate\n"


def test_output_finished_by_a_thread_is_a_deferred_write(tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path, "", header="import threading\n")
    source = sandbox.path.read_text().replace(
        "    return _honest(q, k, v, causal, sm_scale)",
        "    out = torch.zeros_like(q)\n"
        "    threading.Timer(0.015, lambda: out.copy_(_honest(q, k, v, causal, sm_scale)))"
        ".start()\n    return out")
    sandbox.path.write_text(source)
    try:
        verdict = check_case(TASK, sandbox, CASE, "cpu")
    finally:
        sandbox.close()
    # Seen as a late write when the thread finishes within the settling time (the usual
    # case), else as a wrong output: rejected either way, never passed.
    assert verdict.rule in ("deferred-write", "tolerance") and not verdict.passed, verdict


def test_a_helper_beside_the_candidate_is_the_candidate_s_code(tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path, "_helper.peek()", header="import _helper\n")
    (sandbox.path.parent / "_helper.py").write_text(
        "import sys\ndef peek():\n    return sys._getframe(1).f_locals\n")
    try:
        verdict = check_case(TASK, sandbox, CASE, "cpu")
    finally:
        sandbox.close()
    assert verdict.rule == "tampering" and "interpreter frames" in verdict.message, verdict


def test_torch_s_own_import_time_wrapping_is_not_tampering(tmp_path: Path) -> None:
    # torch._dynamo wraps torch.manual_seed when imported (torch.compile imports it);
    # torch.ao subclasses nn.MultiheadAttention, which is a tripwire here.
    sandbox = _sandbox(tmp_path, "pass", header="import torch._dynamo\n"
                       "import torch.ao.nn.quantizable\n")
    try:
        verdict = check_case(TASK, sandbox, CASE, "cpu")
    finally:
        sandbox.close()
    assert verdict.passed, verdict


@pytest.mark.parametrize("origin, refused", [
    ("_dynamo/debug_utils.py", False), ("_inductor/codecache.py", False),
    ("_dynamo/eval_frame.py", True), (None, True)])
def test_who_may_start_a_compiler(tmp_path: Path, origin: str | None, refused: bool) -> None:
    # While torch.compile compiles, dynamo's debug_utils runs `nvcc --version` (seen on an
    # H200, torch 2.11: the honest compiled_math candidate was refused for it). The rule
    # holds the code that raised the event: a file of torch's named here, or the candidate.
    import torch

    from avo_harness.judge import lockdown

    candidate = tmp_path / "cheat.py"
    nvcc = str(tmp_path / "nvcc")
    record: list[tuple[str, str]] = []
    hook = lockdown._audit_hook(str(candidate), (), record, frozenset({nvcc}))
    where = str(Path(torch.__file__).parent / origin) if origin else str(candidate)
    code = compile("hook('subprocess.Popen', (nvcc, [nvcc, '--version'], None, None))",
                   where, "exec")
    if refused:  # the message names the code that did it
        name = Path(where).name
        with pytest.raises(lockdown.Refused, match=f"starts a process .*, from {name}\\)"):
            exec(code, {"hook": hook, "nvcc": nvcc})
    else:
        exec(code, {"hook": hook, "nvcc": nvcc})
    assert bool(record) == refused, record


def test_a_library_s_own_audit_hook_at_import_is_not_tampering(tmp_path: Path) -> None:
    # filelock (torch.compile's caches lock with it) adds an audit hook when first imported,
    # from 3.30 on Python 3.12 (seen on an H200: honest torch.compile code refused); the
    # child imports it before the lockdown.
    sandbox = _sandbox(tmp_path, "filelock.FileLock(os.path.join(os.getcwd(), 'x.lock'))",
                       header="import os\nimport filelock\n")
    try:
        verdict = check_case(TASK, sandbox, CASE, "cpu")
    finally:
        sandbox.close()
    assert verdict.passed, verdict


def test_honest_candidate_passes_and_its_timed_rounds_are_verified(tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path, "pass")
    try:
        assert check_case(TASK, sandbox, CASE, "cpu").passed
        verdict, times = check_timed(TASK, sandbox, CASE, "cpu", floor_s=0.0,
                                     rng=random.Random(1))
        assert verdict.passed, verdict
        assert len(times) == 3
        # The same honest candidate, held to a floor no real call can beat, is a fault.
        verdict, _ = check_timed(TASK, sandbox, CASE, "cpu", floor_s=100.0,
                                 rng=random.Random(2))
        assert verdict.rule == "impossible-speed"
    finally:
        sandbox.close()


def test_a_cache_keyed_by_address_fails_a_timed_round(tmp_path: Path) -> None:
    sandbox = _sandbox(tmp_path, "")
    sandbox.path.write_text(sandbox.path.read_text().replace(
        "    return _honest(q, k, v, causal, sm_scale)",
        "    key = v.data_ptr()\n    if key not in CACHE:\n"
        "        CACHE[key] = _honest(q, k, v, causal, sm_scale)\n    return CACHE[key].clone()")
        + "\nCACHE = {}\n")
    try:
        verdict, _ = check_timed(TASK, sandbox, CASE, "cpu", floor_s=0.0, rng=random.Random(3))
    finally:
        sandbox.close()
    assert verdict.rule == "tolerance" and "round" in verdict.message, verdict


@pytest.mark.slow
def test_plain_math_under_torch_compile_is_not_rewritten_into_a_forbidden_kernel(
        tmp_path: Path) -> None:
    # Inductor's pattern matcher fuses this very expression into SDPA, which is tripped here:
    # the candidate's process turns that pass off, so honest compiled code stays honest.
    sandbox = _sandbox(tmp_path, "return _compiled(q, k, v, causal, sm_scale)")
    sandbox.path.write_text(sandbox.path.read_text() + '''

def _plain(q, k, v, causal, sm_scale):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1).float(), v.repeat_interleave(g, 1).float()
    p = (q.float() @ k.transpose(-1, -2) * 0.125).softmax(-1)
    return (p @ v).to(q.dtype)


_compiled = torch.compile(_plain, dynamic=False)
''')
    case = {**CASE, "D": 64, "Hq": 2, "Hkv": 2, "causal": False, "Nq": 32, "Nk": 32}
    try:
        verdict = check_case(TASK, sandbox, case, "cpu")
    finally:
        sandbox.close()
    assert verdict.passed, verdict
