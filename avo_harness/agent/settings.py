"""The agent's options (``--avo-agent-*``): declared, read and validated with every other
option in ``options.py`` (``settings_of(config).agent``); kept here for importers."""
from __future__ import annotations

from ..options import AgentSettings, read_agent_settings

__all__ = ["AgentSettings", "read_agent_settings"]
