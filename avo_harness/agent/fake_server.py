"""A local stand-in for the Messages API: real HTTP on 127.0.0.1, scripted replies.

Tests point the real ``anthropic`` client at it (``base_url`` or ``ANTHROPIC_BASE_URL``); from
the command line it serves the same way, so the whole loop can be tried offline::

    python -m avo_harness.agent.fake_server [--script FILE] [--port N] [--log FILE]

A script is a JSON list; each entry answers one request, in order:

* ``{"reply": [block, ...], "usage": {...}, "stop_reason": "...", "expect": "text"}``: a
  message. ``tool_use`` blocks get ids. ``usage`` defaults to a rough count of the request
  and the reply (a prompt prefix seen before counts as a cache read when the request asks
  for caching). ``stop_reason`` defaults to ``tool_use`` if the reply calls a tool, else
  ``end_turn``. With ``expect``, the request's last message must contain that text, or the
  answer is a 400 saying the conversation went off the script.
* ``{"status": 429, "retry_after": "0", "message": "..."}``: an error answer (with a
  ``retry-after`` header if given).
* ``{"disconnect": true}``: the connection is closed without an answer.
* ``{"raw": "text"}``: a 200 whose body is that text (a malformed answer).
* ``"delay": seconds`` in any entry: the answer comes that much later (a slow reply).

Like the real API it answers 401 without a key header, and 400 when a ``tool_use`` is not
answered by a ``tool_result`` in the next message, when a message other than the last has no
content, and (with ``window``) when the prompt, or the prompt and ``max_tokens``, exceed the
context window (counted as its usage is). It never records the key. Without
``--script`` it plays :func:`demo_script`.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class FakeMessagesAPI:
    """The server; ``with FakeMessagesAPI(script) as api: ... api.url ... api.requests``."""

    def __init__(self, script: list[dict[str, Any]], port: int = 0,
                 log: Path | None = None, window: int | None = None) -> None:
        self.script = list(script)
        self.window = window
        self.pause = threading.local()  # the delay of the answer this thread is giving
        self.requests: list[dict[str, Any]] = []  # every request body, with "had_key"
        self.log = log
        self._lock = threading.Lock()
        self._prefix_tokens = 0
        self._position = 0  # the next script entry; requests refused before it do not count
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def left(self) -> int:
        return len(self.script) - self._position

    def start(self) -> FakeMessagesAPI:
        # A short poll interval: stopping waits for the loop to look.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in this thread (the command line) until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, had_key: bool, body: dict[str, Any]) -> tuple[int, dict[str, str],
                                                                    dict[str, Any] | str] | None:
        """Status, headers and JSON (or raw text) of the answer to one request; None to hang
        up."""
        with self._lock:
            self.requests.append({"n": len(self.requests), "had_key": had_key, **body})
            if self.log is not None:
                with self.log.open("a") as out:
                    out.write(json.dumps(self.requests[-1]) + "\n")
            if not had_key:
                return _error(401, "x-api-key header is required")
            problem = _invalid(body) or self._too_long(body)
            if problem:
                return _error(400, problem)
            n = self._position
            if n >= len(self.script):
                return _error(400, f"fake server: the script has no reply {n + 1} (it has "
                                   f"{len(self.script)})")
            step = self.script[n]
            expected = step.get("expect")
            said = _last_text(body)
            if expected and expected not in said:
                return _error(400, f"fake server: reply {n + 1} expects {expected!r} in the "
                                   f"last message, which says: {said[:300]!r}")
            self._position += 1
            self.pause.seconds = float(step.get("delay", 0))
            if "raw" in step:
                return 200, {}, str(step["raw"])
            if step.get("disconnect"):
                return None
            if "status" in step:
                headers = {"retry-after": str(step["retry_after"])} \
                    if "retry_after" in step else {}
                status, _, payload = _error(step["status"], step.get("message", "scripted"))
                return status, headers, payload
            return 200, {}, self._message(n, step, body)

    def _too_long(self, body: dict[str, Any]) -> str | None:
        if self.window is None:
            return None
        prompt = _prompt_tokens(body)
        if prompt > self.window:
            return f"prompt is too long: {prompt} tokens > {self.window} maximum"
        if prompt + body["max_tokens"] > self.window:
            return (f"input length and `max_tokens` exceed context limit: {prompt} + "
                    f"{body['max_tokens']} > {self.window}, decrease input length or "
                    "`max_tokens` and try again")
        return None

    def _message(self, n: int, step: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        content = []
        for i, block in enumerate(step["reply"]):
            block = dict(block)
            if block["type"] == "tool_use":
                block.setdefault("id", f"toolu_fake_{n}_{i}")
            content.append(block)
        calls = any(b["type"] == "tool_use" for b in content)
        return {"id": f"msg_fake_{n}", "type": "message", "role": "assistant",
                "model": body.get("model", "fake"), "content": content,
                "stop_reason": step.get("stop_reason", "tool_use" if calls else "end_turn"),
                "stop_sequence": None, "usage": step.get("usage") or self._usage(body, content)}

    def _usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        """About four characters a token; with caching asked for, the part of the prompt
        seen in the previous request is read from the cache and the rest written to it."""
        prompt = _prompt_tokens(body)
        output = len(json.dumps(content)) // 4 + 1
        if "cache_control" not in json.dumps(body):
            return {"input_tokens": prompt, "output_tokens": output}
        cached = min(self._prefix_tokens, prompt)
        self._prefix_tokens = prompt
        return {"input_tokens": 0, "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": prompt - cached, "output_tokens": output}


def _prompt_tokens(body: dict[str, Any]) -> int:
    """About four characters a token."""
    return len(json.dumps([body.get("system"), body.get("tools"), body.get("messages")])) // 4


def _error(status: int, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    kind = _ERROR_TYPES.get(status, "api_error")
    return status, {}, {"type": "error", "error": {"type": kind, "message": message}}


def _invalid(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in the request's structure, or None."""
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    messages = body["messages"]
    seen: set[str] = set()
    for i, message in enumerate(messages):
        content = message.get("content")
        if not content and i + 1 < len(messages):
            return (f"messages.{i}: all messages must have non-empty content except for the "
                    "optional final assistant message")
        blocks = content if isinstance(content, list) else []
        for j, block in enumerate(blocks):
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
            if block.get("type") == "tool_use":
                if block.get("id") in seen:
                    return f"messages.{i}.content.{j}: `tool_use` ids must be unique"
                seen.add(block.get("id"))
        ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if message.get("role") != "assistant" or not ids:
            continue
        after = messages[i + 1]["content"] if i + 1 < len(messages) else []
        answered = {b.get("tool_use_id") for b in after if isinstance(b, dict)
                    and b.get("type") == "tool_result"}
        missing = [x for x in ids if x not in answered]
        if missing and i + 1 < len(messages):
            return (f"messages.{i + 1}: tool_use ids were found without tool_result blocks "
                    f"immediately after: {', '.join(missing)}")
    return None


