"""The fake Messages API: it checks requests as the real one does, plays its script, and
serves from the command line."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from avo_harness.agent.client import MessagesClient
from avo_harness.agent.fake_server import FakeMessagesAPI, demo_script

HELLO = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def post(url: str, body: dict[str, Any], key: bool = True,
         path: str = "/v1/messages") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST",
                                     headers={"x-api-key": "k"} if key else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_requests_are_checked_as_the_api_would() -> None:
    unanswered = {**HELLO, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "x",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "no result"}]}]}
    script = [{"reply": [{"type": "text", "text": "one"}], "expect": "hello there"}]
    with FakeMessagesAPI(script) as api:
        assert post(api.url, HELLO, key=False) == (401, {"type": "error", "error": {
            "type": "authentication_error", "message": "x-api-key header is required"}})
        status, body = post(api.url, unanswered)
        assert status == 400 and "tool_use ids were found without tool_result blocks " \
                                 "immediately after: t1" in body["error"]["message"]
        assert post(api.url, {"model": "m"})[1]["error"]["message"] == "max_tokens: Field " \
                                                                       "required"
        assert post(api.url, HELLO, path="/v1/complete")[0] == 404
        status, body = post(api.url, HELLO)
        assert status == 400 and "reply 1 expects 'hello there'" in body["error"]["message"]
        status, body = post(api.url, {**HELLO, "messages": [{"role": "user",
                                                             "content": "hello there"}]})
        assert status == 200 and body["content"] == [{"type": "text", "text": "one"}]
        status, body = post(api.url, HELLO)
        assert "the script has no reply 2 (it has 1)" in body["error"]["message"]
        assert [r["had_key"] for r in api.requests] == [False] + [True] * 5  # not the 404


def test_replies_get_ids_a_stop_reason_and_usage_with_cache_reads() -> None:
    tool = [{"type": "tool_use", "name": "read_lineage", "input": {}}]
    cached = {**HELLO, "system": [{"type": "text", "text": "s" * 400,
                                   "cache_control": {"type": "ephemeral"}}]}
    with FakeMessagesAPI([{"reply": tool}, {"reply": [{"type": "text", "text": "done"}]}]) as api:
        first = post(api.url, cached)[1]
        second = post(api.url, cached)[1]
    assert first["content"][0]["id"] == "toolu_fake_0_0" and first["stop_reason"] == "tool_use"
    assert second["stop_reason"] == "end_turn" and second["model"] == "m"
    prompt = first["usage"]["cache_creation_input_tokens"]
    assert prompt > 100 and first["usage"]["cache_read_input_tokens"] == 0
    assert second["usage"]["cache_read_input_tokens"] == prompt


def test_the_command_line_serves_the_demo(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "requests.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "avo_harness.agent.fake_server", "--log",
                               str(log)], stdout=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()  # type: ignore[union-attr]
        url = banner.split()[4]
        assert banner.startswith(f"fake Messages API on {url} ({len(demo_script())} scripted")
        assert f"ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=offline pytest --avo-evolve " \
               "--avo-operator anthropic" in server.stdout.readline()  # type: ignore[union-attr]
        monkeypatch.setenv("ANTHROPIC_API_KEY", "offline")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        reply = MessagesClient("claude-opus-5-5").create(
            system=[{"type": "text", "text": "s"}], max_tokens=100,
            messages=[{"role": "user", "content": [{"type": "text", "text": "Generation 1"}]}])
        assert [b["type"] for b in reply.content] == ["text", "tool_use"]
        assert reply.content[1]["name"] == "read_lineage"
    finally:
        server.terminate()
    assert server.wait(timeout=10) == 0
    assert json.loads(log.read_text())["messages"][0]["content"][0]["text"] == "Generation 1"


def test_a_bad_script_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[{")
    result = subprocess.run([sys.executable, "-m", "avo_harness.agent.fake_server", "--script",
                             str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("python -m avo_harness.agent.fake_server:"
                                                     " error: --script: Expecting")
