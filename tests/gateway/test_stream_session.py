"""The dispatcher and the stream session through the in-process mock transport: no sockets, a
hand-driven clock. Prefix matching of a replay, rewriting into the client's ids, prefill bodies
of a continuation, and cooldowns that end when the clock moves."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from spillgate.config.loader import parse_settings
from spillgate.gateway.core import Gateway
from spillgate.gateway.runtime import Runtime
from spillgate.http.client import FailureKind
from spillgate.http.mock import MockReply, MockRequest, MockTransport
from spillgate.http.server import Request
from spillgate.protocols.apis import Api

from ..clock import FakeClock

SSE = [("content-type", "text/event-stream")]
JSON = [("content-type", "application/json")]


def chat_event(text: str | None = None, finish: str | None = None, chunk: str = "chatcmpl-A") -> bytes:
    delta = {"content": text} if text is not None else {}
    payload = {
        "id": chunk,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chat_stream(pieces: list[str], *, chunk: str, end: bool = True) -> list[bytes]:
    events = [chat_event(p, chunk=chunk) for p in pieces]
    if end:
        events += [chat_event(finish="stop", chunk=chunk), b"data: [DONE]\n\n"]
    return events


def anthropic_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


def anthropic_stream(pieces: list[str], *, msg: str, end: bool = True) -> list[bytes]:
    events = [
        anthropic_event(
            "message_start", {"message": {"id": msg, "model": "m", "usage": {"input_tokens": 3}}}
        ),
        anthropic_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [
        anthropic_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    ]
    if end:
        events += [
            anthropic_event("content_block_stop", {"index": 0}),
            anthropic_event(
                "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}
            ),
            anthropic_event("message_stop", {}),
        ]
    return events


def responses_event(name: str, seq: int, **payload: Any) -> bytes:
    body = {"type": name, "sequence_number": seq, **payload}
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def responses_stream(pieces: list[str], *, resp: str, item: str, end: bool = True) -> list[bytes]:
    events = [
        responses_event("response.created", 0, response={"id": resp, "model": "m", "status": "in_progress"}),
        responses_event(
            "response.output_item.added", 1, output_index=0, item={"id": item, "type": "message"}
        ),
        responses_event("response.content_part.added", 2, item_id=item, output_index=0, content_index=0),
    ]
    seq = 3
    for p in pieces:
        events.append(
            responses_event(
                "response.output_text.delta", seq, item_id=item, output_index=0, content_index=0, delta=p
            )
        )
        seq += 1
    if end:
        done = {"id": resp, "status": "completed", "usage": {"input_tokens": 3, "output_tokens": 2}}
        events.append(responses_event("response.completed", seq, response=done))
    return events


@dataclass
class Upstream:
    """Replies per upstream model, in order; every request kept."""

    replies: dict[str, list[MockReply | FailureKind]] = field(default_factory=lambda: defaultdict(list))
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, request: MockRequest) -> MockReply | FailureKind:
        body = orjson.loads(request.body)
        self.seen.append((body["model"], body))
        queue = self.replies[body["model"]]
        assert queue, f"no reply scripted for {body['model']}"
        return queue.pop(0)

    def bodies(self, model: str) -> list[dict[str, Any]]:
        return [body for name, body in self.seen if name == model]


@dataclass
class Recorder:
    """A ResponseWriter that keeps what the client would have received."""

    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    started: bool = False
    disconnected: bool = False
    ended: bool = False

    async def send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.start(status, headers, body, final=True)

    def start(
        self, status: int, headers: list[tuple[str, str]], first: bytes = b"", final: bool = False
    ) -> None:
        self.started, self.status, self.headers, self.body, self.ended = True, status, headers, first, final

    async def write(self, data: bytes) -> None:
        self.body += data

    async def end(self, last: bytes = b"") -> None:
        self.body += last
        self.ended = True

    def abort(self, reset: bool = False) -> None:
        self.ended = True

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def events(self) -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        for raw in self.body.split(b"\n\n"):
            if not raw.strip():
                continue
            name = None
            data = b""
            for line in raw.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            out.append((name, data.decode() if data == b"[DONE]" else orjson.loads(data)))
        return out

    def text(self) -> str:
        parts = []
        for name, data in self.events():
            if not isinstance(data, dict):
                continue
            if data.get("choices"):
                parts.append(data["choices"][0]["delta"].get("content") or "")
            elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
                parts.append(data["delta"]["text"])
            elif name == "response.output_text.delta":
                parts.append(data["delta"])
        return "".join(parts)


PROTOCOL = {"chat": "openai", "responses": "openai", "messages": "anthropic"}
API = {"chat": Api.OPENAI_CHAT, "responses": Api.OPENAI_RESPONSES, "messages": Api.ANTHROPIC_MESSAGES}
PATH = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


def gateway(upstream: Upstream, api: str, clock: FakeClock, *, prefill: bool = False) -> Gateway:
    protocol = PROTOCOL[api]
    base = "http://mock.invalid" + ("/v1" if protocol == "openai" else "")
    timeouts = {"connect": "1s", "first_byte": "1s", "first_token": "1s", "stream_idle": "1s", "total": "3s"}
    config = {
        "listen": "127.0.0.1:0",
        "metrics": "off",
        "providers": {
            "p": {"protocol": protocol, "base_url": base, "api_key": "sk-up", "timeouts": timeouts}
        },
        "models": {
            "coder": {
                "routes": [
                    {"provider": "p", "model": "primary"},
                    {"provider": "p", "model": "secondary", "supports_prefill": prefill},
                ]
            }
        },
        "resilience": {"cooldowns": {"capacity": "1s"}, "backoff": {"base": "1ms", "cap": "1ms"}},
    }
    settings = parse_settings(config, env={}, source="test")
    transport = MockTransport(upstream)
    return Gateway(settings, Runtime.create(settings, clock=clock, transport=lambda _p, _l: transport))


async def ask(gw: Gateway, api: str, stream: bool = True) -> Recorder:
    body: dict[str, Any] = {"model": "coder", "stream": stream}
    if api == "responses":
        body["input"] = "hi"
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
    if api == "messages":
        body["max_tokens"] = 16
    headers = {"host": "127.0.0.1", "content-type": "application/json", "anthropic-version": "2023-06-01"}
    request = Request("POST", PATH[api], "", headers, orjson.dumps(body), True, "127.0.0.1")
    writer = Recorder()
    await gw.serve_api(API[api], request, writer)  # type: ignore[arg-type]
    return writer


async def test_a_replay_streams_only_what_the_client_does_not_have_in_the_first_streams_ids() -> None:
    up = Upstream()
    up.replies["primary"].append(
        MockReply(200, SSE, chat_stream(["Hel", "lo"], chunk="chatcmpl-A", end=False), FailureKind.RESET)
    )
    up.replies["secondary"].append(
        MockReply(200, SSE, chat_stream(["Hello", " wor", "ld"], chunk="chatcmpl-B"))
    )
    reply = await ask(gateway(up, "chat", FakeClock()), "chat")
    assert reply.status == 200 and reply.text() == "Hello world"
    ids = {data["id"] for _, data in reply.events() if isinstance(data, dict)}
    assert ids == {"chatcmpl-A"}  # the replay's chunks rewritten into the client's stream id
    assert reply.events()[-1] == (None, "[DONE]")
    assert "prefix" not in str(up.bodies("secondary")[0]["messages"])  # a replay, not a prefill


async def test_a_replay_that_tells_another_story_ends_with_an_in_band_error() -> None:
    up = Upstream()
    up.replies["primary"].append(
        MockReply(200, SSE, chat_stream(["Hello"], chunk="chatcmpl-A", end=False), FailureKind.RESET)
    )
    up.replies["secondary"].append(MockReply(200, SSE, chat_stream(["Goodbye"], chunk="chatcmpl-B")))
    reply = await ask(gateway(up, "chat", FakeClock()), "chat")
    assert reply.text() == "Hello"  # nothing of the other story reached the client
    _, last = reply.events()[-1]
    assert isinstance(last, dict) and last["error"]["code"] == "server_error"
    assert all(data != "[DONE]" for _, data in reply.events())


async def test_a_continuation_prefills_the_text_sent_and_drops_the_whitespace_it_repeats() -> None:
    up = Upstream()
    up.replies["primary"].append(
        MockReply(200, SSE, anthropic_stream(["Hello "], msg="msg_A", end=False), FailureKind.RESET)
    )
    up.replies["secondary"].append(MockReply(200, SSE, anthropic_stream([" world"], msg="msg_B")))
    reply = await ask(gateway(up, "messages", FakeClock(), prefill=True), "messages")
    assert reply.text() == "Hello world"
    (body,) = up.bodies("secondary")
    # Anthropic's prefill: a last assistant message holding the text sent, trailing space left out.
    assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}
    assert [name for name, _ in reply.events()].count("message_start") == 1
    assert reply.events()[-1][0] == "message_stop"


async def test_a_refused_prefill_is_replayed_and_its_400_is_not_the_error() -> None:
    up = Upstream()
    up.replies["primary"].append(
        MockReply(200, SSE, chat_stream(["Hello"], chunk="chatcmpl-A", end=False), FailureKind.RESET)
    )
    refusal = orjson.dumps({"error": {"message": "prefix is not supported", "type": "invalid_request_error"}})
    up.replies["secondary"].append(MockReply(400, JSON, [refusal]))
    up.replies["secondary"].append(MockReply(200, SSE, chat_stream(["Hello", "!"], chunk="chatcmpl-B")))
    reply = await ask(gateway(up, "chat", FakeClock(), prefill=True), "chat")
    assert reply.text() == "Hello!"
    prefill, replay = up.bodies("secondary")
    assert prefill["messages"][-1] == {"role": "assistant", "content": "Hello", "prefix": True}
    assert replay["messages"][-1]["role"] == "user"


async def test_responses_never_continue_and_a_replay_keeps_the_clients_ids_and_sequence() -> None:
    up = Upstream()
    up.replies["primary"].append(
        MockReply(
            200, SSE, responses_stream(["Hi"], resp="resp_A", item="msg_A", end=False), FailureKind.RESET
        )
    )
    up.replies["secondary"].append(
        MockReply(200, SSE, responses_stream(["Hi", " there"], resp="resp_B", item="msg_B"))
    )
    reply = await ask(gateway(up, "responses", FakeClock(), prefill=True), "responses")
    assert reply.text() == "Hi there"
    (body,) = up.bodies("secondary")
    assert body["input"] == "hi"  # replayed as asked: Responses has no assistant prefill
    events = [data for _, data in reply.events()]
    sequence = [e["sequence_number"] for e in events]
    assert sequence == list(range(len(sequence)))
    assert {e["item_id"] for e in events if "item_id" in e} == {"msg_A"}
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["id"] == "resp_A"


@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_a_capacity_cooldown_ends_when_the_clock_moves_not_after_a_sleep(api: str) -> None:
    up = Upstream()
    clock = FakeClock(100.0)
    gw = gateway(up, api, clock)
    busy = orjson.dumps({"error": {"message": "Selected model is at capacity.", "type": "server_error"}})
    ok = chat_stream(["ok"], chunk="chatcmpl-S") if api == "chat" else anthropic_stream(["ok"], msg="msg_S")
    up.replies["primary"].append(MockReply(503, JSON, [busy]))
    up.replies["secondary"] += [MockReply(200, SSE, list(ok)) for _ in range(2)]
    first = await ask(gw, api)
    assert first.text() == "ok" and first.header("x-spillgate-attempts") == "2"
    second = await ask(gw, api)  # the primary is cooling down: not touched
    assert second.header("x-spillgate-attempts") == "1" and len(up.bodies("primary")) == 1
    clock.now += 1.05
    up.replies["primary"].append(
        MockReply(
            200,
            SSE,
            chat_stream(["back"], chunk="chatcmpl-P")
            if api == "chat"
            else anthropic_stream(["back"], msg="msg_P"),
        )
    )
    third = await ask(gw, api)
    assert third.text() == "back" and len(up.bodies("primary")) == 2
