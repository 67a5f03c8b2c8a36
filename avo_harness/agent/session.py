"""One agent step: a conversation in which the model reads, drafts, evaluates, repairs and
submits, through the tools, until a submission is accepted or a limit runs out.

The stable prefix (tools and system prompt) is cached for an hour; the conversation so far is
cached up to its last block on every call, so each turn pays full price only for what is new.
When the conversation nears the model's context window, its oldest tool results are cut
(``context.trim``).
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from .budget import MIN_OUTPUT, Meter
from .client import ContextOverflow, MessagesClient, StepEnd
from .context import DEFAULT_WINDOW, tokens, trim
from .prompts import NUDGE
from .tools import TOOLS, Submission, Workspace


class Declined(Exception):
    """The model stopped without a tool call and will not go on (a refusal)."""


class Session:
    def __init__(self, client: MessagesClient, system: str, workspace: Workspace, meter: Meter,
                 log: Callable[[str], None], window: int = DEFAULT_WINDOW) -> None:
        self.client = client
        self.window = window
        self.system = [{"type": "text", "text": system,
                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        self.tools = [tool.spec() for tool in TOOLS.values()]
        self.workspace = workspace
        self.meter = meter
        self.log = log
        self.messages: list[dict[str, Any]] = []
        self.notes: list[str] = []  # what the model said between its tool calls
        self._stable_tokens = tokens(system) + tokens(self.tools)

    def run(self, opening: str) -> Submission:
        """The accepted submission; raises OutOfBudget, APIFailure or Declined otherwise."""
        self.messages.append({"role": "user", "content": [{"type": "text", "text": opening}]})
        while True:
            max_tokens = self._allowance()
            try:
                reply = self.client.create(system=self.system, tools=self.tools,
                                           messages=_cached_to_here(self.messages),
                                           max_tokens=max_tokens, deadline=self.meter.deadline)
            except ContextOverflow as exc:
                self._shrink_window(exc)
                continue
            cost = self.meter.add(reply.usage)
            content = _sendable(reply.content, _tool_use_ids(self.messages))
            uses = [b for b in content if b.get("type") == "tool_use"]
            self._show(content, uses, cost)
            if reply.stop_reason == "refusal":
                raise Declined("the model declined to continue (stop reason: refusal)")
            if not content:
                # The API may answer with no content (after tool results, say); an empty
                # assistant message would make the next request invalid.
                if self.messages[-1]["content"][-1] != {"type": "text", "text": NUDGE}:
                    self.messages[-1]["content"].append({"type": "text", "text": NUDGE})
                continue
            self.messages.append({"role": "assistant", "content": content})
            if not uses:
                self.messages.append({"role": "user", "content": [{"type": "text",
                                                                   "text": NUDGE}]})
                continue
            results = []
            for use in uses:
                if use is content[-1] and reply.stop_reason == "max_tokens":
                    text, error = (f"not run: the reply reached its limit of {max_tokens:,} "
                                   "output tokens inside this call, so its input is cut off. "
                                   "Send it again, shorter (edit_candidate changes a part)."), True
                else:
                    text, error = self.workspace.call(use.get("name", ""), use.get("input"))
                if error:
                    self.log(f"  {use.get('name')}: error returned to the model: {text[:200]}")
                results.append({"type": "tool_result", "tool_use_id": use["id"], "content": text,
                                **({"is_error": True} if error else {})})
                if self.workspace.submission is not None:
                    break  # the step is over: later calls of this turn would be wasted
            self.messages.append({"role": "user", "content": results})
            if self.workspace.submission is not None:
                return self.workspace.submission

    def _shrink_window(self, overflow: ContextOverflow) -> None:
        """After "prompt is too long: N tokens > M maximum", the window becomes what M is
        in this session's own token estimate, so the next call is cut to fit; an answer
        without counts, or one that would not shrink the window, ends the step."""
        if not overflow.sent or not overflow.maximum:
            raise overflow
        estimate = self._stable_tokens + tokens(self.messages)
        ratio = max(1.0, overflow.sent / max(1, estimate))
        window = int(overflow.maximum / ratio * 0.95)
        if window >= self.window:
            raise overflow
        self.log(f"  context: the API counted {overflow.sent:,} tokens over its "
                 f"{overflow.maximum:,}; the window is now {window:,} of this session's")
        self.window = window

    def _allowance(self) -> int:
        """The next call's output limit, within the budgets and the context window; the
        oldest tool results are cut first if the conversation would not fit."""
        wanted = self.meter.allowance(self._stable_tokens, tokens(self.messages))
        if self._stable_tokens + tokens(self.messages) + wanted > self.window:
            cut = trim(self.messages, self._stable_tokens + wanted, self.window)
            self.log(f"  context: {cut} old tool results and drafts cut to stay within the "
                     f"{self.window:,}-token window")
        room = self.window - self._stable_tokens - tokens(self.messages)
        if room < MIN_OUTPUT:
            raise StepEnd(f"the conversation fills the {self.window:,}-token context window")
        return min(wanted, room)

    def _show(self, content: list[dict[str, Any]], uses: list[dict[str, Any]],
              cost: float) -> None:
        text = " ".join(b.get("text", "") for b in content if b.get("type") == "text").strip()
        if text:
            self.notes.append(text)
        calls = ", ".join(f"{u.get('name')}({_brief(u.get('input'))})" for u in uses) or "-"
        said = f" | {' '.join(text.split())[:160]}" if text else ""
        self.log(f"  turn {self.meter.turns} (${cost:.4f}): {calls}{said}")


def _tool_use_ids(messages: list[dict[str, Any]]) -> set[str]:
    return {b.get("id") for m in messages if m["role"] == "assistant" for b in m["content"]
            if b.get("type") == "tool_use"}


def _sendable(content: list[dict[str, Any]], used: set[str]) -> list[dict[str, Any]]:
    """A reply as it can be sent back: the API refuses a conversation with an empty text
    block ("text content blocks must be non-empty") or a tool_use id used twice, and a
    model (or a proxy) may send either. Empty text goes; a repeated id gets a fresh one,
    which its tool_result then answers."""
    kept, used = [], set(used)
    for block in content:
        if block.get("type") == "text" and not str(block.get("text", "")).strip():
            continue
        if block.get("type") == "tool_use":
            given = str(block.get("id") or "toolu")
            fresh, n = given, 1
            while fresh in used:
                fresh, n = f"{given}_{n}", n + 1
            used.add(fresh)
            block = {**block, "id": fresh}
        kept.append(block)
    return kept


def _brief(args: Any) -> str:
    if not isinstance(args, dict):
        return repr(args)[:40]
    return ", ".join(f"{k}=<{len(v)} chars>" if isinstance(v, str) and len(v) > 40
                     else f"{k}={v!r}" for k, v in args.items())


def _cached_to_here(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with a cache breakpoint on the last block of the last one: the next call
    reads everything up to here from the cache. Breakpoints are not part of the cache key,
    so moving it each turn costs nothing."""
    marked = messages[:-1] + [copy.deepcopy(messages[-1])]
    marked[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return marked
