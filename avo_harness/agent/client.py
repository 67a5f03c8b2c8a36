"""The one place that talks to the Messages API, through the official ``anthropic`` SDK.

The key comes from ``ANTHROPIC_API_KEY`` only and goes to the SDK and nowhere else: it is
never logged, printed or stored. The SDK's own retries are off (``max_retries=0``) so that
every retry is visible and bounded here: 429, 529, other 5xx answers and connection errors
are tried again after what ``retry-after`` says, or else after an exponential backoff with
jitter; so is a 200 whose body is not a message (malformed JSON, missing fields). Any other
error fails at once, in one line. Each call's timeout is what the step has left, so a slow
reply cannot hold a step past its limit: that, and a prompt over the model's context window,
end the step (:class:`StepEnd`), not the run.
"""
from __future__ import annotations

import email.utils
import os
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .pricing import Usage


class Unavailable(Exception):
    """No key in the environment, or no SDK installed: the operator cannot be built."""


class APIFailure(Exception):
    """The API refused the request, or kept failing past the retries; the message is one line."""


class StepEnd(APIFailure):
    """The call cannot be made or finished within this step (its time ran out, or the prompt
    is over the context window): the step ends, the run goes on."""


class ContextOverflow(StepEnd):
    """The API refused the prompt as over the model's context window; ``sent`` (the
    prompt's tokens) and ``maximum`` (the window) are its counts when the answer gives them."""

    def __init__(self, message: str, sent: int | None, maximum: int | None) -> None:
        super().__init__(message)
        self.sent = sent
        self.maximum = maximum


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before trying a failed call again."""

    attempts: int = 8
    base_s: float = 1.0
    max_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (0-based): doubling, capped, with jitter."""
        return min(self.max_s, self.base_s * 2**retry) * (1 - 0.25 * self.rng.random())


@dataclass(frozen=True)
class Reply:
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500  # 529 is "overloaded"


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` in seconds
    or as an HTTP date), or None."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            date = email.utils.parsedate_tz(value)
            if date is not None:
                return max(0.0, email.utils.mktime_tz(date) - time.time())
    return None


#: The longest one call may take: the SDK's own default timeout.
MAX_CALL_S = 600.0


class MessagesClient:
    """Calls ``messages.create`` for one model, with retries."""

    def __init__(self, model: str, retry: RetryPolicy = RetryPolicy(), *,
                 log: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise Unavailable("ANTHROPIC_API_KEY is not set; export your API key (or choose "
                              "--avo-operator builtin)")
        try:
            import anthropic
        except ImportError:
            raise Unavailable("the anthropic package is not installed "
                              "(pip install anthropic)") from None
        self._sdk = anthropic
        self._client = anthropic.Anthropic(api_key=key, max_retries=0,
                                           base_url=os.environ.get("ANTHROPIC_BASE_URL") or None)
        self.model = model
        self.retry = retry
        self.log = log
        self.sleep = sleep
        self.clock = clock

    def create(self, *, system: list[dict[str, Any]], messages: list[dict[str, Any]],
               max_tokens: int, tools: list[dict[str, Any]] | None = None,
               deadline: float | None = None) -> Reply:
        """One reply; retried as the module says, but never waiting past ``deadline``
        (a ``time.monotonic()`` instant)."""
        sdk = self._sdk
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        attempt = 0
        while True:
            attempt += 1
            timeout = MAX_CALL_S if deadline is None else min(MAX_CALL_S,
                                                              deadline - self.clock())
            if timeout <= 0:
                raise StepEnd("step time limit reached before the call")
            try:
                message = self._client.messages.create(
                    model=self.model, max_tokens=max_tokens, system=system, messages=messages,
                    timeout=timeout, **extra)
                return Reply([block.to_dict() for block in message.content],
                             message.stop_reason, Usage.from_api(message.usage.to_dict()))
            except sdk.APIStatusError as exc:
                failure = _describe(exc)
                if _overflow(exc):
                    raise ContextOverflow(failure, *_overflow_counts(failure)) from None
                if not _retryable(exc.status_code):
                    raise APIFailure(failure) from None
                wait = _retry_after(exc.response.headers)
            except sdk.APITimeoutError:
                if deadline is not None and self.clock() >= deadline - 0.5:
                    raise StepEnd(f"step time limit reached: no answer within {timeout:,.0f} "
                                  "s") from None
                failure = f"anthropic API: no answer within {timeout:,.0f} s"
                wait = None
            except sdk.APIConnectionError as exc:
                failure = f"anthropic API: no answer from {self._client.base_url} ({exc})"
                wait = None
            except (ValueError, TypeError, AttributeError, KeyError,
                    sdk.APIResponseValidationError) as exc:  # JSONDecodeError is a ValueError
                detail = " ".join(str(exc).split())[:200]
                failure = f"anthropic API: malformed answer ({type(exc).__name__}: {detail})"
                wait = None
            if attempt == self.retry.attempts:
                raise APIFailure(f"{failure}; gave up after {attempt} attempts")
            wait = self.retry.backoff(attempt - 1) if wait is None else wait
            if deadline is not None and self.clock() + wait > deadline:
                raise StepEnd(f"{failure}; waiting {wait:.1f} s more would pass the step's "
                              "time limit")
            self.log(f"{failure}; retrying in {wait:.1f} s (attempt {attempt + 1} of "
                     f"{self.retry.attempts})")
            self.sleep(wait)


def _overflow(exc: Any) -> bool:
    """A 400 saying the prompt (or the prompt and the output asked for) is over the model's
    context window."""
    text = _describe(exc)
    return exc.status_code == 400 and ("prompt is too long" in text
                                       or "exceed context limit" in text)


def _overflow_counts(text: str) -> tuple[int | None, int | None]:
    """The prompt's tokens and the window from "N tokens > M maximum" or "N + K > M"."""
    number = r"(\d[\d,]*)"
    found = re.search(rf"{number} tokens > {number}", text) \
        or re.search(rf"{number} \+ \d[\d,]* > {number}", text)
    if found is None:
        return None, None
    prompt, window = (int(g.replace(",", "")) for g in found.groups())
    return prompt, window


def _describe(exc: Any) -> str:
    """``anthropic API: 429 rate_limit_error: <message>`` from an SDK status error."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = error.get("type") or type(exc).__name__
    message = " ".join(str(error.get("message") or exc.message).split())
    return f"anthropic API: {exc.status_code} {kind}: {message[:300]}"
