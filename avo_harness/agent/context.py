"""Keeping a step's conversation within the model's context window.

A long step (many evaluations, whole modules written) outgrows any window; the API then
refuses the call with a 400. Before that, the oldest tool results and drafts are cut to a
line that says what they were: the model keeps what it did and what it learnt in its own
notes, the harness keeps every attempt, and the latest results stay whole.
"""
from __future__ import annotations

import json
from typing import Any

#: Context windows, in tokens, of the models this operator knows (prompt and output
#: together). A model not listed gets the default: the smallest of these, so that a
#: conversation is cut early rather than refused.
WINDOWS = {"claude-opus-5-5": 200_000, "claude-sonnet-5-5": 200_000,
           "claude-fable-5-2": 200_000, "claude-haiku-5-5": 200_000}
DEFAULT_WINDOW = min(WINDOWS.values())
#: Cutting goes down to this share of the window, so that it happens once in a while (each
#: cut re-writes the cache from the first block it changes), not on every call.
REFILL = 0.6
#: Tool results and inputs shorter than this are kept whole: cutting them saves nothing.
_SMALL = 400


def window_of(model: str) -> int:
    return WINDOWS.get(model, DEFAULT_WINDOW)


def tokens(value: Any) -> int:
    """An estimate that errs high: about 3.5 to 4 characters a token for code and English."""
    return len(value if isinstance(value, str) else json.dumps(value)) // 3


def trim(messages: list[dict[str, Any]], fixed: int, window: int) -> int:
    """Cut the oldest tool results and tool inputs, in place, until ``fixed`` tokens (the
    system prompt, tools and the output asked for) and the messages fit in ``REFILL`` of
    ``window``; the last two messages (the model's latest call and its results) stay whole.
    Returns how many blocks were cut."""
    cut = 0
    goal = int(window * REFILL) - fixed
    total = tokens(messages)
    for message in messages[:-2]:
        for block in message["content"]:
            if total <= goal:
                return cut
            before = tokens(block)
            if _shorten(block):
                cut += 1
                total -= before - tokens(block)
    return cut


def _shorten(block: dict[str, Any]) -> bool:
    """A tool result becomes its first line and a note; a tool call's long string inputs
    (whole modules) become their size. False when there is nothing worth cutting."""
    if block.get("type") == "tool_result" and isinstance(block.get("content"), str) \
            and len(block["content"]) > _SMALL:
        text = block["content"]
        block["content"] = (f"{text.splitlines()[0][:200]} ... [the rest of this result "
                            f"({len(text):,} characters) was cut to keep the conversation "
                            "within the context window]")
        return True
    if block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
        long = {k: v for k, v in block["input"].items() if isinstance(v, str) and len(v) > _SMALL}
        for key, value in long.items():
            block["input"][key] = (f"[{len(value):,} characters, cut to keep the conversation "
                                   "within the context window]")
        return bool(long)
    return False
