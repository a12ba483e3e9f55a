"""Every client API on every upstream API through the running gateway, with the official SDKs
consuming the translated answers through their typed helpers (which reject a malformed stream).

The fake upstream plays a scripted coding turn in each API (reasoning, a call of the request's
shell tool, then the final answer echoing the tool's output); each upstream here serves one API
only, so a request that reached the wrong API would be a 404.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.fake.conversation import DEFAULT_ANSWER, DEFAULT_COMMAND, ECHO_PREFIX
from spillgate.observe.events import AttemptFinished, Event, RequestFinished
from tests.harness import CLIENT_KEY, TIMEOUTS, Harness, hash_key, start_harness

UPSTREAMS = {
    # alias -> (provider, upstream model, the fake path it must reach)
    "via-chat": ("chat-only", "up-chat", "/v1/chat/completions"),
    "via-responses": ("responses-only", "up-responses", "/v1/responses"),
    "via-messages": ("an", "up-claude", "/v1/messages"),
}
CLIENTS = ("chat", "responses", "messages")
SHELL_SCHEMA = {
    "type": "object",
    "properties": {"cmd": {"type": "string", "description": "the command"}},
    "required": ["cmd"],
}
TOOL_OUTPUT = "spillgate-e2e\n"


def translation_config(fake: FakeUpstream) -> dict[str, Any]:
    def openai_provider(apis: list[str]) -> dict[str, Any]:
        return {"protocol": "openai", "base_url": fake.openai_base_url, "timeouts": TIMEOUTS, "apis": apis}

    return {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "test", "hash": hash_key(CLIENT_KEY)}],
        "providers": {
            "chat-only": openai_provider(["chat"]),
            "responses-only": openai_provider(["responses"]),
            "an": {"protocol": "anthropic", "base_url": fake.anthropic_base_url, "timeouts": TIMEOUTS},
        },
        "models": {
            **{alias: {"routes": [{"provider": p, "model": m}]} for alias, (p, m, _) in UPSTREAMS.items()},
            # Codex's case: its Responses primary at capacity, then Claude, then a Chat-only model.
            "agent": {
                "routes": [
                    {"provider": "responses-only", "model": "up-primary"},
                    {"provider": "an", "model": "up-claude"},
                    {"provider": "chat-only", "model": "up-chat"},
                ]
            },
            "text-only": {
                "routes": [
                    {
                        "provider": "chat-only",
                        "model": "up-chat",
                        "capabilities": {"images": False, "tools": False},
                    }
                ]
            },
        },
        "resilience": {"deadline": "8s", "backoff": {"base": "50ms", "cap": "200ms"}},
    }


@pytest.fixture
async def tg(fake: FakeUpstream) -> AsyncIterator[Harness]:
    for _, (_, model, path) in UPSTREAMS.items():
        api = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/messages": "messages"}[path]
        fake.set(model, Fault(apis=(api,)).with_conversation())
    harness = await start_harness(fake, translation_config(fake))
    yield harness
    await harness.http.close()
    await harness.app.stop(grace=1)


# -- one client turn per API, through its SDK's typed stream helper -------------------------------
def _openai(h: Harness) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _anthropic(h: Harness) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=h.url, api_key=CLIENT_KEY, max_retries=0)


class Turn:
    """What one answer held, whatever the client API: its tool call (name, arguments, id),
    text, reasoning text, the model it names and its usage."""

    def __init__(self) -> None:
        self.call: tuple[str, dict[str, Any], str] | None = None
        self.text = ""
        self.reasoning = ""
        self.model = ""
        self.input_tokens = 0
        self.output_tokens = 0


async def responses_turn(h: Harness, model: str, history: list[Any], stream: bool) -> Turn:
    client = _openai(h)
    tools: Any = [{"type": "function", "name": "exec_command", "parameters": SHELL_SCHEMA, "strict": False}]
    kwargs: dict[str, Any] = {
        "model": model,
        "input": [{"role": "developer", "content": "You are a coding agent."}, *history],
        "tools": tools,
        "reasoning": {"summary": "auto"},
    }
    try:
        if stream:
            async with client.responses.stream(**kwargs) as events:
                final = await events.get_final_response()
        else:
            final = await client.responses.create(**kwargs)
    finally:
        await client.close()
    turn = Turn()
    turn.model = final.model
    for item in final.output:
        if item.type == "function_call":
            assert item.call_id and item.call_id.startswith("call_")
            turn.call = (item.name, json.loads(item.arguments), item.call_id)
        elif item.type == "reasoning":
            turn.reasoning += "".join(s.text for s in item.summary)
    turn.text = final.output_text
    assert final.usage is not None
    turn.input_tokens, turn.output_tokens = final.usage.input_tokens, final.usage.output_tokens
    return turn


def responses_followup(turn: Turn) -> list[Any]:
    assert turn.call is not None
    name, arguments, call_id = turn.call
    return [
        {"role": "user", "content": "run it"},
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": json.dumps(arguments)},
        {"type": "function_call_output", "call_id": call_id, "output": TOOL_OUTPUT},
    ]


async def chat_turn(h: Harness, model: str, history: list[Any], stream: bool) -> Turn:
    client = _openai(h)
    tools: Any = [{"type": "function", "function": {"name": "exec_command", "parameters": SHELL_SCHEMA}}]
    messages: Any = [{"role": "system", "content": "You are a coding agent."}, *history]
    try:
        if stream:
            async with client.chat.completions.stream(
                model=model, messages=messages, tools=tools, stream_options={"include_usage": True}
            ) as events:
                final = await events.get_final_completion()
        else:
            final = await client.chat.completions.create(model=model, messages=messages, tools=tools)
    finally:
        await client.close()
    turn = Turn()
    turn.model = final.model
    message = final.choices[0].message
    if message.tool_calls:
        call = message.tool_calls[0]
        assert call.type == "function" and call.id.startswith("call_")
        turn.call = (call.function.name, json.loads(call.function.arguments), call.id)
        assert final.choices[0].finish_reason == "tool_calls"
    turn.text = message.content or ""
    assert final.usage is not None
    turn.input_tokens, turn.output_tokens = final.usage.prompt_tokens, final.usage.completion_tokens
    return turn


def chat_followup(turn: Turn) -> list[Any]:
    assert turn.call is not None
    name, arguments, call_id = turn.call
    return [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": TOOL_OUTPUT},
    ]


async def messages_turn(h: Harness, model: str, history: list[Any], stream: bool) -> Turn:
    client = _anthropic(h)
    tools: Any = [{"name": "exec_command", "description": "run a command", "input_schema": SHELL_SCHEMA}]
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 1024,
        "system": "You are a coding agent.",
        "messages": history,
        "tools": tools,
    }
    try:
        if stream:
            async with client.messages.stream(**kwargs) as events:
                final = await events.get_final_message()
        else:
            final = await client.messages.create(**kwargs)
    finally:
        await client.close()
    turn = Turn()
    turn.model = final.model
    for block in final.content:
        if block.type == "tool_use":
            assert block.id.startswith("toolu_")
            assert isinstance(block.input, dict)
            turn.call = (block.name, block.input, block.id)
            assert final.stop_reason == "tool_use"
        elif block.type == "text":
            turn.text += block.text
        elif block.type == "thinking":
            turn.reasoning += block.thinking
    turn.input_tokens, turn.output_tokens = final.usage.input_tokens, final.usage.output_tokens
    return turn


def messages_followup(turn: Turn) -> list[Any]:
    assert turn.call is not None
    name, arguments, call_id = turn.call
    return [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call_id, "name": name, "input": arguments}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call_id, "content": TOOL_OUTPUT}],
        },
    ]


TURNS = {"chat": chat_turn, "responses": responses_turn, "messages": messages_turn}
FOLLOWUPS = {"chat": chat_followup, "responses": responses_followup, "messages": messages_followup}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("alias", list(UPSTREAMS))
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_coding_turn_on_every_upstream_api(
    tg: Harness, client: str, alias: str, stream: bool
) -> None:
    """Step 1: the tool call; step 2 (the call and its output in the history): the answer."""
    _, upstream_model, path = UPSTREAMS[alias]
    first = await TURNS[client](tg, alias, [{"role": "user", "content": "run it"}], stream)
    assert first.call is not None, first.text
    name, arguments, _ = first.call
    assert name == "exec_command" and arguments == {"cmd": DEFAULT_COMMAND}
    assert first.model == upstream_model
    assert first.output_tokens > 0 and first.input_tokens > 0
    if client != "chat":  # Chat has no reasoning in its answers' types (reasoning_content is extra)
        assert first.reasoning, "the upstream's reasoning reached the client"
    second = await TURNS[client](tg, alias, FOLLOWUPS[client](first), stream)
    assert second.call is None
    assert DEFAULT_ANSWER in second.text and f"{ECHO_PREFIX}{TOOL_OUTPUT.strip()}" in second.text
    # Every request reached the upstream's own API, and only it.
    assert {a.path for a in tg.fake.attempts_for(upstream_model)} == {path}


def _recorder(h: Harness) -> list[Event]:
    seen: list[Event] = []
    h.app.gateway.events.subscribe(seen.append)
    return seen


async def test_codex_primary_at_capacity_fails_over_to_messages_invisibly(tg: Harness) -> None:
    tg.fake.set("up-primary", Fault.capacity())
    seen = _recorder(tg)
    turn = await responses_turn(tg, "agent", [{"role": "user", "content": "run it"}], stream=True)
    assert turn.call is not None and turn.model == "up-claude"
    attempts = [e for e in seen if isinstance(e, AttemptFinished)]
    assert [(a.route, a.ok, a.api, a.upstream_api) for a in attempts] == [
        ("agent[0]", False, "openai-responses", "openai-responses"),
        ("agent[1]", True, "openai-responses", "anthropic-messages"),
    ]
    request = next(e for e in seen if isinstance(e, RequestFinished))
    assert request.upstream_api == "anthropic-messages" and request.ok
    # Then Claude at capacity too: the Chat-only route answers.
    tg.fake.set("up-claude", Fault.capacity())
    followup = await responses_turn(tg, "agent", responses_followup(turn), stream=True)
    assert DEFAULT_ANSWER in followup.text and followup.model == "up-chat"


async def test_a_hosted_tool_is_left_out_and_recorded(tg: Harness) -> None:
    seen = _recorder(tg)
    client = _openai(tg)
    tools: Any = [
        {"type": "function", "name": "exec_command", "parameters": SHELL_SCHEMA, "strict": False},
        {"type": "web_search"},
    ]
    reply = await client.responses.create(model="via-chat", input="run it", tools=tools)
    await client.close()
    assert any(item.type == "function_call" for item in reply.output)
    attempt = next(e for e in seen if isinstance(e, AttemptFinished))
    assert attempt.omitted is not None and "web_search" in attempt.omitted
    sent = json.loads(tg.fake.attempts_for("up-chat")[-1].body)
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec_command"]


UNCARRIABLE = [
    pytest.param(
        "/v1/responses",
        {"model": "via-chat", "input": "hi", "previous_response_id": "resp_1"},
        "previous_response_id",
        id="previous-response-id-on-a-stateless-route",
    ),
    pytest.param(
        "/v1/responses",
        {
            "model": "via-messages",
            "input": "hi",
            "tools": [{"type": "web_search"}],
            "tool_choice": {"type": "web_search"},
        },
        "hosted tool",
        id="a-required-hosted-tool",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "model": "text-only",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ],
        },
        "capabilities.images",
        id="an-image-to-a-text-only-route",
    ),
    pytest.param(
        "/v1/messages",
        {
            "model": "text-only",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        }
                    ],
                }
            ],
        },
        "capabilities.images",
        id="an-anthropic-image-to-a-text-only-route",
    ),
    pytest.param(
        "/v1/responses",
        {
            "model": "text-only",
            "input": "run it",
            "tools": [{"type": "function", "name": "exec_command", "parameters": SHELL_SCHEMA}],
        },
        "capabilities.tools",
        id="tools-to-a-route-without-tools",
    ),
    pytest.param(
        "/v1/messages",
        {
            "model": "via-chat",
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                        }
                    ],
                }
            ],
        },
        "document",
        id="a-document-block",
    ),
]


@pytest.mark.parametrize(("path", "body", "fragment"), UNCARRIABLE)
async def test_what_cannot_be_carried_is_a_400_naming_it_and_the_routes(
    tg: Harness, path: str, body: dict[str, Any], fragment: str
) -> None:
    attempts_before = len(tg.fake.attempts)
    reply = await tg.call(path, body)
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    message = error["message"]
    assert fragment in message and f"{body['model']}[0]" in message and "cannot carry" in message
    if path == "/v1/messages":
        assert error["type"] == "invalid_request_error"
    else:
        assert error["code"] == "unsupported_request"
    assert reply.headers["x-should-retry"] == "false"
    assert len(tg.fake.attempts) == attempts_before, "nothing was sent upstream"


async def test_a_route_that_can_carry_it_is_used_when_another_cannot(tg: Harness) -> None:
    """previous_response_id: the Chat route is skipped (its reason kept), the Responses one answers."""
    config = translation_config(tg.fake)
    config["models"]["mixed"] = {
        "routes": [
            {"provider": "chat-only", "model": "up-chat"},
            {"provider": "responses-only", "model": "up-responses"},
        ]
    }
    harness = await start_harness(tg.fake, config)
    try:
        reply = await harness.call(
            "/v1/responses", {"model": "mixed", "input": "hi", "previous_response_id": "r"}
        )
        assert reply.status == 200 and reply.headers["x-spillgate-route"] == "mixed[1]"
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


@pytest.mark.parametrize(
    ("alias", "counted"),
    [("via-messages", "upstream"), ("via-chat", "estimated")],
    ids=["relayed-to-anthropic", "estimated-for-chat"],
)
async def test_count_tokens_for_every_route(tg: Harness, alias: str, counted: str) -> None:
    body = {"model": alias, "messages": [{"role": "user", "content": "hello " * 40}], "system": "be brief"}
    reply = await tg.call("/v1/messages/count_tokens", body)
    assert reply.status == 200, reply.body
    assert reply.headers["x-spillgate-token-count"] == counted
    tokens = reply.json()["input_tokens"]
    assert isinstance(tokens, int) and 40 <= tokens <= 400
    client = _anthropic(tg)
    counted_by_sdk = await client.messages.count_tokens(
        model=alias, messages=[{"role": "user", "content": "hi"}]
    )
    await client.close()
    assert counted_by_sdk.input_tokens > 0


async def test_count_tokens_refuses_a_bad_body_in_anthropic_shape(tg: Harness) -> None:
    reply = await tg.call("/v1/messages/count_tokens", {"model": "via-chat", "messages": "hi"})
    assert reply.status == 400
    assert reply.json()["type"] == "error" and "messages" in reply.json()["error"]["message"]
    assert (await tg.call("/v1/messages/count_tokens", {"model": "nope", "messages": []})).status == 404
    assert (
        await tg.call("/v1/messages/count_tokens", {"model": "via-chat", "messages": []}, key="bad")
    ).status == 401


# -- resilience across protocols ------------------------------------------------------------------
def recovery_config(fake: FakeUpstream) -> dict[str, Any]:
    config = translation_config(fake)
    config["models"]["recover"] = {
        "routes": [
            {"provider": "responses-only", "model": "up-first"},
            {"provider": "an", "model": "up-second"},
            {"provider": "chat-only", "model": "up-third", "supports_prefill": True},
        ]
    }
    return config


async def _final_text(h: Harness, client: str, model: str) -> tuple[str, str | None]:
    """The streamed plain answer's text (through the SDK's typed helper) and the route header."""
    if client == "responses":
        oa = _openai(h)
        async with oa.responses.stream(model=model, input="hi") as events:
            final = await events.get_final_response()
        await oa.close()
        return final.output_text, None
    ant = _anthropic(h)
    async with ant.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = await stream.get_final_message()
    await ant.close()
    return "".join(b.text for b in message.content if b.type == "text"), message.stop_reason


async def test_a_stream_cut_after_content_is_replayed_on_another_protocol(fake: FakeUpstream) -> None:
    """A Responses stream cut mid-answer: replayed on the Anthropic route, the client's stream
    goes on in its own grammar and ids (the SDK accepts it) with the whole text once."""
    from spillgate.fake import DEFAULT_TEXT

    fake.set("up-first", Fault(cut_after_events=5, apis=("responses",)))
    fake.set("up-second", Fault(apis=("messages",)))
    harness = await start_harness(fake, recovery_config(fake))
    seen = _recorder(harness)
    try:
        text, _ = await _final_text(harness, "responses", "recover")
        assert text == DEFAULT_TEXT
        request = next(e for e in seen if isinstance(e, RequestFinished))
        assert request.recovered == "replay" and request.upstream_api == "anthropic-messages"
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_a_messages_stream_is_continued_by_prefill_on_a_chat_route(fake: FakeUpstream) -> None:
    """Claude Code's stream cut on Anthropic: continued on the Chat route (prefill there), not
    replayed; the client sees one answer."""
    from spillgate.fake import DEFAULT_TEXT

    config = recovery_config(fake)
    config["models"]["recover"]["routes"] = config["models"]["recover"]["routes"][1:]
    fake.set("up-second", Fault(cut_after_events=5, apis=("messages",)))
    fake.set("up-third", Fault(apis=("chat",)))
    harness = await start_harness(fake, config)
    seen = _recorder(harness)
    try:
        text, stop = await _final_text(harness, "messages", "recover")
        assert text == DEFAULT_TEXT and stop == "end_turn"
        request = next(e for e in seen if isinstance(e, RequestFinished))
        assert request.recovered == "continuation"
        sent = json.loads(fake.attempts_for("up-third")[-1].body)
        assert sent["messages"][-1]["role"] == "assistant" and sent["messages"][-1].get("prefix") is True
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_an_in_stream_error_before_content_fails_over_across_protocols(fake: FakeUpstream) -> None:
    fake.set(
        "up-first",
        Fault(stream_error_after_events=1, stream_error_code="server_is_overloaded", apis=("responses",)),
    )
    fake.set("up-second", Fault(apis=("messages",)))
    harness = await start_harness(fake, recovery_config(fake))
    seen = _recorder(harness)
    try:
        text, _ = await _final_text(harness, "responses", "recover")
        assert text
        attempts = [e for e in seen if isinstance(e, AttemptFinished)]
        assert [(a.ok, a.error_class) for a in attempts] == [(False, "capacity"), (True, None)]
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_a_translated_stream_that_breaks_everywhere_ends_in_the_clients_grammar(
    fake: FakeUpstream,
) -> None:
    """Every route cuts after content: Codex gets response.failed (server_error, retried by it),
    never a normal ending."""
    config = recovery_config(fake)
    config["models"]["recover"]["routes"] = [config["models"]["recover"]["routes"][1]]
    fake.set("up-second", Fault(cut_after_events=5, apis=("messages",)))
    harness = await start_harness(fake, config)
    try:
        reply = await harness.call("/v1/responses", {"model": "recover", "input": "hi", "stream": True})
        events = reply.events()
        names = [name for name, _ in events]
        assert "response.completed" not in names and names[-1] == "response.failed", names
        failed = json.loads(events[-1][1])
        assert failed["response"]["error"]["code"] == "server_error"
        assert names[0] == "response.created"
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
