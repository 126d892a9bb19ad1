"""The LLM emulator on its own: wire formats, scripting, errors and bad requests (plain httpx)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from openpista_testing.emulator import ErrorReply, LlmEmulator, TextReply

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "model": "claude-3-5-haiku-latest", "max_tokens": 100}


def post(emu: LlmEmulator, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{emu.base_url}{path}", content=content, headers=headers, timeout=10)


def sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event name, data) of each SSE event, in order."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event"), fields["data"]))
    return events


def test_openai_text_whole_answer(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("hello", usage=(12, 3))
    body = post(llm_emulator, "/v1/chat/completions", CHAT).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_openai_stream_framing_and_usage(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"})], text="ok", chunk_size=3)
    llm_emulator.reply_text("no usage")
    with_usage = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = post(llm_emulator, "/v1/chat/completions", with_usage)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "system_run"
    assert calls[0]["id"]
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"command": "ls"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0

    plain = sse(post(llm_emulator, "/v1/chat/completions", {**CHAT, "stream": True}))
    assert all("usage" not in json.loads(data) for _, data in plain[:-1])


def test_anthropic_whole_answer_with_tool_use(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"})], text="Let me look")
    body = post(llm_emulator, "/v1/messages", MESSAGES).json()
    assert body["type"] == "message"
    assert body["stop_reason"] == "tool_use"
    text, tool = body["content"]
    assert text == {"type": "text", "text": "Let me look"}
    assert tool["type"] == "tool_use"
    assert tool["input"] == {"command": "ls"}
    assert tool["id"].startswith("toolu_")
    assert set(body["usage"]) == {"input_tokens", "output_tokens"}


def test_anthropic_stream_event_sequence(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("a", {"x": 1}), ("b", "{bad")], text="hi")
    events = sse(post(llm_emulator, "/v1/messages", {**MESSAGES, "stream": True}))
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert json.loads(data)["type"] == name
    starts = [json.loads(d)["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use", "tool_use"]
    partial = [
        json.loads(d)["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and json.loads(d)["index"] == 2
    ]
    assert "".join(partial) == "{bad"
    assert json.loads(events[-2][1])["usage"]["output_tokens"] > 0


def test_fifo_then_default_reply() -> None:
    with LlmEmulator(default_reply="fallback") as emu:
        emu.reply_text("first")
        emu.reply("second")
        texts = [
            post(emu, "/v1/chat/completions", CHAT).json()["choices"][0]["message"]["content"]
            for _ in range(3)
        ]
        assert texts == ["first", "second", "fallback"]
        assert emu.pending == 0
        emu.default_reply = TextReply("changed")
        assert post(emu, "/v1/messages", MESSAGES).json()["content"][0]["text"] == "changed"


def test_reply_function_sees_the_request(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(lambda request: "echo: " + request["messages"][-1]["content"])
    body = post(llm_emulator, "/v1/chat/completions", CHAT).json()
    assert body["choices"][0]["message"]["content"] == "echo: hi"


def test_broken_reply_function_is_a_500_not_a_crash(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(lambda request: request["no such key"])
    assert post(llm_emulator, "/v1/chat/completions", CHAT).status_code == 500
    assert post(llm_emulator, "/v1/chat/completions", CHAT).status_code == 200


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500])
def test_error_bodies(llm_emulator: LlmEmulator, status: int) -> None:
    llm_emulator.reply_error(status, "nope", retry_after=3)
    llm_emulator.reply(ErrorReply(status, "nope"))
    openai = post(llm_emulator, "/v1/chat/completions", CHAT)
    assert openai.status_code == status
    assert openai.headers["retry-after"] == "3"
    assert openai.json()["error"]["message"] == "nope"
    assert {"type", "code"} <= set(openai.json()["error"])
    anthropic = post(llm_emulator, "/v1/messages", MESSAGES)
    assert anthropic.status_code == status
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["message"] == "nope"
    assert anthropic.json()["error"]["type"].endswith("_error")


def test_out_of_quota_body(llm_emulator: LlmEmulator) -> None:
    quota = "insufficient_quota"
    llm_emulator.reply_error(429, "You exceeded your current quota", error_type=quota, code=quota)
    response = post(llm_emulator, "/v1/chat/completions", CHAT)
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }


def test_raw_error_body(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_error(500, raw_body="<html>gateway exploded")
    response = post(llm_emulator, "/v1/chat/completions", CHAT)
    assert (response.status_code, response.text) == (500, "<html>gateway exploded")


def test_auth_check() -> None:
    with LlmEmulator(api_key="right") as emu:
        wrong = post(emu, "/v1/chat/completions", CHAT, authorization="Bearer wrong")
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        missing = post(emu, "/v1/messages", MESSAGES)
        assert missing.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }
        assert post(emu, "/v1/chat/completions", CHAT, authorization="Bearer right").is_success
        assert post(emu, "/v1/messages", MESSAGES, **{"x-api-key": "right"}).is_success


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (json.dumps({"model": "m"}).encode(), "messages"),
        (b'{"model": "m", "messages": [], "pad": "' + b"x" * 70_000 + b'"}', "too large"),
    ],
)
def test_bad_requests_get_400(body: bytes, problem: str) -> None:
    with LlmEmulator(max_body_bytes=65_536) as emu:
        openai = post(emu, "/v1/chat/completions", body)
        assert openai.status_code == 400
        assert problem in openai.json()["error"]["message"]
        anthropic = post(emu, "/v1/messages", body)
        assert anthropic.status_code == 400
        assert anthropic.json()["error"]["type"] == "invalid_request_error"
        assert post(emu, "/v1/chat/completions", CHAT).is_success, "still serving"


def test_requests_are_recorded(llm_emulator: LlmEmulator) -> None:
    post(llm_emulator, "/v1/chat/completions", CHAT, authorization="Bearer k")
    [request] = llm_emulator.requests
    assert (request.method, request.path, request.json) == ("POST", "/v1/chat/completions", CHAT)
    assert request.headers["authorization"] == "Bearer k"


def test_model_listing(llm_emulator: LlmEmulator) -> None:
    openai = httpx.get(f"{llm_emulator.openai_base_url}/models").json()
    assert openai["object"] == "list"
    assert [m["id"] for m in openai["data"]] == list(llm_emulator.models)
    anthropic = httpx.get(
        f"{llm_emulator.base_url}/v1/models", headers={"anthropic-version": "2023-06-01"}
    ).json()
    assert anthropic["has_more"] is False
    assert [m["type"] for m in anthropic["data"]] == ["model"] * len(llm_emulator.models)


def test_stop_is_idempotent_and_restart_works() -> None:
    emu = LlmEmulator().start()
    emu.stop()
    emu.stop()
    emu.start()
    try:
        assert post(emu, "/v1/chat/completions", CHAT).is_success
    finally:
        emu.stop()


def test_standalone_command() -> None:
    command = [sys.executable, "-m", "openpista_testing.emulator", "--port", "0", "--reply", "pong"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        body = httpx.post(f"{base_url}/v1/chat/completions", json=CHAT, timeout=10).json()
        assert body["choices"][0]["message"]["content"] == "pong"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_ollama_native_chat(llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_text("hey", chunk_size=2)
    llm_emulator.reply_tool_calls([("system_run", {"command": "ls"})])
    lines = post(llm_emulator, "/api/chat", CHAT).text.splitlines()  # streams by default
    chunks = [json.loads(line) for line in lines]
    assert "".join(c["message"]["content"] for c in chunks) == "hey"
    assert [c["done"] for c in chunks] == [False, False, True]
    assert chunks[-1]["eval_count"] > 0
    whole = post(llm_emulator, "/api/chat", {**CHAT, "stream": False}).json()
    assert whole["message"]["tool_calls"] == [
        {"function": {"name": "system_run", "arguments": {"command": "ls"}}}
    ]
    llm_emulator.reply_error(404, "model 'x' not found")
    assert post(llm_emulator, "/api/chat", CHAT).json() == {"error": "model 'x' not found"}
    tags = httpx.get(f"{llm_emulator.base_url}/api/tags").json()
    assert [m["name"] for m in tags["models"]] == list(llm_emulator.models)
