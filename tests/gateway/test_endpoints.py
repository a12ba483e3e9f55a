"""Each endpoint, streaming and not, through the gateway to the fake upstream."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from spillgate.fake import DEFAULT_TEXT, Fault
from tests.eventually import eventually

from ..harness import CLIENT_KEY, UPSTREAM_KEYS, Harness

CHAT = {
    "model": "coder",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0.2,
    "x_unknown_field": {"kept": [1, 2, 3]},
}
RESPONSES = {
    "model": "coder",
    "input": [{"role": "user", "content": "hi"}],
    "store": False,
    "prompt_cache_key": "thread-1",
    "include": ["reasoning.encrypted_content"],
}
MESSAGES = {
    "model": "coder",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
    "x_unknown_field": True,
}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"}


def _assert_forwarded(gw: Harness, sent: dict[str, Any], upstream_model: str, pool: tuple[str, ...]) -> None:
    """The upstream got the client's body with only ``model`` changed, and the account's key."""
    attempt = gw.fake.attempts[-1]
    assert attempt.model == upstream_model
    got = orjson.loads(attempt.body)
    assert got == {**sent, "model": upstream_model}
    credential = attempt.headers.get("authorization", "").removeprefix("Bearer ") or attempt.headers.get(
        "x-api-key"
    )
    assert credential in {UPSTREAM_KEYS[a] for a in pool}
    assert all(CLIENT_KEY not in value for value in attempt.headers.values())


async def test_chat_non_streaming(gw: Harness) -> None:
    reply = await gw.call("/v1/chat/completions", CHAT)
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["object"] == "chat.completion" and body["model"] == "up-coder"
    assert body["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        > 0
    )
    assert reply.headers["x-spillgate-route"] == "coder[0]"
    assert reply.headers["content-type"].startswith("application/json")
    _assert_forwarded(gw, CHAT, "up-coder", ("oa-1", "oa-2"))


async def test_chat_streaming_with_usage(gw: Harness) -> None:
    sent = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    reply = await gw.call("/v1/chat/completions", sent)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = reply.events()
    assert events[-1] == (None, "[DONE]")
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == DEFAULT_TEXT
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert {c["model"] for c in chunks} == {"up-coder"}
    _assert_forwarded(gw, sent, "up-coder", ("oa-1", "oa-2"))


async def test_responses_non_streaming(gw: Harness) -> None:
    reply = await gw.call("/v1/responses", RESPONSES)
    assert reply.status == 200
    body = reply.json()
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == "up-coder"
    assert body["output"][0]["content"][0]["text"] == DEFAULT_TEXT
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    _assert_forwarded(gw, RESPONSES, "up-coder", ("oa-1", "oa-2"))


async def test_responses_streaming_event_order(gw: Harness) -> None:
    sent = {**RESPONSES, "stream": True}
    reply = await gw.call("/v1/responses", sent, headers={"session-id": "s-1", "originator": "codex_exec"})
    assert reply.status == 200
    events = reply.events()
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [orjson.loads(d)["delta"] for n, d in events if n == "response.output_text.delta"]
    assert "".join(deltas) == DEFAULT_TEXT and len(deltas) > 1
    completed = orjson.loads(events[-1][1])["response"]
    assert completed["id"].startswith("resp_") and completed["usage"]["total_tokens"] > 0
    seq = [orjson.loads(d)["sequence_number"] for _, d in events]
    assert seq == sorted(seq)
    _assert_forwarded(gw, sent, "up-coder", ("oa-1", "oa-2"))
    assert gw.fake.attempts[-1].headers["originator"] == "codex_exec"


async def test_messages_non_streaming_with_x_api_key(gw: Harness) -> None:
    reply = await gw.call(
        "/v1/messages", MESSAGES, key=None, headers={**ANTHROPIC_HEADERS, "x-api-key": CLIENT_KEY}
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["type"] == "message" and body["model"] == "up-claude"
    assert body["content"][0]["text"] == DEFAULT_TEXT and body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    assert reply.headers["x-spillgate-route"] == "coder[1]"
    _assert_forwarded(gw, MESSAGES, "up-claude", ("an-1", "an-2"))
    forwarded = gw.fake.attempts[-1].headers
    assert forwarded["anthropic-version"] == "2023-06-01"
    assert forwarded["anthropic-beta"] == "tools-2024-04-04"


async def test_messages_streaming_with_bearer(gw: Harness) -> None:
    sent = {**MESSAGES, "stream": True}
    reply = await gw.call("/v1/messages", sent, headers=ANTHROPIC_HEADERS)
    assert reply.status == 200
    events = reply.events()
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in names and "content_block_stop" in names
    text = "".join(orjson.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == DEFAULT_TEXT
    start = orjson.loads(events[0][1])["message"]
    assert start["model"] == "up-claude" and start["usage"]["input_tokens"] > 0
    assert orjson.loads(events[-2][1])["usage"]["output_tokens"] > 0
    _assert_forwarded(gw, sent, "up-claude", ("an-1", "an-2"))


async def test_stream_is_relayed_as_it_arrives(gw: Harness) -> None:
    gw.fake.set("up-coder", Fault(event_delay=0.15, chunks=4))
    sent = {**CHAT, "stream": True}
    arrivals: list[float] = []
    received = b""
    start = time.monotonic()
    async with gw.http.post(
        gw.url + "/v1/chat/completions",
        data=orjson.dumps(sent),
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    ) as resp:
        assert resp.status == 200
        async for piece in resp.content.iter_any():
            arrivals.append(time.monotonic() - start)
            received += piece
    assert received.endswith(b"data: [DONE]\n\n")
    # Events arrive spread over the upstream's pacing, not in one lump at the end.
    assert len(arrivals) >= 4
    assert arrivals[0] < arrivals[-1] - 0.3


async def test_deprecated_alias_answers_with_header(gw: Harness) -> None:
    reply = await gw.call("/v1/chat/completions", {**CHAT, "model": "old-coder"})
    assert reply.status == 200
    assert reply.headers["deprecation"] == "true"
    assert reply.headers["x-spillgate-model-replacement"] == "coder"
    assert gw.fake.attempts[-1].model == "up-coder"


async def test_models_and_healthz(gw: Harness) -> None:
    reply = await gw.call("/v1/models", method="GET")
    assert reply.status == 200
    assert [m["id"] for m in reply.json()["data"]] == ["coder", "old-coder"]
    assert reply.json()["object"] == "list"
    anthropic = await gw.call("/v1/models", method="GET", headers={"anthropic-version": "2023-06-01"})
    assert [m["id"] for m in anthropic.json()["data"]] == ["coder", "old-coder"]
    assert anthropic.json()["data"][0]["type"] == "model"
    health = await gw.call("/healthz", method="GET", key=None)
    assert health.status == 200 and health.json() == {"status": "ok"}


async def test_upstream_error_status_and_headers_pass_through(gw: Harness) -> None:
    gw.fake.set("up-coder", Fault.rate_limited(retry_after=7))
    reply = await gw.call("/v1/chat/completions", CHAT)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"
    assert reply.json()["error"]["type"]


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_upstream_is_a_clean_502(gw: Harness, stream: bool) -> None:
    await gw.fake.close()
    reply = await gw.call("/v1/chat/completions", {**CHAT, "stream": stream})
    assert reply.status == 502
    error = reply.json()["error"]
    assert error["type"] == "server_error" and "could not connect" in error["message"]
    assert "coder[0]" in error["message"]
    assert reply.headers["x-should-retry"] == "true"
    assert "sk-up" not in reply.body.decode()


async def test_silent_upstream_times_out_with_504(gw: Harness) -> None:
    gw.fake.set("up-coder", Fault.hang())
    started = time.monotonic()
    reply = await gw.call("/v1/chat/completions", {**CHAT, "stream": True})
    assert reply.status == 504
    # first_byte is 1s in the test config: one timeout per account of the pool, no retry of a silent one.
    assert 1.5 < time.monotonic() - started < 3.5
    assert len(gw.fake.attempts) == 2
    assert "no response headers from upstream within 1s" in reply.json()["error"]["message"]
    assert reply.headers["x-spillgate-attempts"] == "2"


async def test_stream_break_after_start_is_not_a_clean_ending(gw: Harness) -> None:
    gw.fake.set("up-coder", Fault(cut_after_events=3))
    reply = await gw.call("/v1/chat/completions", {**CHAT, "stream": True})
    assert reply.status == 200
    events = reply.events()
    assert (None, "[DONE]") not in events
    last = orjson.loads(events[-1][1])
    assert (
        last["error"]["code"] == "server_error"
        and "broke after the answer started" in last["error"]["message"]
    )
    # The gateway keeps serving.
    gw.fake.clear()
    assert (await gw.call("/v1/chat/completions", CHAT)).status == 200


async def test_client_disconnect_cancels_upstream(gw: Harness) -> None:
    gw.fake.set("up-coder", Fault(stall_after_events=2))
    async with gw.http.post(
        gw.url + "/v1/chat/completions",
        data=orjson.dumps({**CHAT, "stream": True}),
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    ) as resp:
        assert resp.status == 200
        await resp.content.readany()
        assert sum(gw.app.gateway.inflight.counts.values()) == 1
        resp.close()
    client = gw.app.gateway.clients["up-openai"]
    await eventually(lambda: not client._active, what="the upstream connection to be closed")
    await eventually(
        lambda: not gw.app.gateway.inflight.counts, what="the request to leave the in-flight count"
    )


async def test_keep_alive_reuses_upstream_connections(gw: Harness) -> None:
    for _ in range(5):
        assert (await gw.call("/v1/chat/completions", CHAT)).status == 200
    assert gw.app.gateway.clients["up-openai"].idle_connections == 1
