"""The scripted coding turn (``Fault.conversation``) in Chat Completions and Anthropic Messages:
pure replies, whole bodies and streams over real HTTP, the streams read by the real SDK helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from spillgate.fake import Conversation, FakeUpstream, Fault
from spillgate.fake.content import StreamEvents, chat_reply_stream, messages_reply_stream
from spillgate.fake.conversation import (
    ECHO_PREFIX,
    Reply,
    ToolCall,
    call_id,
    shell_call,
    thinking_signature,
)
from spillgate.fake.protocol import ANTHROPIC, CHAT, RESPONSES, ApiProtocol

COMMAND = "echo spillgate-e2e"
REASONING = Conversation().reasoning
FINAL = "SPILLGATE-E2E-DONE\n" + ECHO_PREFIX + "spillgate-e2e"
EXEC_OUTPUT = (
    "Chunk ID: 1\nWall time: 0.0000 seconds\nProcess exited with code 0\n"
    "Original token count: 4\nOutput:\nspillgate-e2e\n"
)
PATHS: dict[ApiProtocol, str] = {CHAT: "/v1/chat/completions", ANTHROPIC: "/v1/messages"}

CMD_SCHEMA = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
ARRAY_SCHEMA = {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}
STRING_SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}}
# Claude Code's shell tool (abridged to the properties that matter here).
BASH = {
    "name": "Bash",
    "description": "Executes a given bash command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
        "required": ["command"],
    },
}


def chat_tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


CHAT_EXEC = chat_tool("exec_command", CMD_SCHEMA)


def chat_request(
    tools: list[Any] | None = None, *, outputs: Sequence[object] = (), **extra: Any
) -> dict[str, Any]:
    """A Chat Completions request carrying one tool call and its ``role: tool`` result per output."""
    messages: list[object] = [{"role": "user", "content": "check it"}]
    for step, output in enumerate(outputs):
        cid = call_id(COMMAND, step)
        call = {"id": cid, "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": cid, "content": output})
    return {"model": "m", "messages": messages, "tools": [CHAT_EXEC] if tools is None else tools, **extra}


def messages_request(
    tools: list[Any] | None = None,
    *,
    outputs: Sequence[object] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A Messages request carrying one tool_use and its ``tool_result`` block per output."""
    messages: list[object] = [{"role": "user", "content": "check it"}]
    for step, output in enumerate(outputs):
        tid = call_id(COMMAND, step, "toolu_")
        thinking = {"type": "thinking", "thinking": REASONING, "signature": thinking_signature(REASONING)}
        use = {"type": "tool_use", "id": tid, "name": "Bash", "input": {"command": COMMAND}}
        messages.append({"role": "assistant", "content": [thinking, use]})
        result = {"type": "tool_result", "tool_use_id": tid, "content": output}
        messages.append({"role": "user", "content": [result]})
    return {
        "model": "m",
        "max_tokens": 1024,
        "messages": messages,
        "tools": [BASH] if tools is None else tools,
        **extra,
    }


# -- the reply, per API ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    call: tuple[str, dict[str, Any], str] | None = None
    """(tool name, arguments, call id prefix)"""
    text: str | None = None
    """The final text, or the start of it (``prefix``)."""
    prefix: bool = False
    step: int = 0


NO_SHELL = "fake upstream: the request offers no shell tool"

