"""The API client against a real HTTP server on 127.0.0.1: retries, backoff, errors, the key."""
from __future__ import annotations

import time
from typing import Any

import pytest

from avo_harness.agent.client import APIFailure, MessagesClient, RetryPolicy, Unavailable
from avo_harness.agent.fake_server import FakeMessagesAPI

KEY = "sk-ant-test-key-never-stored-0123456789"
SYSTEM = [{"type": "text", "text": "be brief"}]
HELLO = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
REPLY = {"reply": [{"type": "text", "text": "hi"}],
         "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 7}}


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client of a fake server playing ``script``, with its logged lines and waits."""

    def connect(script: list[dict[str, Any]], **policy: Any) -> tuple[MessagesClient,
                                                                        FakeMessagesAPI,
                                                                        list[str],
                                                                        list[float]]:
        api = FakeMessagesAPI(script).start()
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        lines: list[str] = []
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        client = MessagesClient("claude-opus-5-5", RetryPolicy(**policy), log=lines.append,
                                sleep=sleep)
        servers.append(api)
        return client, api, lines, waits

    servers: list[FakeMessagesAPI] = []
    yield connect
    for api in servers:
        api.stop()


def test_rate_limits_overload_server_errors_and_drops_are_retried(connect: Any) -> None:
    client, api, lines, waits = connect(
        [{"status": 429, "retry_after": "0"}, {"status": 529, "retry_after": "0.3"},
         {"disconnect": True}, {"status": 500}, {"status": 503}, REPLY], base_s=0.01)
    started = time.monotonic()
    reply = client.create(system=SYSTEM, messages=HELLO, max_tokens=100)
    assert reply.content == [{"type": "text", "text": "hi"}]
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input, reply.usage.cache_read, reply.usage.output) == (3, 7, 2)
    assert len(api.requests) == 6 and api.left == 0
    # retry-after is obeyed as given; without it the wait doubles (with up to 25% jitter).
    assert waits[:2] == [0.0, 0.3]
    for retry, wait in zip((2, 3, 4), waits[2:], strict=True):
        assert 0.75 * 0.01 * 2**retry <= wait <= 0.01 * 2**retry
    assert time.monotonic() - started >= 0.3
    assert ["429 rate_limit_error" in lines[0], "529 overloaded_error" in lines[1],
            "no answer from" in lines[2], "500 api_error" in lines[3]] == [True] * 4
    assert all("retrying in" in line for line in lines)


def test_other_errors_fail_at_once_in_one_line(connect: Any) -> None:
    client, api, lines, _ = connect([{"status": 400, "message": "messages: bad\n  thing"}])
    with pytest.raises(APIFailure) as info:
        client.create(system=SYSTEM, messages=HELLO, max_tokens=100)
    assert str(info.value) == "anthropic API: 400 invalid_request_error: messages: bad thing"
    assert len(api.requests) == 1 and not lines


def test_retries_end_after_the_last_attempt(connect: Any) -> None:
    client, api, _, _ = connect([{"status": 529, "retry_after": "0"}] * 3, attempts=3)
    with pytest.raises(APIFailure, match="529 overloaded_error: scripted; gave up after 3 "
                                         "attempts"):
        client.create(system=SYSTEM, messages=HELLO, max_tokens=100)
    assert len(api.requests) == 3


def test_a_wait_past_the_step_deadline_is_not_taken(connect: Any) -> None:
    client, api, _, waits = connect([{"status": 429, "retry_after": "30"}, REPLY])
    with pytest.raises(APIFailure, match="waiting 30.0 s more would pass the step's time"):
        client.create(system=SYSTEM, messages=HELLO, max_tokens=100,
                      deadline=time.monotonic() + 5)
    assert waits == [] and len(api.requests) == 1


def test_the_key_is_sent_as_a_header_and_appears_nowhere_else(connect: Any) -> None:
    client, api, lines, _ = connect([{"status": 500, "retry_after": "0"},
                                     {"status": 401, "message": "invalid x-api-key"}])
    with pytest.raises(APIFailure) as info:
        client.create(system=SYSTEM, messages=HELLO, max_tokens=100)
    assert "401 authentication_error" in str(info.value)
    assert all(request["had_key"] for request in api.requests)
    assert KEY not in repr(api.requests) + str(info.value) + "".join(lines) + repr(client.__dict__)


def test_without_a_key_there_is_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(Unavailable, match="ANTHROPIC_API_KEY is not set"):
        MessagesClient("claude-opus-5-5")


@pytest.mark.parametrize("body", ["not json", '{"type": "message", "content": null}'])
def test_a_malformed_answer_is_retried_in_one_line(connect: Any, body: str) -> None:
    client, api, lines, _ = connect([{"raw": body}, REPLY], base_s=0.01)
    reply = client.create(system=SYSTEM, messages=HELLO, max_tokens=10)
    assert reply.content == [{"type": "text", "text": "hi"}] and api.left == 0
    (line,) = lines
    assert line.startswith("anthropic API: malformed answer (") and "\n" not in line
