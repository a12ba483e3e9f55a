"""The fault-injecting fake upstream, exercised over real HTTP with aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spillgate.fake import (
    DEFAULT_TEXT,
    MALFORMED_FRAME,
    FakeUpstream,
    Fault,
    FaultConfigError,
    load_behaviors,
    parse_behaviors,
    serve,
)
from spillgate.fake.content import split_text
from spillgate.fake.protocol import ApiProtocol
from tests.clock import ShiftedClock
from tests.eventually import eventually

PATHS: dict[ApiProtocol, str] = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic-messages": "/v1/messages",
}
PROTOCOLS: list[ApiProtocol] = list(PATHS)
WORDS = split_text(DEFAULT_TEXT, 5)


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No handler tracebacks, no 'Task exception was never retrieved'."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def request_body(protocol: ApiProtocol, model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if protocol == "openai-responses":
        body["input"] = "Say hello."
    else:
        body["messages"] = [{"role": "user", "content": "Say hello."}]
    if protocol == "anthropic-messages":
        body["max_tokens"] = 64
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def post(
    session: aiohttp.ClientSession, fake: FakeUpstream, protocol: ApiProtocol, body: dict[str, Any]
) -> tuple[int, Mapping[str, str], bytes]:
    async with session.post(
        fake.base_url + PATHS[protocol], data=encoded(body), headers={"content-type": "application/json"}
    ) as resp:
        return resp.status, resp.headers, await resp.read()


class Frames:
    """SSE frames of one streamed response, with arrival times, and how the stream ended."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.times: list[float] = []
        self.error: BaseException | None = None
        self.headers_at = 0.0
        self.started = 0.0
        self.status = 0

    def events(self) -> list[tuple[str | None, str]]:
        out = []
        for frame in self.raw:
            event = None
            data = []
            for line in frame.decode().strip("\n").split("\n"):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            out.append((event, "\n".join(data)))
        return out

    def payloads(self) -> list[Any]:
        return [json.loads(data) for _, data in self.events() if data != "[DONE]"]

    def names(self) -> list[str | None]:
        return [event for event, _ in self.events()]


async def stream(
    session: aiohttp.ClientSession,
    fake: FakeUpstream,
    protocol: ApiProtocol,
    body: dict[str, Any],
    *,
    frame_timeout: float = 2.0,
) -> Frames:
    """Post a streaming request and read frames until EOF, a payload error or ``frame_timeout``."""
    got = Frames()
    got.started = time.monotonic()
    async with session.post(fake.base_url + PATHS[protocol], data=encoded(body)) as resp:
        got.headers_at = time.monotonic()
        got.status = resp.status
        assert resp.headers["content-type"] == "text/event-stream"
        try:
            while True:
                frame = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), frame_timeout)
                if not frame:
                    break
                got.raw.append(frame)
                got.times.append(time.monotonic())
        except (aiohttp.ClientPayloadError, TimeoutError) as exc:
            got.error = exc
            resp.close()
    return got


