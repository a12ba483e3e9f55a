"""Hostile upstreams: Hypothesis writes whole upstream HTTP responses — statuses, headers,
framing, bodies, SSE events whose JSON has fields of the wrong types — and a running gateway
relays a request of each API, streamed and not, to them (issue 10, item 4).

Whatever the upstream answers, the client gets the upstream's answer, a relayed stream, or a
classified failure in its own protocol — never a gateway 500, never a traceback in the log.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.http.sockets import adopt

from .conftest import LogWatch, LoopThread, watch_logs

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
BODIES = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "m", "input": "hi"},
    "messages": {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
}


class CannedUpstream:
    """Answers every request with :attr:`response` (raw bytes), then closes the connection."""

    def __init__(self) -> None:
        self.response = b""
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Canned(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


class _Canned(asyncio.Protocol):
    def __init__(self, upstream: CannedUpstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep or self.transport is None:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if len(rest) < length:
            return
        self.upstream.requests += 1
        self.transport.write(self.upstream.response)
        self.transport.close()


@dataclass
class Rig:
    loop: LoopThread
    upstream: CannedUpstream
    app: App
    logs: LogWatch


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = LoopThread()
    upstream = CannedUpstream()
    loop.run(upstream.start())
    timeouts = {
        "connect": "1s",
        "first_byte": "1s",
        "first_token": "1s",
        "stream_idle": "300ms",
        "total": "2s",
    }
    base = f"http://127.0.0.1:{upstream.port}"
    config = {
        "listen": "127.0.0.1:0",
        "providers": {
            "oa": {
                "protocol": "openai",
                "base_url": f"{base}/v1",
                "api_key": "sk-up-oa",
                "timeouts": timeouts,
            },
            "an": {"protocol": "anthropic", "base_url": base, "api_key": "sk-up-an", "timeouts": timeouts},
        },
        "models": {"m": {"routes": [{"provider": "oa", "model": "up"}, {"provider": "an", "model": "up"}]}},
        "resilience": {
            "max_attempts": 2,
            "backoff": {"base": "1ms", "cap": "2ms"},
            "retry_budget": {"floor": 100000},
        },
    }
    app = App(parse_settings(config, env={}, source="fuzz"))
    loop.run(app.start())
    try:
        with watch_logs() as logs:
            yield Rig(loop, upstream, app, logs)
    finally:
        loop.run(app.stop(grace=1))
        loop.run(upstream.close())
        loop.close()


# -- what a hostile upstream says -------------------------------------------------------------

FIELDS = (
    "type", "delta", "text", "choices", "index", "id", "response", "usage", "item", "error", "content_block",
    "message", "model", "content", "finish_reason", "stop_reason", "sequence_number", "output_index",
    "content_index", "item_id", "tool_calls", "input_tokens", "output_tokens", "prompt_tokens", "code",
    "status",
)  # fmt: skip
TYPES = (
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.reasoning_summary_text.delta", "response.output_item.done",
    "response.completed", "response.incomplete", "response.failed", "error", "message_start",
    "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    "ping",
)  # fmt: skip
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(TYPES),
)
json_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    max_leaves=12,
)
typed_event = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | leaf},
    optional={
        name: json_value for name in ("delta", "response", "item", "index", "usage", "error", "message")
    },
)
chat_chunk = st.fixed_dictionaries(
    {
        "choices": st.lists(st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=4), max_size=2)
        | leaf
    },
    optional={"id": leaf, "usage": json_value, "error": json_value},
)
event_data = st.one_of(
    typed_event.map(orjson.dumps),
    chat_chunk.map(orjson.dumps),
    json_value.map(orjson.dumps),
    st.just(b"[DONE]"),
    st.binary(max_size=40),
)
event_name = (
    st.none()
    | st.sampled_from(TYPES)
    | st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=8)
)


@st.composite
def sse_body(draw: st.DrawFn) -> bytes:
    sep = draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n"]))
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 9)) == 0:
            parts.append(b": keep-alive" + sep)
            continue
        name = draw(event_name)
        head = f"event: {name}\n".encode() if name is not None else b""
        parts.append(head + b"data: " + draw(event_data) + sep)
    return b"".join(parts)


CONTENT_TYPES = (
    "application/json",
    "text/event-stream",
    "text/event-stream; charset=utf-8",
    "text/html",
    "",
    "x/y",
)


STATUSES = st.sampled_from([200, 200, 200, 400, 401, 404, 408, 429, 500, 502, 503, 504, 529]) | st.integers(
    200, 599
)
HEADERS = st.lists(
    st.sampled_from(
        [
            "retry-after: 1",
            "retry-after: tomorrow",
            "retry-after: -5",
            "retry-after-ms: 1e400",
            "x-ratelimit-reset-requests: 6m0s",
            "x-ratelimit-reset-tokens: forever",
            "anthropic-ratelimit-requests-reset: 1999-99-99",
            "x-codex-primary-used-percent: 100",
            "x-should-retry: maybe",
        ]
    ),
    max_size=3,
)


@dataclass(frozen=True)
class Case:
    api: str
    stream: bool
    response: bytes


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Half the time a 200 event stream of fuzzed events to a streamed request (where most of the
    parsing is); otherwise any status, content type, body and framing to any request."""
    api = draw(st.sampled_from(list(PATHS)))
    if draw(st.booleans()):
        stream, status, content_type = True, 200, "text/event-stream"
    else:
        stream, status = draw(st.booleans()), draw(STATUSES)
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    if "event-stream" in content_type:
        body = draw(sse_body())
    else:
        body = draw(json_value.map(orjson.dumps) | st.binary(max_size=64) | typed_event.map(orjson.dumps))
    headers = [f"content-type: {content_type}"] if content_type else []
    headers += draw(HEADERS)
    framing = draw(st.sampled_from(["length", "length", "chunked", "close", "short", "long"]))
    if framing == "chunked":
        headers.append("transfer-encoding: chunked")
        size = draw(st.integers(1, 16))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    elif framing in ("length", "short", "long"):
        length = len(body) + {"length": 0, "short": -min(len(body), 3), "long": 5}[framing]
        headers.append(f"content-length: {length}")
    head = f"HTTP/1.1 {status} Whatever\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return Case(api, stream, head.encode() + body)