def _last_text(body: dict[str, Any]) -> str:
    """The text of the request's last message, tool results included."""
    content = body["messages"][-1].get("content", "")
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        inner = block.get("content", block.get("text", ""))
        if isinstance(inner, list):
            inner = " ".join(b.get("text", "") for b in inner)
        parts.append(str(inner))
    return "\n".join(parts)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        fake: FakeMessagesAPI = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._send(*_error(400, f"body is not JSON: {exc}"))
            return
        if self.path.split("?")[0] != "/v1/messages":
            self._send(*_error(404, f"fake server: no endpoint {self.path}"))
            return
        had_key = bool(self.headers.get("x-api-key") or self.headers.get("authorization"))
        fake.pause.seconds = 0.0
        answer = fake.answer(had_key, body)
        time.sleep(fake.pause.seconds)  # outside the lock: other requests are answered
        if answer is None:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(*answer)

    def _send(self, status: int, headers: dict[str, str],
              payload: dict[str, Any] | str) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (its timeout), as it may with the real API

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the requests are in ``FakeMessagesAPI.requests`` and the log file."""


_DEMO_WRONG = '''"""Attention in plain torch and float64, a block of query rows at a time.

The offline demo's candidate (python -m avo_harness.agent.fake_server): simple and exact,
not fast on a GPU.
"""
import torch

ROWS = 512  # query rows per block: bounds the score matrix held at once


def attention(q, k, v, causal=False, sm_scale=None):
    nq, nk = q.shape[2], k.shape[2]
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1).double()
    v = v.repeat_interleave(group, 1).double()
    scale = q.shape[-1] ** -0.5
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    keys = torch.arange(nk, device=q.device)
    for start in range(0, nq, ROWS):
        s = q[:, :, start:start + ROWS].double() @ k.transpose(-1, -2) * scale
        if causal:
            rows = torch.arange(start, min(nq, start + ROWS), device=q.device)
            s = s.masked_fill(keys[None, :] > rows[:, None] + nk - nq, float("-inf"))
        # A row that sees no key is all -inf: softmax makes it NaN, the contract wants zeros.
        out[:, :, start:start + ROWS] = (torch.softmax(s, -1).nan_to_num(0.0) @ v).to(q.dtype)
    return out
'''
_BUG = "    scale = q.shape[-1] ** -0.5\n"
_FIX = "    scale = q.shape[-1] ** -0.5 if sm_scale is None else sm_scale\n"


def demo_script() -> list[dict[str, Any]]:
    """One step of an agent at work: read the lineage, write a candidate that ignores
    ``sm_scale``, evaluate it, read the failure, look up the contract, repair, evaluate
    again, submit."""
    def say(text: str, tool: str, **args: Any) -> list[dict[str, Any]]:
        return [{"type": "text", "text": text}, {"type": "tool_use", "name": tool, "input": args}]

    return [
        {"reply": say("First, what has been tried.", "read_lineage")},
        {"expect": "committed",
         "reply": say("I will try a plain float64 attention over blocks of query rows.",
                      "write_candidate", source=_DEMO_WRONG)},
        {"expect": "attempt 1 saved", "reply": say("Now the harness.", "evaluate_candidate",
                                                   attempt=1)},
        {"expect": "minimal failing input",
         "reply": say("It is wrong on an input with an explicit sm_scale: the scale is "
                      "hard-wired. Checking the contract.", "search_knowledge",
                      query="sm_scale default contract")},
        {"expect": "sm_scale", "reply": say("sm_scale defaults to 1/sqrt(D) only when it is "
                                            "None. Repairing.", "edit_candidate",
                                            old_text=_BUG, new_text=_FIX)},
        {"expect": "attempt 2 saved", "reply": say("Evaluating the repair.",
                                                   "evaluate_candidate", attempt=2)},
        {"expect": "correctness PASSED",
         "reply": say("It passes; submitting it.", "submit_candidate", attempt=2,
                      rationale="plain float64 attention over blocks of query rows; the first "
                                "draft ignored an explicit sm_scale (caught by the harness), "
                                "repaired")},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avo_harness.agent.fake_server",
                                     description="Serve a scripted Messages API on 127.0.0.1.")
    parser.add_argument("--script", type=Path, help="JSON list of replies (default: a demo "
                        "of one agent step)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--log", type=Path, help="append every request body to this file as "
                        "JSON lines")
    args = parser.parse_args(argv)
    try:
        script = json.loads(args.script.read_text()) if args.script else demo_script()
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"--script: {exc}")
    api = FakeMessagesAPI(script, args.port, args.log)
    print(f"fake Messages API on {api.url} ({len(script)} scripted replies); try the loop "
          f"offline with:\n  ANTHROPIC_BASE_URL={api.url} ANTHROPIC_API_KEY=offline pytest "
          "--avo-evolve --avo-operator anthropic --avo-generations 1", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