def healthy_stream_names(protocol: ApiProtocol) -> list[str | None]:
    if protocol == "openai-responses":
        return [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * len(WORDS),
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    if protocol == "anthropic-messages":
        return [
            "message_start",
            "content_block_start",
            "ping",
            *["content_block_delta"] * len(WORDS),
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    return [None] * (len(WORDS) + 3)


PRE_CONTENT = {"openai-chat": 1, "openai-responses": 4, "anthropic-messages": 3}


# -- healthy answers ------------------------------------------------------------------------------


async def test_chat_non_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = request_body("openai-chat", "gpt-4o", False)
    status, headers, raw = await post(session, fake, "openai-chat", body)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    data = json.loads(raw)
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_TEXT, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    prompt = len(encoded(body)) // 4 + 1
    assert data["usage"] == {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5}


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(fake: FakeUpstream, session: aiohttp.ClientSession, include_usage: bool) -> None:
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    body = request_body("openai-chat", "gpt-4o-mini", True, **extra)
    got = await stream(session, fake, "openai-chat", body)
    assert got.error is None
    assert all(event is None for event in got.names())
    assert got.events()[-1] == (None, "[DONE]")
    chunks = got.payloads()
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o-mini" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks[1 : 1 + len(WORDS)]]
    assert "".join(deltas) == DEFAULT_TEXT and len(deltas) == 5
    finish = chunks[1 + len(WORDS)]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"] == {}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[: 1 + len(WORDS)])
    if include_usage:
        assert len(chunks) == len(WORDS) + 3
        last = chunks[-1]
        prompt = len(encoded(body)) // 4 + 1
        assert last["choices"] == []
        assert last["usage"] == {"prompt_tokens": prompt, "completion_tokens": 5, "total_tokens": prompt + 5}
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert len(chunks) == len(WORDS) + 2
        assert all("usage" not in c for c in chunks)


async def test_responses_non_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = request_body("openai-responses", "gpt-5-codex", False)
    status, headers, raw = await post(session, fake, "openai-responses", body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    data = json.loads(raw)
    assert data["id"].startswith("resp_")
    assert data["object"] == "response" and data["status"] == "completed"
    assert data["model"] == "gpt-5-codex"
    [item] = data["output"]
    assert item["type"] == "message" and item["id"].startswith("msg_")
    assert item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"] == [{"type": "output_text", "text": DEFAULT_TEXT, "annotations": []}]
    prompt = len(encoded(body)) // 4 + 1
    usage = data["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (prompt, 5, prompt + 5)


async def test_responses_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = request_body("openai-responses", "gpt-5-codex", True)
    got = await stream(session, fake, "openai-responses", body)
    assert got.error is None
    assert got.names() == healthy_stream_names("openai-responses")
    events = got.payloads()
    assert [e["type"] for e in events] == got.names()
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["model"] == "gpt-5-codex"
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == DEFAULT_TEXT
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:-2])
    assert events[-4]["text"] == DEFAULT_TEXT
    completed = events[-1]["response"]
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["model"] == "gpt-5-codex"
    assert completed["output"][0]["content"][0]["text"] == DEFAULT_TEXT
    prompt = len(encoded(body)) // 4 + 1
    assert completed["usage"]["input_tokens"] == prompt
    assert completed["usage"]["output_tokens"] == 5
    assert completed["usage"]["total_tokens"] == prompt + 5
    assert b"[DONE]" not in b"".join(got.raw)


async def test_anthropic_non_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = request_body("anthropic-messages", "claude-sonnet-4-5", False)
    status, headers, raw = await post(session, fake, "anthropic-messages", body)
    assert status == 200 and headers["x-request-id"]
    data = json.loads(raw)
    prompt = len(encoded(body)) // 4 + 1
    assert data == {
        "id": data["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": DEFAULT_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": 5},
    }
    assert data["id"].startswith("msg_")


async def test_anthropic_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = request_body("anthropic-messages", "claude-sonnet-4-5", True)
    got = await stream(session, fake, "anthropic-messages", body)
    assert got.error is None
    assert got.names() == healthy_stream_names("anthropic-messages")
    events = got.payloads()
    assert [e["type"] for e in events] == got.names()
    message = events[0]["message"]
    assert message["model"] == "claude-sonnet-4-5" and message["role"] == "assistant"
    assert message["usage"]["input_tokens"] == len(encoded(body)) // 4 + 1
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == DEFAULT_TEXT
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"] == {"output_tokens": 5}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_custom_text_and_chunks(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    fake.set("custom", Fault(text="one two three four", chunks=2))
    got = await stream(session, fake, protocol, request_body(protocol, "custom", True))
    texts = [
        e.get("delta", {}).get("text") if protocol == "anthropic-messages" else e.get("delta")
        for e in got.payloads()
        if e.get("type") in ("content_block_delta", "response.output_text.delta")
    ]
    if protocol == "openai-chat":
        texts = [c["choices"][0]["delta"].get("content") for c in got.payloads()[1:3]]
    assert texts == ["one two", " three four"]
    status, _, raw = await post(session, fake, protocol, request_body(protocol, "custom", False))
    assert status == 200 and b"one two three four" in raw
    assert [a.outcome for a in fake.attempts_for("custom")] == ["ok", "ok"]


async def test_bad_requests(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    async with session.post(fake.base_url + "/v1/chat/completions", data=b"{not json") as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["type"] == "invalid_request_error" and error["param"] is None
    async with session.post(fake.base_url + "/v1/messages", json={"messages": []}) as resp:
        assert resp.status == 400
        data = await resp.json()
        assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    async with session.post(fake.base_url + "/v1/responses", json=["model"]) as resp:
        assert resp.status == 400 and "error" in await resp.json()
    async with session.get(fake.base_url + "/v1/chat/completions") as resp:
        assert resp.status == 405
    async with session.get(fake.base_url + "/nope") as resp:
        assert resp.status == 404 and "error" in await resp.json()
    assert [a.outcome for a in fake.attempts] == ["bad_request"] * 3
    assert fake.attempts[1].protocol == "anthropic-messages"


async def test_models_endpoint(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("my-model", Fault.capacity())
    async with session.get(fake.openai_base_url + "/models") as resp:
        data = await resp.json()
    assert data["object"] == "list"
    ids = [m["id"] for m in data["data"]]
    assert ids[0] == "my-model" and "gpt-4o" in ids
    assert all(m["object"] == "model" for m in data["data"])
    async with session.get(
        fake.anthropic_base_url + "/v1/models", headers={"anthropic-version": "x"}
    ) as resp:
        data = await resp.json()
    assert data["data"][0] == {
        "type": "model",
        "id": "my-model",
        "display_name": "my-model",
        "created_at": data["data"][0]["created_at"],
    }
    assert data["has_more"] is False


def test_base_urls() -> None:
    async def run() -> tuple[str, str, int]:
        async with FakeUpstream() as upstream:
            return upstream.openai_base_url, upstream.anthropic_base_url, upstream.port

    openai, anthropic, port = asyncio.run(run())
    assert openai == f"http://127.0.0.1:{port}/v1" and anthropic == f"http://127.0.0.1:{port}"


# -- status faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_capacity_preset_in_protocol_shape(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    fake.set("m", Fault.capacity())
    for streamed in (False, True):
        status, headers, raw = await post(session, fake, protocol, request_body(protocol, "m", streamed))
        assert status == 503 and headers["Content-Type"] == "application/json"
        data = json.loads(raw)
        if protocol == "anthropic-messages":
            assert data == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        else:
            assert data == {
                "error": {
                    "message": "Selected model is at capacity. Please try a different model.",
                    "type": "server_error",
                    "param": None,
                    "code": "server_is_overloaded",
                }
            }
    assert [a.outcome for a in fake.attempts] == ["status:503", "status:503"]
    assert all(a.fault_applied for a in fake.attempts)


async def test_overloaded_and_rate_limited_presets(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("claude", Fault.overloaded())
    status, _, raw = await post(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "claude", True)
    )
    assert status == 529
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }

    fake.set("limited", Fault.rate_limited(retry_after=2))
    status, headers, raw = await post(
        session, fake, "openai-chat", request_body("openai-chat", "limited", False)
    )
    assert status == 429 and headers["Retry-After"] == "2"
    assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    status, headers, raw = await post(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "limited", False)
    )
    assert status == 429 and headers["Retry-After"] == "2"
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"

    fake.set("limited", Fault.rate_limited())
    status, headers, _ = await post(
        session, fake, "openai-responses", request_body("openai-responses", "limited", False)
    )
    assert status == 429 and "Retry-After" not in headers

    fake.set("broken", Fault.server_error(502))
    status, _, raw = await post(session, fake, "openai-chat", request_body("openai-chat", "broken", False))
    assert status == 502 and json.loads(raw)["error"]["type"] == "server_error"


async def test_explicit_status_body_and_headers(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("a", Fault(status=418, body={"custom": True}, headers=(("x-extra", "1"),)))
    status, headers, raw = await post(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "a", False)
    )
    assert status == 418 and json.loads(raw) == {"custom": True} and headers["x-extra"] == "1"
    fake.set("b", Fault(status=500, body="plain failure", headers=(("Content-Type", "text/plain"),)))
    status, headers, raw = await post(session, fake, "openai-chat", request_body("openai-chat", "b", False))
    assert (status, headers["Content-Type"], raw) == (500, "text/plain", b"plain failure")
    fake.set("c", Fault(status=400, error_message="bad things", error_code="context_length_exceeded"))
    _, _, raw = await post(session, fake, "openai-chat", request_body("openai-chat", "c", False))
    assert json.loads(raw)["error"] == {
        "message": "bad things",
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }


# -- connection faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_reset_before_headers(
    fake: FakeUpstream, session: aiohttp.ClientSession, streamed: bool
) -> None:
    fake.set("m", Fault.reset())
    with pytest.raises(aiohttp.ClientError):
        await post(session, fake, "openai-chat", request_body("openai-chat", "m", streamed))
    assert [a.outcome for a in fake.attempts] == ["reset"]
    fake.clear("m")
    status, _, _ = await post(session, fake, "openai-chat", request_body("openai-chat", "m", streamed))
    assert status == 200


async def test_never_answer_until_client_leaves(fake: FakeUpstream) -> None:
    fake.set("m", Fault.hang())
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(client, fake, "anthropic-messages", request_body("anthropic-messages", "m", True))
        assert 0.25 < time.monotonic() - started < 1.0
    await eventually(lambda: fake.in_flight == 0)
    assert [a.outcome for a in fake.attempts] == ["never_answer"]


async def test_close_drops_held_requests_quickly(session: aiohttp.ClientSession) -> None:
    upstream = FakeUpstream({"m": Fault.hang(), "s": Fault(stall_after_events=2)})
    await upstream.start()
    body = encoded(request_body("openai-chat", "m", False))
    pending = asyncio.ensure_future(session.post(upstream.base_url + "/v1/chat/completions", data=body))
    stalled = asyncio.ensure_future(
        stream(session, upstream, "openai-chat", request_body("openai-chat", "s", True))
    )
    await eventually(lambda: upstream.in_flight == 2)
    started = time.monotonic()
    await upstream.close()
    assert time.monotonic() - started < 0.5
    with pytest.raises(aiohttp.ClientError):
        await pending
    got = await stalled
    assert len(got.raw) == 2 and isinstance(got.error, aiohttp.ClientPayloadError)


async def test_headers_delay(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(headers_delay=0.25))
    got = await stream(session, fake, "openai-responses", request_body("openai-responses", "m", True))
    assert got.headers_at - got.started >= 0.24
    assert got.error is None and got.names()[-1] == "response.completed"
    started = time.monotonic()
    status, _, _ = await post(session, fake, "openai-chat", request_body("openai-chat", "m", False))
    assert status == 200 and time.monotonic() - started >= 0.24


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_first_content_delay(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    # A delay long against a loaded CI machine's scheduling hiccups (the bounds below are half of it).
    fake.set("m", Fault(first_content_delay=1.0))
    got = await stream(session, fake, protocol, request_body(protocol, "m", True))
    pre = PRE_CONTENT[protocol]
    assert got.headers_at - got.started < 0.5
    assert got.times[pre - 1] - got.started < 0.5, "pre-content events are sent at once"
    assert got.times[pre] - got.started >= 0.99, "the first content delta waits"
    assert got.times[-1] - got.times[pre] < 0.5, "the rest follows without delay"
    assert got.names() == healthy_stream_names(protocol)
    assert [a.outcome for a in fake.attempts] == ["ok"] and fake.attempts[0].fault_applied


async def test_first_content_delay_non_stream(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(first_content_delay=0.2))
    started = time.monotonic()
    status, _, raw = await post(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "m", False)
    )
    assert status == 200 and json.loads(raw)["content"][0]["text"] == DEFAULT_TEXT
    assert time.monotonic() - started >= 0.19


async def test_event_delay(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(event_delay=0.03))
    got = await stream(session, fake, "openai-chat", request_body("openai-chat", "m", True))
    assert len(got.raw) == len(WORDS) + 3 and got.error is None
    # Event i leaves after i delays: a client that reads one late (a busy machine) only makes it
    # later, so its arrival is bounded from below, not the gap to the next one.
    arrivals = [at - got.started for at in got.times]
    assert all(at >= 0.029 * i for i, at in enumerate(arrivals)), arrivals


# -- stream faults --------------------------------------------------------------------------------


async def raw_exchange(
    fake: FakeUpstream, path: str, body: dict[str, Any]
) -> tuple[bytes, list[bytes], bool]:
    """Send one request on a bare socket and read to EOF: (head, body chunks, saw final chunk)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    payload = encoded(body)
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    raw = await asyncio.wait_for(reader.read(), 2.0)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    chunks: list[bytes] = []
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return head, chunks, True
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return head, chunks, False


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_cut_after_events(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    fake.set("m", Fault(cut_after_events=5))
    head, chunks, terminated = await raw_exchange(fake, PATHS[protocol], request_body(protocol, "m", True))
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
    assert not terminated, "no final chunk: the connection just ends"
    assert len(chunks) == 5, "one chunk per event, five events"
    frames = Frames()
    frames.raw = chunks
    assert frames.names() == healthy_stream_names(protocol)[:5]
    assert b"[DONE]" not in b"".join(chunks)
    # An HTTP client sees a body that ends too early.
    got = await stream(session, fake, protocol, request_body(protocol, "m", True))
    assert isinstance(got.error, aiohttp.ClientPayloadError)
    assert [a.outcome for a in fake.attempts] == ["cut", "cut"]


async def test_healthy_stream_ends_with_final_chunk(fake: FakeUpstream) -> None:
    _, chunks, terminated = await raw_exchange(
        fake, PATHS["openai-chat"], request_body("openai-chat", "m", True)
    )
    assert terminated and len(chunks) == len(WORDS) + 3 and chunks[-1] == b"data: [DONE]\n\n"


async def test_cut_non_stream_drops_connection(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(cut_after_events=0))
    with pytest.raises(aiohttp.ClientError):
        await post(session, fake, "openai-chat", request_body("openai-chat", "m", False))
    assert [a.outcome for a in fake.attempts] == ["cut"]


async def test_stall_after_events(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(stall_after_events=4))
    got = await stream(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "m", True), frame_timeout=0.3
    )
    assert isinstance(got.error, TimeoutError)
    assert got.names() == ["message_start", "content_block_start", "ping", "content_block_delta"]
    await eventually(lambda: fake.in_flight == 0)  # the client left; the held handler is gone
    assert [a.outcome for a in fake.attempts] == ["stall"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_malformed_event(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    fake.set("m", Fault(malformed_at_event=2))
    got = await stream(session, fake, protocol, request_body(protocol, "m", True))
    assert got.error is None
    assert got.raw[2] == MALFORMED_FRAME
    with pytest.raises(json.JSONDecodeError):
        json.loads(got.events()[2][1])
    expected = healthy_stream_names(protocol)
    assert got.names() == [*expected[:2], None, *expected[2:]]
    if protocol == "openai-responses":
        numbers = [json.loads(data)["sequence_number"] for i, (_, data) in enumerate(got.events()) if i != 2]
        assert numbers == list(range(len(expected)))
    assert [a.outcome for a in fake.attempts] == ["malformed"]


async def test_omit_done(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(omit_done=True))
    got = await stream(session, fake, "openai-chat", request_body("openai-chat", "m", True))
    assert got.error is None, "the chunked body still ends cleanly"
    assert len(got.raw) == len(WORDS) + 2
    assert got.payloads()[-1]["choices"][0]["finish_reason"] == "stop"
    assert b"[DONE]" not in b"".join(got.raw)
    got = await stream(session, fake, "openai-responses", request_body("openai-responses", "m", True))
    assert got.error is None and got.names() == healthy_stream_names("openai-responses")[:-1]
    assert [a.outcome for a in fake.attempts] == ["omit_done", "omit_done"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stream_error(
    fake: FakeUpstream, session: aiohttp.ClientSession, protocol: ApiProtocol
) -> None:
    fake.set(
        "m", Fault(stream_error_after_events=6, stream_error_code="boom", stream_error_message="it broke")
    )
    got = await stream(session, fake, protocol, request_body(protocol, "m", True))
    assert got.error is None and got.status == 200
    assert len(got.raw) == 7
    assert got.names()[:6] == healthy_stream_names(protocol)[:6]
    event, data = got.events()[-1]
    payload = json.loads(data)
    if protocol == "openai-responses":
        assert event == "response.failed"
        assert payload["type"] == "response.failed" and payload["sequence_number"] == 6
        response = payload["response"]
        assert response["status"] == "failed" and response["model"] == "m"
        assert response["id"] == got.payloads()[0]["response"]["id"]
        assert response["error"] == {"code": "boom", "message": "it broke"}
    elif protocol == "anthropic-messages":
        assert event == "error"
        assert payload == {"type": "error", "error": {"type": "boom", "message": "it broke"}}
    else:
        assert event is None
        assert payload["error"]["message"] == "it broke" and payload["error"]["code"] == "boom"
        assert b"[DONE]" not in b"".join(got.raw)
    assert [a.outcome for a in fake.attempts] == ["stream_error"]


async def test_stream_error_defaults_and_non_stream(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault(stream_error_after_events=0))
    got = await stream(session, fake, "anthropic-messages", request_body("anthropic-messages", "m", True))
    assert got.events() == [
        ("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    ]
    status, _, raw = await post(
        session, fake, "anthropic-messages", request_body("anthropic-messages", "m", False)
    )
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    status, _, raw = await post(
        session, fake, "openai-responses", request_body("openai-responses", "m", False)
    )
    assert status == 500 and json.loads(raw)["error"]["code"] == "server_error"


async def test_earliest_terminal_fault_wins(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(cut_after_events=50, stream_error_after_events=3))
    got = await stream(session, fake, "openai-chat", request_body("openai-chat", "m", True))
    assert got.error is None and "error" in got.payloads()[-1] and len(got.raw) == 4
    fake.set("m", Fault(cut_after_events=50))  # past the end of the stream: never triggers
    got = await stream(session, fake, "openai-chat", request_body("openai-chat", "m", True))
    assert got.error is None and got.events()[-1] == (None, "[DONE]")


# -- which requests a fault applies to ------------------------------------------------------------


async def test_rate_half_alternates(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault.capacity(rate=0.5))
    statuses = [
        (await post(session, fake, "openai-chat", request_body("openai-chat", "m", False)))[0]
        for _ in range(6)
    ]
    assert statuses == [200, 503, 200, 503, 200, 503]
    assert [a.fault_applied for a in fake.attempts_for("m")] == [False, True] * 3


def test_rate_pattern_is_exact() -> None:
    for rate, requests in ((0.25, 8), (0.1, 30), (0.29, 100), (1 / 3, 9)):
        fault = Fault(status=500, rate=rate)
        hits = [fault.applies(n, 0.0) for n in range(requests)]
        assert sum(hits) == round(requests * rate), (rate, hits)
    assert [Fault(status=500, rate=0.25).applies(n, 0.0) for n in range(4)] == [False, False, False, True]
    assert not any(Fault(status=500, rate=0.0).applies(n, 0.0) for n in range(10))


async def test_times_then_healthy(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault.overloaded(times=2))
    path: ApiProtocol = "anthropic-messages"
    statuses = [(await post(session, fake, path, request_body(path, "m", False)))[0] for _ in range(4)]
    assert statuses == [529, 529, 200, 200]
    fake.set("m", Fault.overloaded(times=1))  # setting again restarts the count
    statuses = [(await post(session, fake, path, request_body(path, "m", False)))[0] for _ in range(2)]
    assert statuses == [529, 200]


async def test_for_seconds_recovers(session: aiohttp.ClientSession) -> None:
    clock = ShiftedClock()
    async with FakeUpstream(clock=clock) as fake:
        fake.set("m", Fault.capacity(for_seconds=60))
        body = request_body("openai-chat", "m", False)
        assert (await post(session, fake, "openai-chat", body))[0] == 503
        clock.advance(59)
        assert (await post(session, fake, "openai-chat", body))[0] == 503
        clock.advance(2)  # the window has passed, not waited out
        assert (await post(session, fake, "openai-chat", body))[0] == 200


async def test_wildcard_and_clear(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("*", Fault.capacity())
    fake.set("good", Fault())
    assert (await post(session, fake, "openai-chat", request_body("openai-chat", "anything", False)))[
        0
    ] == 503
    assert (await post(session, fake, "openai-chat", request_body("openai-chat", "good", False)))[0] == 200
    fake.clear()
    assert fake.behaviors == {}
    assert (await post(session, fake, "openai-chat", request_body("openai-chat", "anything", False)))[
        0
    ] == 200


# -- attempt log and control API ------------------------------------------------------------------


async def test_attempt_log(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("bad", Fault.capacity())
    before = time.monotonic()
    body = request_body("openai-responses", "good", True)
    async with session.post(
        fake.base_url + "/v1/responses", data=encoded(body), headers={"authorization": "Bearer sk-test"}
    ) as resp:
        await resp.read()
        request_id = resp.headers["x-request-id"]
    await post(session, fake, "anthropic-messages", request_body("anthropic-messages", "bad", False))
    first, second = fake.attempts
    assert before <= first.time <= second.time <= time.monotonic()
    assert (first.path, first.protocol, first.model, first.stream) == (
        "/v1/responses",
        "openai-responses",
        "good",
        True,
    )
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.body == encoded(body)
    assert (first.outcome, first.fault_applied, first.request_id) == ("ok", False, request_id)
    assert (second.protocol, second.model, second.stream, second.outcome) == (
        "anthropic-messages",
        "bad",
        False,
        "status:503",
    )
    assert fake.attempts_for("bad") == [second]
    assert fake.reset_attempts() == 2
    assert fake.attempts == []


async def test_control_api(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    base = fake.base_url + "/_fake"
    async with session.put(base + "/behaviors/org/model-x", json={"preset": "capacity", "times": 1}) as resp:
        assert resp.status == 200
        assert (await resp.json())["fault"] == {
            "status": 503,
            "error_code": "server_is_overloaded",
            "times": 1,
        }
    assert fake.behaviors["org/model-x"] == Fault.capacity(times=1)
    async with session.get(base + "/behaviors") as resp:
        assert (await resp.json())["models"]["org/model-x"]["status"] == 503

    async with session.put(base + "/behaviors/m", json={"stauts": 503}) as resp:
        assert resp.status == 400
        assert "m.stauts: unknown key" in (await resp.json())["error"]["message"]
    async with session.put(base + "/behaviors/m", data=b"{oops") as resp:
        assert resp.status == 400

    for _ in range(2):
        await post(session, fake, "openai-chat", request_body("openai-chat", "org/model-x", False))
    await post(session, fake, "openai-chat", request_body("openai-chat", "other", True))
    async with session.get(base + "/attempts") as resp:
        records = await resp.json()
    assert [(r["model"], r["outcome"]) for r in records] == [
        ("org/model-x", "status:503"),
        ("org/model-x", "ok"),
        ("other", "ok"),
    ]
    assert "body" not in records[0] and records[0]["body_size"] > 0 and records[2]["stream"] is True
    async with session.get(base + "/attempts", params={"model": "other", "body": "1"}) as resp:
        records = await resp.json()
    assert len(records) == 1 and json.loads(records[0]["body"])["model"] == "other"

    async with session.delete(base + "/behaviors/org/model-x") as resp:
        assert resp.status == 200
    assert fake.behaviors == {}
    async with session.delete(base + "/attempts") as resp:
        assert (await resp.json()) == {"cleared": 3}
    assert fake.attempts == []
    async with session.get(base + "/nothing") as resp:
        assert resp.status == 404


# -- parsing --------------------------------------------------------------------------------------


def test_from_dict() -> None:
    assert Fault.from_dict({}) == Fault()
    assert Fault.from_dict(None) == Fault()
    assert Fault.from_dict({"preset": "overloaded", "times": 3}) == Fault.overloaded(times=3)
    assert Fault.from_dict({"preset": "rate_limited", "retry_after": 1.5}).headers == (
        ("retry-after", "1.5"),
    )
    assert Fault.from_dict({"preset": "server-error", "status": 502}).status == 502
    fault = Fault.from_dict(
        {
            "status": 429,
            "headers": {"Retry-After": 3},
            "body": {"error": {"message": "slow down"}},
            "first_content_delay": 1,
            "cut_after_events": 4,
            "rate": 0.5,
            "text": "hi there",
            "chunks": 2,
        }
    )
    assert fault.headers == (("retry-after", "3"),)
    assert fault.first_content_delay == 1.0 and fault.cut_after_events == 4 and fault.rate == 0.5
    assert fault.deltas == ("hi", " there")
    assert Fault.from_dict(fault.to_dict()) == fault


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"stauts": 503}, "fault.stauts: unknown key (allowed here: apis, body, chunks, "),
        ({"stauts": 503}, "did you mean 'status'?"),
        ({"event_delay": "soon"}, "fault.event_delay: expected a duration like 5s"),
        ({"status": "503"}, "fault.status"),
        ({"status": 700}, "fault.status"),
        ({"rate": 1.5}, "fault.rate"),
        ({"times": -1}, "fault.times"),
        ({"cut_after_events": True}, "fault.cut_after_events"),
        ({"never_answer": "yes"}, "fault.never_answer"),
        ({"event_delay": -0.1}, "fault.event_delay"),
        ({"chunks": 0}, "fault.chunks"),
        ({"headers": ["x"]}, "fault.headers"),
        ({"headers": {"x": None}}, "fault.headers.x"),
        ({"body": 5}, "fault.body"),
        ({"preset": "explode"}, "unknown preset 'explode'"),
        ({"preset": "capacity", "retry_after": 1}, "fault.retry_after"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_from_dict_errors(data: Any, fragment: str) -> None:
    with pytest.raises(FaultConfigError, match=re.escape(fragment)):
        Fault.from_dict(data)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="rate"):
        Fault(rate=2.0)
    with pytest.raises(ValueError, match="chunks"):
        Fault(chunks=0)
    with pytest.raises(ValueError, match="stall_after_events"):
        Fault(stall_after_events=-1)


def test_load_behaviors_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "faults.yaml"
    yaml_file.write_text(
        "models:\n"
        "  gpt-5-codex:\n"
        "    preset: capacity\n"
        "    times: 2\n"
        "  claude-sonnet-4-5: {preset: overloaded, rate: 0.5}\n"
        "  slow: {first_content_delay: 2.5}\n"
        "  healthy:\n"
    )
    assert load_behaviors(yaml_file) == {
        "gpt-5-codex": Fault.capacity(times=2),
        "claude-sonnet-4-5": Fault.overloaded(rate=0.5),
        "slow": Fault(first_content_delay=2.5),
        "healthy": Fault(),
    }
    json_file = tmp_path / "faults.json"
    json_file.write_text(json.dumps({"models": {"m": {"preset": "hang"}}}))
    assert load_behaviors(json_file) == {"m": Fault.hang()}

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    cut_after: 3\n")
    with pytest.raises(FaultConfigError, match=r"models\.m\.cut_after: unknown key"):
        load_behaviors(bad)
    with pytest.raises(FaultConfigError, match=r"behaviors\.model: unknown key .*did you mean 'models'"):
        parse_behaviors({"model": {}})
    with pytest.raises(FaultConfigError, match="not valid"):
        json_file.write_text("{")
        load_behaviors(json_file)
    with pytest.raises(FaultConfigError, match="cannot read"):
        load_behaviors(tmp_path / "missing.yaml")


async def test_serve_prints_urls_and_runs_until_cancelled(
    capsys: pytest.CaptureFixture[str], session: aiohttp.ClientSession
) -> None:
    task = asyncio.create_task(serve("127.0.0.1", 0, {"m": Fault.capacity()}))
    printed = ""

    def has_line() -> bool:
        nonlocal printed
        printed += capsys.readouterr().out
        return "\n" in printed

    await eventually(has_line)
    assert printed.count("\n") == 1
    match = re.search(r"(http://127\.0\.0\.1:\d+)/v1", printed)
    assert match, printed
    async with session.post(match.group(1) + "/v1/chat/completions", json={"model": "m"}) as resp:
        assert resp.status == 503
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
