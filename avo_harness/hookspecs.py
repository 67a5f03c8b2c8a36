"""Hooks that avo-harness adds to pytest (registered by the plugin)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .evolve.operators import OperatorFactory


@pytest.hookspec
def pytest_avo_operators(config: pytest.Config) -> dict[str, OperatorFactory]:
    """Return ``{name: factory}`` of variation operators; ``factory(config)`` builds one."""