REPLY_CASES = [
    pytest.param(
        CHAT, chat_request(), Expect(call=("exec_command", {"cmd": COMMAND}, "call_")), id="chat-exec_command"
    ),
    pytest.param(
        CHAT,
        chat_request([chat_tool("shell", ARRAY_SCHEMA)]),
        Expect(call=("shell", {"command": ["bash", "-lc", COMMAND]}, "call_")),
        id="chat-shell-array",
    ),
    pytest.param(
        CHAT,
        chat_request([chat_tool("shell_command", STRING_SCHEMA)]),
        Expect(call=("shell_command", {"command": COMMAND}, "call_")),
        id="chat-shell_command",
    ),
    pytest.param(
        CHAT,
        chat_request([chat_tool("Bash", STRING_SCHEMA), CHAT_EXEC]),
        Expect(call=("exec_command", {"cmd": COMMAND}, "call_")),
        id="chat-exec_command-preferred",
    ),
    pytest.param(
        CHAT,
        chat_request([{"type": "function", "name": "exec_command", "parameters": CMD_SCHEMA}]),
        Expect(text=NO_SHELL, prefix=True),
        id="chat-responses-shaped-tool-is-not-a-chat-tool",
    ),
    pytest.param(CHAT, chat_request(outputs=[EXEC_OUTPUT]), Expect(text=FINAL, step=1), id="chat-step1"),
    pytest.param(
        CHAT,
        chat_request(
            outputs=[[{"type": "text", "text": "line one\n"}, {"type": "text", "text": "line two"}]]
        ),
        Expect(text="SPILLGATE-E2E-DONE\ntool output: line one line two", step=1),
        id="chat-step1-text-parts",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request(),
        Expect(call=("Bash", {"command": COMMAND}, "toolu_")),
        id="messages-bash",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request([{"name": "exec_command", "input_schema": CMD_SCHEMA}, BASH]),
        Expect(call=("exec_command", {"cmd": COMMAND}, "toolu_")),
        id="messages-exec_command-preferred",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request([{"type": "custom", "name": "shell", "input_schema": ARRAY_SCHEMA}]),
        Expect(call=("shell", {"command": ["bash", "-lc", COMMAND]}, "toolu_")),
        id="messages-custom-typed-tool",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request([{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]),
        Expect(text=NO_SHELL, prefix=True),
        id="messages-server-tool-only",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request(outputs=["spillgate-e2e\n"]),
        Expect(text=FINAL, step=1),
        id="messages-step1",
    ),
    pytest.param(
        ANTHROPIC,
        messages_request(outputs=[[{"type": "text", "text": "a"}, {"type": "image", "source": {}}]]),
        Expect(text="SPILLGATE-E2E-DONE\ntool output: a", step=1),
        id="messages-step1-content-blocks",
    ),
    pytest.param(
        RESPONSES,
        {
            "model": "m",
            "input": [],
            "tools": [{"type": "function", "name": "Bash", "parameters": STRING_SCHEMA}],
        },
        Expect(call=("Bash", {"command": COMMAND}, "call_")),
        id="responses-bash",
    ),
    pytest.param(
        RESPONSES,
        chat_request(outputs=[EXEC_OUTPUT]),
        Expect(text=NO_SHELL, prefix=True),
        id="responses-ignores-chat-history-and-tools",
    ),
]


@pytest.mark.parametrize(("protocol", "payload", "expect"), REPLY_CASES)
def test_reply(protocol: ApiProtocol, payload: dict[str, Any], expect: Expect) -> None:
    reply = Conversation().reply(payload, protocol)
    assert reply.reasoning == REASONING and reply.step == expect.step
    if expect.call is None:
        assert reply.call is None and reply.text is not None and expect.text is not None
        assert reply.text.startswith(expect.text) if expect.prefix else reply.text == expect.text
    else:
        name, arguments, prefix = expect.call
        assert reply.text is None and reply.call is not None
        assert (reply.call.name, json.loads(reply.call.arguments)) == (name, arguments)
        assert reply.call.call_id == call_id(COMMAND, expect.step, prefix)


def test_several_commands_step_through_in_each_api() -> None:
    conversation = Conversation(commands=("ls", "pwd"))
    builders: list[tuple[ApiProtocol, Any]] = [(CHAT, chat_request), (ANTHROPIC, messages_request)]
    for protocol, build in builders:
        steps = [conversation.reply(build(outputs=["x"] * k), protocol) for k in range(3)]
        assert [json.loads(s.call.arguments) if s.call else s.text for s in steps[:2]] in (
            [{"cmd": "ls"}, {"cmd": "pwd"}],
            [{"command": "ls"}, {"command": "pwd"}],
        ), protocol
        assert steps[2].call is None and steps[2].text == "SPILLGATE-E2E-DONE\ntool output: x"


def test_shell_call_keeps_its_responses_default() -> None:
    tools = [{"type": "function", "name": "exec_command", "parameters": CMD_SCHEMA}]
    call = shell_call(tools, COMMAND, 0)
    assert call == ToolCall("exec_command", '{"cmd":"echo spillgate-e2e"}', call_id(COMMAND, 0))
    assert call_id(COMMAND, 0).startswith("call_")


# -- whole bodies over HTTP -----------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post_json(
    session: aiohttp.ClientSession, fake: FakeUpstream, protocol: ApiProtocol, body: dict[str, Any]
) -> Any:
    async with session.post(fake.base_url + PATHS[protocol], json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


CHAT_CALL_MESSAGE = {
    "role": "assistant",
    "content": None,
    "refusal": None,
    "reasoning_content": REASONING,
    "tool_calls": [
        {
            "id": call_id(COMMAND, 0),
            "type": "function",
            "function": {"name": "exec_command", "arguments": '{"cmd":"echo spillgate-e2e"}'},
        }
    ],
}
CHAT_FINAL_MESSAGE = {"role": "assistant", "content": FINAL, "refusal": None, "reasoning_content": REASONING}
THINKING_BLOCK = {"type": "thinking", "thinking": REASONING, "signature": thinking_signature(REASONING)}
TOOL_USE_BLOCK = {
    "type": "tool_use",
    "id": call_id(COMMAND, 0, "toolu_"),
    "name": "Bash",
    "input": {"command": COMMAND},
}


async def test_chat_whole_bodies(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault().with_conversation())
    first = await post_json(session, fake, CHAT, chat_request())
    assert first["id"].startswith("chatcmpl-") and first["object"] == "chat.completion"
    assert first["choices"] == [
        {"index": 0, "message": CHAT_CALL_MESSAGE, "logprobs": None, "finish_reason": "tool_calls"}
    ]
    # 5 reasoning deltas + 5 argument pieces, as the stream would send them.
    assert first["usage"]["completion_tokens"] == 10
    usage = first["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    final = await post_json(session, fake, CHAT, chat_request(outputs=[EXEC_OUTPUT]))
    assert final["choices"] == [
        {"index": 0, "message": CHAT_FINAL_MESSAGE, "logprobs": None, "finish_reason": "stop"}
    ]
    assert [(a.path, a.protocol, a.outcome) for a in fake.attempts] == [
        ("/v1/chat/completions", CHAT, "ok"),
        ("/v1/chat/completions", CHAT, "ok"),
    ]


async def test_messages_whole_bodies(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault().with_conversation())
    first = await post_json(session, fake, ANTHROPIC, messages_request())
    assert first["id"].startswith("msg_") and first["type"] == "message" and first["role"] == "assistant"
    assert first["content"] == [THINKING_BLOCK, TOOL_USE_BLOCK]
    assert (first["stop_reason"], first["stop_sequence"]) == ("tool_use", None)
    assert first["usage"]["output_tokens"] == 10 and first["usage"]["input_tokens"] > 0

    final = await post_json(session, fake, ANTHROPIC, messages_request(outputs=["spillgate-e2e\n"]))
    assert final["content"] == [THINKING_BLOCK, {"type": "text", "text": FINAL}]
    assert final["stop_reason"] == "end_turn"


async def test_no_reasoning_leaves_it_out(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault().with_conversation(Conversation(reasoning="")))
    chat = await post_json(session, fake, CHAT, chat_request())
    assert "reasoning_content" not in chat["choices"][0]["message"]
    message = await post_json(session, fake, ANTHROPIC, messages_request())
    assert [block["type"] for block in message["content"]] == ["tool_use"]


# -- streams: the grammar frame by frame ----------------------------------------------------------


async def raw_frames(
    session: aiohttp.ClientSession, fake: FakeUpstream, protocol: ApiProtocol, body: dict[str, Any]
) -> tuple[list[tuple[str | None, str]], bool]:
    """((event name, data) per SSE frame, whether the body ended cleanly)."""
    chunks: list[bytes] = []
    clean = True
    async with session.post(fake.base_url + PATHS[protocol], json={**body, "stream": True}) as resp:
        assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
        try:
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:
            clean = False
    frames: list[tuple[str | None, str]] = []
    for frame in b"".join(chunks).decode().split("\n\n"):
        if not frame:
            continue
        name, data = None, ""
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        frames.append((name, data))
    return frames, clean


def chat_shape(data: str) -> str:
    """One word per chunk of a Chat stream."""
    if data == "[DONE]":
        return "[DONE]"
    chunk = json.loads(data)
    if not chunk["choices"]:
        return "usage"
    choice = chunk["choices"][0]
    delta = choice["delta"]
    if choice["finish_reason"]:
        return f"finish:{choice['finish_reason']}"
    if "role" in delta:
        return "role"
    if "reasoning_content" in delta:
        return "reasoning"
    if "tool_calls" in delta:
        return "call" if "id" in delta["tool_calls"][0] else "arguments"
    return "content"


def messages_shape(name: str | None, data: str) -> str:
    """One word per event of a Messages stream: the event, with its block or delta type."""
    event = json.loads(data)
    assert event["type"] == name, "the event name and the data's type agree"
    if name == "content_block_start":
        return f"start:{event['content_block']['type']}"
    if name == "content_block_delta":
        return str(event["delta"]["type"])
    if name == "message_delta":
        return f"message_delta:{event['delta']['stop_reason']}"
    return str(name)


CHAT_STREAMS = [
    pytest.param(
        chat_request(),
        True,
        ["role", *["reasoning"] * 5, "call", *["arguments"] * 5, "finish:tool_calls", "usage", "[DONE]"],
        id="tool-call-with-usage",
    ),
    pytest.param(
        chat_request(outputs=[EXEC_OUTPUT]),
        False,
        ["role", *["reasoning"] * 5, *["content"] * 5, "finish:stop", "[DONE]"],
        id="final-answer",
    ),
]


@pytest.mark.parametrize(("body", "include_usage", "shape"), CHAT_STREAMS)
async def test_chat_stream_grammar(
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    body: dict[str, Any],
    include_usage: bool,
    shape: list[str],
) -> None:
    fake.set("m", Fault().with_conversation())
    if include_usage:
        body = {**body, "stream_options": {"include_usage": True}}
    frames, clean = await raw_frames(session, fake, CHAT, body)
    assert clean and all(name is None for name, _ in frames)
    assert [chat_shape(data) for _, data in frames] == shape
    chunks = [json.loads(data) for _, data in frames[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(("usage" in c) == include_usage for c in chunks)
    role = chunks[0]["choices"][0]["delta"]
    assert role == {"role": "assistant", "content": None if "call" in shape else ""}
    call_chunks = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    if call_chunks:
        assert call_chunks[0] == {
            "index": 0,
            "id": call_id(COMMAND, 0),
            "type": "function",
            "function": {"name": "exec_command", "arguments": ""},
        }
        assert all(set(c) == {"index", "function"} and c["index"] == 0 for c in call_chunks[1:])
        assert "".join(c["function"]["arguments"] for c in call_chunks) == '{"cmd":"echo spillgate-e2e"}'


MESSAGES_STREAMS = [
    pytest.param(
        messages_request(),
        [
            "message_start",
            "start:thinking",
            "ping",
            *["thinking_delta"] * 5,
            "signature_delta",
            "content_block_stop",
            "start:tool_use",
            *["input_json_delta"] * 5,
            "content_block_stop",
            "message_delta:tool_use",
            "message_stop",
        ],
        id="tool-use",
    ),
    pytest.param(
        messages_request(outputs=["spillgate-e2e"]),
        [
            "message_start",
            "start:thinking",
            "ping",
            *["thinking_delta"] * 5,
            "signature_delta",
            "content_block_stop",
            "start:text",
            *["text_delta"] * 5,
            "content_block_stop",
            "message_delta:end_turn",
            "message_stop",
        ],
        id="final-answer",
    ),
]


@pytest.mark.parametrize(("body", "shape"), MESSAGES_STREAMS)
async def test_messages_stream_grammar(
    fake: FakeUpstream, session: aiohttp.ClientSession, body: dict[str, Any], shape: list[str]
) -> None:
    fake.set("m", Fault().with_conversation())
    frames, clean = await raw_frames(session, fake, ANTHROPIC, body)
    assert clean and [messages_shape(name, data) for name, data in frames] == shape
    events = [json.loads(data) for _, data in frames]
    started = events[0]["message"]
    assert started["id"].startswith("msg_") and started["content"] == [] and started["stop_reason"] is None
    assert started["usage"]["input_tokens"] > 0
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    blocks = [e for e in events if e["type"] in ("content_block_start", "content_block_stop")]
    assert [(e["type"], e["index"]) for e in blocks] == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
    ]
    assert all(
        e["index"] == (0 if "thinking" in e["delta"]["type"] or "signature" in e["delta"]["type"] else 1)
        for e in events
        if e["type"] == "content_block_delta"
    )
    second = events[shape.index("content_block_stop") + 1]["content_block"]
    assert second == (
        {**TOOL_USE_BLOCK, "input": {}} if "start:tool_use" in shape else {"type": "text", "text": ""}
    )
    assert events[-2]["usage"] == {"output_tokens": 10}


# -- streams: read by the real SDK helpers ---------------------------------------------------------


async def test_chat_stream_through_the_openai_sdk(fake: FakeUpstream) -> None:
    fake.set("m", Fault().with_conversation())
    client = openai.AsyncOpenAI(api_key="x", base_url=fake.openai_base_url, max_retries=0)
    results = []
    for body in (chat_request(), chat_request(outputs=[EXEC_OUTPUT])):
        async with client.chat.completions.stream(
            model="m", messages=body["messages"], tools=body["tools"], stream_options={"include_usage": True}
        ) as stream:
            results.append(await stream.get_final_completion())
    await client.close()

    first, final = results
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert (choice.message.model_extra or {})["reasoning_content"] == REASONING
    (call,) = choice.message.tool_calls or []
    assert call.id == call_id(COMMAND, 0) and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("exec_command", {"cmd": COMMAND})
    assert first.usage is not None and first.usage.completion_tokens == 10

    choice = final.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content == FINAL
    assert not choice.message.tool_calls
    assert [a.path for a in fake.attempts] == ["/v1/chat/completions"] * 2


async def test_messages_stream_through_the_anthropic_sdk(fake: FakeUpstream) -> None:
    fake.set("m", Fault().with_conversation())
    client = anthropic.AsyncAnthropic(api_key="x", base_url=fake.anthropic_base_url, max_retries=0)
    results = []
    for body in (messages_request(), messages_request(outputs=["spillgate-e2e"])):
        async with client.messages.stream(
            model="m", max_tokens=1024, messages=body["messages"], tools=body["tools"]
        ) as stream:
            results.append(await stream.get_final_message())
    await client.close()

    first, final = results
    assert first.id.startswith("msg_") and first.stop_reason == "tool_use"
    assert [block.to_dict() for block in first.content] == [THINKING_BLOCK, TOOL_USE_BLOCK]
    assert first.usage.output_tokens == 10
    assert final.stop_reason == "end_turn"
    assert [block.to_dict() for block in final.content] == [THINKING_BLOCK, {"type": "text", "text": FINAL}]
    assert [a.path for a in fake.attempts] == ["/v1/messages"] * 2


# -- where the first content is (first_content_delay waits before it) ------------------------------


def _call() -> ToolCall:
    return ToolCall("Bash", '{"command":"ls"}', "toolu_x")


FIRST_CONTENT = [
    pytest.param(
        chat_reply_stream, Reply("think", _call(), None, 0), '"reasoning_content"', id="chat-reasoning"
    ),
    pytest.param(chat_reply_stream, Reply("", _call(), None, 0), '"arguments":"{', id="chat-arguments"),
    pytest.param(chat_reply_stream, Reply("", None, "done", 1), '"content":"d', id="chat-text"),
    pytest.param(
        messages_reply_stream, Reply("think", _call(), None, 0), "thinking_delta", id="messages-thinking"
    ),
    pytest.param(messages_reply_stream, Reply("", _call(), None, 0), "input_json_delta", id="messages-input"),
    pytest.param(messages_reply_stream, Reply("", None, "done", 1), "text_delta", id="messages-text"),
]


@pytest.mark.parametrize(("render", "reply", "marker"), FIRST_CONTENT)
def test_first_content_is_the_first_delta(render: Any, reply: Reply, marker: str) -> None:
    if render is chat_reply_stream:
        events: StreamEvents = render("m", reply, 3, 10, 0, False)
    else:
        events = render("m", reply, 3, 10, 0)
    frames = [frame.decode() for frame in events.frames]
    assert marker in frames[events.first_content]
    assert not any(marker in frame for frame in frames[: events.first_content])


# -- faults still apply on top ---------------------------------------------------------------------


async def test_stream_faults_apply_to_the_scripted_streams(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault(cut_after_events=3).with_conversation())
    frames, clean = await raw_frames(session, fake, CHAT, chat_request())
    assert not clean and [chat_shape(data) for _, data in frames] == ["role", "reasoning", "reasoning"]

    fake.set("m", Fault(stream_error_after_events=4).with_conversation())
    frames, clean = await raw_frames(session, fake, ANTHROPIC, messages_request())
    assert clean and [name for name, _ in frames] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert json.loads(frames[-1][1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }

    fake.set("m", Fault.capacity(times=1).with_conversation())
    async with session.post(fake.base_url + PATHS[ANTHROPIC], json=messages_request()) as resp:
        assert resp.status == 503
    assert (await post_json(session, fake, ANTHROPIC, messages_request()))["stop_reason"] == "tool_use"
    assert [a.outcome for a in fake.attempts] == ["cut", "stream_error", "status:503", "ok"]


async def test_first_content_delay_on_a_chat_script(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault(first_content_delay=0.2).with_conversation())
    started = asyncio.get_running_loop().time()
    frames, clean = await raw_frames(session, fake, CHAT, chat_request())
    assert clean and chat_shape(frames[1][1]) == "reasoning"
    assert asyncio.get_running_loop().time() - started >= 0.2
