"""avo-harness: pytest-native evolutionary optimisation of GPU kernels.

The public API: the Task API for defining a kind of kernel. Everything else is
driven through pytest (``pytest candidates/...``; see README.md).
"""
from __future__ import annotations

from .tasks import BenchConfig, Call, Case, Task, get_task, task_names

__all__ = ["BenchConfig", "Call", "Case", "Task", "get_task", "task_names"]
__version__ = "0.1.0"
