"""The Task API's registry, and what every task declares."""
from __future__ import annotations

import importlib

import pytest
import torch

from avo_harness.tasks import get_task, task_names


def test_tasks_are_found_and_unknown_ones_named() -> None:
    assert {"attention", "rmsnorm"} <= set(task_names())
    with pytest.raises(LookupError, match="known tasks: attention"):
        get_task("matmul")


@pytest.mark.parametrize("name", task_names())
def test_every_forbidden_torch_callable_and_operator_exists(name: str) -> None:
    """A misspelt name would forbid nothing."""
    task = get_task(name)
    for dotted in task.forbidden:
        if dotted.startswith("torch."):
            owner, attr = dotted.rsplit(".", 1)
            module, *path = owner.split(".")
            obj = importlib.import_module(module)
            for i, part in enumerate(path):  # a submodule torch does not import is imported
                obj = getattr(obj, part, None) or importlib.import_module(
                    ".".join([module, *path[:i + 1]]))
            assert hasattr(obj, attr), dotted
    assert all(hasattr(torch.ops.aten, op) for op in task.forbidden_ops)