async def forget_health(app: App) -> None:
    health = app.gateway.health
    for scope in health.snapshot():
        health.enable(scope.key)


def ask(port: int, api: str, stream: bool) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        body: dict[str, Any] = {**BODIES[api], "stream": stream}
        headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
        connection.request("POST", PATHS[api], orjson.dumps(body), headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(case=cases())
def test_no_upstream_answer_breaks_the_gateway(rig: Rig, case: Case) -> None:
    rig.upstream.response = case.response
    rig.loop.run(forget_health(rig.app))  # each example on its own (a 401 disables the route)
    before = rig.upstream.requests
    status, body = ask(rig.app.server.port, case.api, case.stream)
    problems = rig.logs.take()
    assert rig.upstream.requests > before, "the example never reached the upstream"
    assert status != 500, (status, body[:500], case)
    assert not problems, (problems, case)
    if status >= 400:
        error = orjson.loads(body)
        if case.api == "messages":
            assert error["type"] == "error" and isinstance(error["error"]["message"], str), body
        else:
            assert isinstance(error["error"]["message"], str), body


def test_an_event_of_the_wrong_type_is_dropped_and_the_stream_goes_on(rig: Rig) -> None:
    """The report's case: ``data: {"type":true}`` before the first content of a Responses stream
    raised AttributeError (a 500, no failover). It is a malformed event now: dropped, counted."""
    events = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "up"}},
        {"type": True},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hello"},
        {"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}},
    ]
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body)
    rig.upstream.response = head + body
    rig.loop.run(forget_health(rig.app))
    malformed = rig.app.runtime.counters.malformed_events
    status, answer = ask(rig.app.server.port, "responses", True)
    assert status == 200 and not rig.logs.take()
    assert b'"delta":"Hello"' in answer and answer.rstrip().endswith(b"}")
    assert b'{"type":true}' not in answer
    assert rig.app.runtime.counters.malformed_events == malformed + 1


def test_an_unusable_plain_body_is_a_classified_failure(rig: Rig) -> None:
    """A 200 whose body is not a JSON object is nothing a client could use: a failure that goes
    through the failover rules (here: no other route, so the client hears a classified 502)."""
    body = b"<html>upstream proxy error</html>"
    rig.upstream.response = b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    rig.loop.run(forget_health(rig.app))
    status, answer = ask(rig.app.server.port, "chat", False)
    assert status == 502, answer
    assert b"not a JSON object" in answer and not rig.logs.take()
