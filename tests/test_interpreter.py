"""The mends of Triton's interpreter: tl.dot on bfloat16 operands multiplies numbers, not the
uint16 words they are stored in, and triton.autotune runs without a GPU driver (checked in
fresh interpreter-mode processes)."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch, triton, triton.language as tl
from avo_harness.judge.interpreter import mend
mend()

@triton.jit
def product(A, B, C, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    m, n, k = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(A + m[:, None] * K + k[None, :])
    b = tl.load(B + k[:, None] * N + n[None, :])
    tl.store(C + m[:, None] * N + n[None, :], tl.dot(a, b))

a, b = torch.randn(16, 32).to(torch.{dtype}), torch.randn(32, 16).to(torch.{dtype})
c = torch.empty(16, 16)
product[(1,)](a, b, c, 16, 16, 32)
print((c - a.float() @ b.float()).abs().max().item())
"""


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_dot_multiplies_the_numbers(dtype: str) -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM.replace("{dtype}", dtype)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # Products of exactly representable numbers, summed in float32.
    assert float(done.stdout.split()[-1]) < 1e-4


AUTOTUNED = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch, triton, triton.language as tl
from avo_harness.judge.interpreter import mend
{mend}

@triton.autotune(configs=[triton.Config({"BLOCK": 16}), triton.Config({"BLOCK": 64})],
                 key=["n"])
@triton.jit
def double(X, Y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(Y + offs, tl.load(X + offs, mask=offs < n) * 2, mask=offs < n)

x = torch.randn(100)
y = torch.empty(100)
double[lambda meta: (triton.cdiv(100, meta["BLOCK"]),)](x, y, 100)
print(torch.equal(y, 2 * x), double.best_config.kwargs["BLOCK"])
"""


def test_autotune_takes_its_first_configuration_without_a_driver() -> None:
    mended = subprocess.run([sys.executable, "-c", AUTOTUNED.replace("{mend}", "mend()")],
                            capture_output=True, text=True, timeout=120)
    assert mended.returncode == 0, mended.stderr
    assert mended.stdout.split() == ["True", "16"]
    # Without the mend the autotuner asks for a GPU driver: what the mend is for.
    plain = subprocess.run([sys.executable, "-c", AUTOTUNED.replace("{mend}", "")],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode != 0 and "active drivers" in plain.stderr
