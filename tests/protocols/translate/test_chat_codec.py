"""The OpenAI Chat Completions codec: golden requests, answers and streams, and the real openai
SDK's stream helpers reading what the stream encoder writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest

from spillgate.protocols.errors import GatewayError
from spillgate.protocols.events import parse_event
from spillgate.protocols.translate.canonical import (
    BlockDelta,
    BlockOpaque,
    BlockStart,
    BlockStop,
    Carried,
    End,
    Finish,
    Image,
    Message,
    OutputFormat,
    Reasoning,
    ReasoningConfig,
    Refusal,
    Request,
    Response,
    Start,
    StreamError,
    StreamEvent,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Uncarriable,
    Usage,
    UsageReport,
)
from spillgate.protocols.translate.chat import CODEC, ChatCodec, client_call_id, effort_for_budget
from spillgate.protocols.translate.codec import ClientContext, Malformed, Target


def counter_ids() -> Callable[[str], str]:
    """Deterministic ids: ``prefix`` + 0, 1, 2…"""
    n = itertools.count()
    return lambda prefix: f"{prefix}{next(n)}"


def ctx(include_usage: bool = False) -> ClientContext:
    return ClientContext(model="up-model", include_usage=include_usage, new_id=counter_ids(), created=1700)


def chunk(body: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def choice(delta: dict[str, Any], finish: Any = None) -> bytes:
    return chunk(
        {"id": "cmpl-1", "model": "qwen", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


DONE = b"data: [DONE]\n\n"


def decode_stream(raws: list[bytes]) -> list[StreamEvent]:
    decoder = CODEC.stream_decoder()
    out: list[StreamEvent] = []
    for raw in raws:
        out += decoder.feed(parse_event(raw))
    return out


def test_codec_identity() -> None:
    assert isinstance(CODEC, ChatCodec)
    assert CODEC.api.value == "openai-chat"


# -- decode_request -----------------------------------------------------------------------------------
FULL_BODY: dict[str, Any] = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "name": "ana",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "reasoning_content": "Look it up.",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "look", "arguments": '{"q":"x"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "see", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "a cat"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "grey"}]},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "look",
                "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                "strict": True,
            },
        },
        {
            "type": "custom",
            "custom": {"name": "apply_patch", "description": "Patch", "format": {"type": "text"}},
        },
        {"type": "web_search"},
    ],
    "tool_choice": {"type": "function", "function": {"name": "look"}},
    "parallel_tool_calls": False,
    "max_completion_tokens": 500,
    "max_tokens": 9,
    "temperature": 0.5,
    "top_p": 1,
    "stop": "END",
    "reasoning_effort": "high",
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
    "stream": True,
    "stream_options": {"include_usage": True},
    "prompt_cache_key": "sess-1",
    "safety_identifier": "u-9",
    "seed": 7,
    "unknown_field": {"ignored": True},
}

FULL_REQUEST = Request(
    model="gpt-4.1",
    messages=(
        Message("system", (Text("Be terse."),)),
        Message("developer", (Text("Use tools."),)),
        Message("user", (Text("What is this?"), Image("data:image/png;base64,AAAA", "low")), name="ana"),
        Message(
            "assistant",
            (
                Reasoning("Look it up."),
                Text("Checking."),
                ToolCall("call_a", "look", '{"q":"x"}'),
                ToolCall("call_b", "see", "{}"),
            ),
        ),
        Message("tool", (ToolResult("call_a", "a cat"), ToolResult("call_b", (Text("grey"),)))),
        Message("user", (Text("thanks"),)),
    ),
    tools=(
        Tool(
            "look",
            description="Look up",
            parameters={"type": "object", "properties": {"q": {"type": "string"}}},
            strict=True,
        ),
        Tool("apply_patch", kind="custom", description="Patch", format={"type": "text"}),
        Tool("web_search", kind="hosted", hosted={"type": "web_search"}),
    ),
    tool_choice=ToolChoice("tool", "look"),
    parallel_tool_calls=False,
    max_output_tokens=500,
    temperature=0.5,
    top_p=1.0,
    stop=("END",),
    reasoning=ReasoningConfig(effort="high"),
    output_format=OutputFormat("json_schema", name="answer", schema={"type": "object"}, strict=True),
    stream=True,
    include_usage=True,
    prompt_cache_key="sess-1",
    user="u-9",
    source_family="openai",
    droppable=("seed",),
)


def test_decode_request_golden() -> None:
    assert CODEC.decode_request(FULL_BODY) == FULL_REQUEST


DECODE_CASES = [
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        Request("m", (Message("user", (Text("hi"),)),), source_family="openai"),
        id="minimal",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "assistant", "content": None, "refusal": "No.", "tool_calls": []},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "b"}],
                },
            ],
        },
        Request(
            "m",
            (Message("assistant", (Refusal("No."),)), Message("assistant", (Text("a"), Refusal("b")))),
            source_family="openai",
        ),
        id="assistant-refusal-and-parts",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "user", "content": "between"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"},
            ],
        },
        Request(
            "m",
            (
                Message("tool", (ToolResult("c1", "one"),)),
                Message("user", (Text("between"),)),
                Message("tool", (ToolResult("c2", "two"),)),
            ),
            source_family="openai",
        ),
        id="tool-groups-only-consecutive",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [],
            "max_tokens": 7,
            "stop": ["a", "b"],
            "user": "u",
            "tool_choice": "required",
        },
        Request(
            "m",
            (),
            max_output_tokens=7,
            stop=("a", "b"),
            user="u",
            tool_choice=ToolChoice("required"),
            source_family="openai",
        ),
        id="max-tokens-stop-list-user",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "ctc_1",
                            "type": "custom",
                            "custom": {"name": "apply_patch", "input": "*** Begin"},
                        }
                    ],
                }
            ],
            "response_format": {"type": "json_object"},
        },
        Request(
            "m",
            (Message("assistant", (ToolCall("ctc_1", "apply_patch", "*** Begin", kind="custom"),)),),
            output_format=OutputFormat("json_object"),
            source_family="openai",
        ),
        id="custom-tool-call",
    ),
]


@pytest.mark.parametrize(("body", "expected"), DECODE_CASES)
def test_decode_request_cases(body: dict[str, Any], expected: Request) -> None:
    assert CODEC.decode_request(body) == expected


UNTRANSLATABLE_CASES = [
    pytest.param({"n": 2}, ("n > 1 choices",), id="n"),
    pytest.param({"logprobs": True, "top_logprobs": 2}, ("logprobs",), id="logprobs"),
    pytest.param({"modalities": ["text", "audio"], "audio": {"voice": "x"}}, ("audio output",), id="audio"),
    pytest.param(
        {"functions": [{"name": "f"}], "function_call": "auto"},
        ("legacy functions / function_call",),
        id="functions",
    ),
    pytest.param(
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        ("a legacy function role message",),
        id="function-role",
    ),
    pytest.param(
        {"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
        ("a legacy function_call message",),
        id="assistant-function-call",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                        {"type": "file", "file": {"file_id": "f"}},
                    ],
                }
            ]
        },
        ("a input_audio content part", "a file content part"),
        id="audio-and-file-parts",
    ),
]


@pytest.mark.parametrize(("extra", "expected"), UNTRANSLATABLE_CASES)
def test_decode_request_untranslatable(extra: dict[str, Any], expected: tuple[str, ...]) -> None:
    body = {"model": "m", "messages": [], **extra}
    assert CODEC.decode_request(body).untranslatable == expected


def test_n_one_is_translatable() -> None:
    assert CODEC.decode_request({"model": "m", "messages": [], "n": 1}).untranslatable == ()


def _tc(arguments: Any) -> dict[str, Any]:
    return {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}


WRONG_TYPES = [
    pytest.param({"model": 5}, "model", id="model"),
    pytest.param({"model": None}, "model", id="model-missing"),
    pytest.param({"messages": "hi"}, "messages", id="messages"),
    pytest.param({"messages": ["hi"]}, "messages[0]", id="message-not-object"),
    pytest.param({"messages": [{"role": 1}]}, "messages[0].role", id="role-type"),
    pytest.param({"messages": [{"role": "robot"}]}, "messages[0].role", id="role-unknown"),
    pytest.param({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", id="content"),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
        "messages[0].content[0].text",
        id="text-part",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 1}}]}]},
        "messages[0].content[0].image_url.url",
        id="image-url",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "tool_calls": [_tc({"a": 1})]},
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
        id="tool-call-arguments",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{"id": "", "function": {"name": "f", "arguments": ""}}]}
            ]
        },
        "messages[0].tool_calls[0].id",
        id="tool-call-empty-id",
    ),
    pytest.param(
        {"messages": [{"role": "assistant", "tool_calls": {}}]}, "messages[0].tool_calls", id="tool-calls"
    ),
    pytest.param(
        {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", id="tool-call-id"
    ),
    pytest.param({"messages": [{"role": "user", "name": 2, "content": "x"}]}, "messages[0].name", id="name"),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": 1}}]}, "tools[0].function.name", id="tool-name"
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
        "tools[0].function.parameters",
        id="tool-parameters",
    ),
    pytest.param({"tool_choice": "always"}, "tool_choice", id="tool-choice-string"),
    pytest.param(
        {"tool_choice": {"type": "function", "function": {}}},
        "tool_choice.function.name",
        id="tool-choice-name",
    ),
    pytest.param({"parallel_tool_calls": "yes"}, "parallel_tool_calls", id="parallel"),
    pytest.param({"max_completion_tokens": "9"}, "max_completion_tokens", id="max-completion-tokens"),
    pytest.param({"max_tokens": True}, "max_tokens", id="max-tokens-bool"),
    pytest.param({"temperature": "hot"}, "temperature", id="temperature"),
    pytest.param({"top_p": False}, "top_p", id="top-p"),
    pytest.param({"stop": ["a", 1]}, "stop[1]", id="stop-item"),
    pytest.param({"reasoning_effort": 3}, "reasoning_effort", id="reasoning-effort"),
    pytest.param({"response_format": {"type": "yaml"}}, "response_format.type", id="response-format-type"),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": "x"}}},
        "response_format.json_schema.schema",
        id="response-format-schema",
    ),
    pytest.param({"stream": "true"}, "stream", id="stream"),
    pytest.param(
        {"stream_options": {"include_usage": 1}}, "stream_options.include_usage", id="include-usage"
    ),
    pytest.param({"stream_options": []}, "stream_options", id="stream-options"),
    pytest.param({"prompt_cache_key": 1}, "prompt_cache_key", id="prompt-cache-key"),
    pytest.param({"n": "2"}, "n", id="n"),
]


@pytest.mark.parametrize(("extra", "param"), WRONG_TYPES)
def test_decode_request_wrong_types(extra: dict[str, Any], param: str) -> None:
    body = {"model": "m", "messages": [], **extra}
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(body)
    assert caught.value.status == 400
    assert caught.value.param == param


# -- encode_request -----------------------------------------------------------------------------------
LOCAL = Target("qwen2.5-coder-32b")
OPENAI_REASONING = Target("GPT-5-mini")


def encode(request: Request, target: Target = LOCAL) -> tuple[dict[str, Any], list[str]]:
    carried = Carried()
    return CODEC.encode_request(request, target, carried), carried.omitted


SYSTEM_RUN = Request(
    "client-model",
    (
        Message("system", (Text("You are Claude Code."),)),
        Message("developer", (Text("Rule one."), Text("Rule two."))),
        Message("system", (Text("Env: linux"),)),
        Message("user", (Text("hi"), Text("there")), name="ana"),
        Message("assistant", (Text("Hello."),)),
        Message("developer", (Text("Now be brief."),)),
        Message("user", (Text("ok"),)),
    ),
)

SYSTEM_RUN_BODY = {
    "model": "qwen2.5-coder-32b",
    "messages": [
        {"role": "system", "content": "You are Claude Code.\n\nRule one.\n\nRule two.\n\nEnv: linux"},
        {"role": "user", "content": "hi\n\nthere", "name": "ana"},
        {"role": "assistant", "content": "Hello."},
        # The later developer message as user text, merged with the user turn after it: local
        # templates that need user / assistant turns to alternate refuse two user messages.
        {"role": "user", "content": "Now be brief.\n\nok"},
    ],
}


def test_leading_system_run_merged_and_mid_developer_becomes_user() -> None:
    body, omitted = encode(SYSTEM_RUN)
    assert body == SYSTEM_RUN_BODY
    assert omitted == []


def test_encode_request_is_byte_stable() -> None:
    first = orjson.dumps(encode(SYSTEM_RUN)[0])
    second = orjson.dumps(CODEC.encode_request(SYSTEM_RUN, LOCAL, Carried()))
    assert first == second
    assert first == (
        b'{"model":"qwen2.5-coder-32b","messages":[{"role":"system","content":"You are Claude Code.\\n\\n'
        b'Rule one.\\n\\nRule two.\\n\\nEnv: linux"},{"role":"user","content":"hi\\n\\nthere","name":"ana"},'
        b'{"role":"assistant","content":"Hello."},{"role":"user","content":"Now be brief.\\n\\nok"}]}'
    )


TOOL_HISTORY = Request(
    "client-model",
    (
        Message(
            "user", (Text("look"), Image("https://x/cat.png", "high"), Image("data:image/png;base64,AA"))
        ),
        Message(
            "assistant",
            (
                Reasoning("hmm", opaque="sig", origin="anthropic"),
                Text("Sure."),
                ToolCall("toolu_01", "look", '{"q":"cat"}'),
                ToolCall("toolu_02", "noargs", ""),
            ),
        ),
        Message(
            "tool",
            (
                ToolResult("toolu_01", (Text("a cat"), Image("https://x/r.png"), Text("grey"))),
                ToolResult("toolu_02", "done", is_error=True),
            ),
        ),
        Message("assistant", (ToolCall("toolu_03", "look", "{}"),)),
        Message("user", (ToolResult("toolu_03", "none"), Text("and now?"))),
        Message("assistant", (Text("I can't"), Refusal(" help with that."))),
    ),
    tools=(
        Tool("look", description="Look", parameters={"type": "object", "properties": {"q": {}}}, strict=True),
        Tool("noargs"),
    ),
    tool_choice=ToolChoice("tool", "look"),
    parallel_tool_calls=True,
)

TOOL_HISTORY_BODY = {
    "model": "qwen2.5-coder-32b",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Sure.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"q":"cat"}'},
                },
                {"id": "toolu_02", "type": "function", "function": {"name": "noargs", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "a cat\n\ngrey"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "done"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "toolu_03", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_03", "content": "none"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "I can't help with that."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "look",
                "description": "Look",
                "parameters": {"type": "object", "properties": {"q": {}}},
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "noargs", "parameters": {"type": "object", "properties": {}}},
        },
    ],
    "tool_choice": {"type": "function", "function": {"name": "look"}},
    "parallel_tool_calls": True,
}


def test_tool_calls_and_results_pair_exactly() -> None:
    body, omitted = encode(TOOL_HISTORY)
    assert body == TOOL_HISTORY_BODY
    assert omitted == ["reasoning", "images in tool results", "tool results' error flag"]
    calls = [c["id"] for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    results = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert calls == results == ["toolu_01", "toolu_02", "toolu_03"]


KNOBS = Request(
    "client-model",
    (Message("user", (Text("hi"),)),),
    max_output_tokens=1000,
    temperature=0.2,
    top_p=0.9,
    stop=("STOP",),
    reasoning=ReasoningConfig(budget_tokens=10000, summary=True),
    output_format=OutputFormat("json_schema", schema={"type": "object"}),
    stream=True,
    prompt_cache_key="k",
    user="u",
)

ENCODE_KNOB_CASES = [
    pytest.param(
        OPENAI_REASONING,
        {
            "model": "GPT-5-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 1000,
            "reasoning_effort": "medium",
            "stop": ["STOP"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
            "prompt_cache_key": "k",
            "user": "u",
        },
        ["temperature", "top_p"],
        id="openai-reasoning-model",
    ),
    pytest.param(
        LOCAL,
        {
            "model": "qwen2.5-coder-32b",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1000,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["STOP"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
            "prompt_cache_key": "k",
            "user": "u",
        },
        ["reasoning effort"],
        id="local-model",
    ),
    pytest.param(
        Target("deepseek-r1-distill", reasoning=True),
        {
            "model": "deepseek-r1-distill",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1000,
            "reasoning_effort": "medium",
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["STOP"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
            "prompt_cache_key": "k",
            "user": "u",
        },
        [],
        id="route-says-it-reasons",
    ),
    pytest.param(
        Target("o3", reasoning=False),
        {
            "model": "o3",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 1000,
            "stop": ["STOP"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
            "prompt_cache_key": "k",
            "user": "u",
        },
        ["reasoning effort", "temperature", "top_p"],
        id="route-says-it-does-not-reason",
    ),
]


@pytest.mark.parametrize(("target", "expected", "omitted"), ENCODE_KNOB_CASES)
def test_encode_request_knobs(target: Target, expected: dict[str, Any], omitted: list[str]) -> None:
    assert encode(KNOBS, target) == (expected, omitted)


ENCODE_SMALL_CASES = [
    pytest.param(
        Request("m", (Message("user", (Text("hi"),)),), stream=True, include_usage=False),
        {
            "model": "qwen2.5-coder-32b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        id="stream-always-asks-usage",
    ),
    pytest.param(
        Request(
            "m", (Message("user", (Text("hi"),)),), tool_choice=ToolChoice("none"), parallel_tool_calls=False
        ),
        {"model": "qwen2.5-coder-32b", "messages": [{"role": "user", "content": "hi"}]},
        id="no-tools-no-tool-choice-no-parallel",
    ),
    pytest.param(
        Request(
            "m",
            (Message("system", (Text("only"),)),),
            tools=(Tool("f", parameters={"type": "object"}),),
            tool_choice=ToolChoice("auto"),
            output_format=OutputFormat("text"),
        ),
        {
            "model": "qwen2.5-coder-32b",
            "messages": [{"role": "system", "content": "only"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto",
            "response_format": {"type": "text"},
        },
        id="tool-choice-auto",
    ),
    pytest.param(
        Request(
            "m",
            (Message("assistant", (Reasoning("thinking only"),)),),
            reasoning=ReasoningConfig(enabled=False),
        ),
        {"model": "qwen2.5-coder-32b", "messages": [{"role": "assistant", "content": ""}]},
        id="assistant-reasoning-only",
    ),
]


@pytest.mark.parametrize(("request_", "expected"), ENCODE_SMALL_CASES)
def test_encode_request_small(request_: Request, expected: dict[str, Any]) -> None:
    assert encode(request_)[0] == expected


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        pytest.param(1024, "low", id="1024"),
        pytest.param(4095, "low", id="4095"),
        pytest.param(4096, "medium", id="4096"),
        pytest.param(16383, "medium", id="16383"),
        pytest.param(16384, "high", id="16384"),
        pytest.param(64000, "high", id="64000"),
    ],
)
def test_effort_for_budget(budget: int, effort: str) -> None:
    assert effort_for_budget(budget) == effort


def test_explicit_effort_wins_over_budget() -> None:
    request = Request("m", (), reasoning=ReasoningConfig(effort="minimal", budget_tokens=50000))
    assert encode(request, OPENAI_REASONING)[0]["reasoning_effort"] == "minimal"


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(Request("m", (), previous_response_id="resp_1"), id="previous-response-id"),
        pytest.param(
            Request("m", (), tools=(Tool("f"),), tool_choice=ToolChoice("tool", "web_search", hosted=True)),
            id="required-hosted-tool",
        ),
    ],
)
def test_encode_request_uncarriable(request_: Request) -> None:
    with pytest.raises(Uncarriable):
        encode(request_)


# -- decode_response ------------------------------------------------------------------------------
def test_decode_response_golden() -> None:
    payload = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 99,
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Here.",
                    "reasoning_content": "Because.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    assert CODEC.decode_response(payload) == Response(
        id="chatcmpl-up",
        model="deepseek-reasoner",
        parts=(Reasoning("Because."), Text("Here."), ToolCall("call_1", "f", '{"a":1}')),
        finish="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=40, cached_tokens=64, reasoning_tokens=30),
        created=99,
    )


@pytest.mark.parametrize(
    "call",
    [
        pytest.param({"type": "function", "function": {"name": "f", "arguments": "{}"}}, id="missing-id"),
        pytest.param(
            {"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}, id="empty-id"
        ),
        pytest.param({"id": None, "function": {"name": "f", "arguments": "{}"}}, id="null-id-no-type"),
    ],
)
def test_decode_response_call_id_never_empty(call: dict[str, Any]) -> None:
    payload = {"choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "stop"}]}
    response = CODEC.decode_response(payload)
    (part,) = response.parts
    assert isinstance(part, ToolCall)
    assert part.id.startswith("call_") and len(part.id) == len("call_") + 24
    assert (part.name, part.arguments) == ("f", "{}")
    assert response.finish == "tool_calls"  # a local server's "stop" after tool calls


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        pytest.param("stop", "stop", id="stop"),
        pytest.param("length", "length", id="length"),
        pytest.param("tool_calls", "tool_calls", id="tool_calls"),
        pytest.param("content_filter", "content_filter", id="content_filter"),
        pytest.param("function_call", "tool_calls", id="function_call"),
        pytest.param(None, "stop", id="missing"),
        pytest.param("eos", "stop", id="unknown"),
    ],
)
def test_decode_response_finish(raw: str | None, finish: str) -> None:
    payload = {"choices": [{"message": {"content": "x"}, "finish_reason": raw}]}
    assert CODEC.decode_response(payload).finish == finish


def test_decode_response_reasoning_field_and_arguments_object() -> None:
    payload = {
        "choices": [
            {
                "message": {
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "reasoning": "r",
                    "refusal": "no",
                    "tool_calls": [{"id": "x1", "function": {"name": "f", "arguments": {"k": 1}}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": "garbage",
    }
    assert CODEC.decode_response(payload) == Response(
        None,
        None,
        (Reasoning("r"), Text("a"), Text("b"), Refusal("no"), ToolCall("x1", "f", '{"k":1}')),
        "tool_calls",
        None,
    )


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="no-choices"),
        pytest.param({"choices": []}, id="empty-choices"),
        pytest.param({"choices": "x"}, id="choices-string"),
        pytest.param({"choices": [1]}, id="choice-not-object"),
        pytest.param({"choices": [{}]}, id="no-message"),
        pytest.param({"choices": [{"message": {"content": 5}}]}, id="content-number"),
        pytest.param({"choices": [{"message": {"tool_calls": {}}}]}, id="tool-calls-object"),
        pytest.param({"choices": [{"message": {"tool_calls": [1]}}]}, id="tool-call-not-object"),
        pytest.param({"choices": [{"message": {"tool_calls": [{"id": "c", "function": {}}]}}]}, id="no-name"),
        pytest.param(
            {
                "choices": [
                    {"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 3}}]}}
                ]
            },
            id="arguments-number",
        ),
        pytest.param({"choices": [{"message": {"tool_calls": [{"type": "mcp"}]}}]}, id="tool-call-type"),
        pytest.param({"choices": [{"message": {}, "finish_reason": 1}]}, id="finish-number"),
        pytest.param({"choices": [{"message": {"reasoning_content": 1}}]}, id="reasoning-number"),
        pytest.param({"choices": [{"message": {}}], "id": 5}, id="id-number"),
    ],
)
def test_decode_response_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        CODEC.decode_response(payload)


# -- encode_response ------------------------------------------------------------------------------
def test_encode_response_golden() -> None:
    response = Response(
        id="msg_up",
        model="claude",
        parts=(
            Reasoning("Think."),
            Reasoning("", opaque="sig", origin="anthropic"),
            Text("Hello"),
            Text(" world"),
            ToolCall("toolu_abc", "look", '{"q":1}'),
            ToolCall("", "see", "{}"),
            ToolCall("call_abc", "look", "{}"),
        ),
        finish="tool_calls",
        usage=Usage(
            input_tokens=120, output_tokens=30, cached_tokens=100, cache_write_tokens=5, reasoning_tokens=12
        ),
    )
    assert CODEC.encode_response(response, ctx()) == {
        "id": "chatcmpl-0",
        "object": "chat.completion",
        "created": 1700,
        "model": "up-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello world",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "look", "arguments": '{"q":1}'},
                        },
                        {"id": "call_1", "type": "function", "function": {"name": "see", "arguments": "{}"}},
                        # the same upstream id twice: the second call gets a fresh id
                        {"id": "call_2", "type": "function", "function": {"name": "look", "arguments": "{}"}},
                    ],
                    "reasoning_content": "Think.",
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }


@pytest.mark.parametrize(
    ("finish", "parts", "expected"),
    [
        pytest.param("stop", (Text("x"),), "stop", id="stop"),
        pytest.param("length", (Text("x"),), "length", id="length"),
        pytest.param("content_filter", (), "content_filter", id="content_filter"),
        pytest.param("refusal", (Refusal("no"),), "content_filter", id="refusal"),
        pytest.param("pause", (Text("x"),), "stop", id="pause"),
        pytest.param("stop", (ToolCall("c", "f", "{}"),), "tool_calls", id="stop-with-tool-calls"),
    ],
)
def test_encode_response_finish(finish: Any, parts: Any, expected: str) -> None:
    choice0 = CODEC.encode_response(Response(None, None, parts, finish), ctx())["choices"][0]
    assert choice0["finish_reason"] == expected


def test_encode_response_refusal_only_and_no_usage() -> None:
    body = CODEC.encode_response(Response(None, None, (Refusal("I can't."),), "refusal"), ctx())
    assert body["choices"][0]["message"] == {"role": "assistant", "content": None, "refusal": "I can't."}
    assert body["usage"]["total_tokens"] == 0


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param("call_x", "call_x", id="already-call"),
        pytest.param("toolu_01A", "call_01A", id="anthropic"),
        pytest.param("fc_9", "call_9", id="responses-item"),
        pytest.param("abc", "call_abc", id="bare"),
        pytest.param("", "call_0", id="empty"),
        pytest.param(None, "call_0", id="none"),
        pytest.param("call_", "call_0", id="prefix-only"),
        pytest.param("toolu_", "call_0", id="other-prefix-only"),
    ],
)
def test_client_call_id(upstream: str | None, expected: str) -> None:
    assert client_call_id("call_", upstream, counter_ids()) == expected


# -- stream decoder -------------------------------------------------------------------------------
STREAM_CASES = [
    pytest.param(
        [
            choice({"role": "assistant", "content": ""}),
            choice({"content": "Hel"}),
            choice({"content": "lo"}),
            choice({}, "stop"),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "Hel"),
            BlockDelta(0, "lo"),
            BlockStop(0),
            Finish("stop"),
            End(),
        ],
        id="text",
    ),
    pytest.param(
        [
            choice({"role": "assistant", "reasoning_content": "think", "content": "answer"}),
            choice({"reasoning_content": "more"}),
            choice({"content": "!"}, "length"),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "reasoning"),
            BlockDelta(0, "think"),
            BlockStop(0),
            BlockStart(1, "text"),
            BlockDelta(1, "answer"),
            BlockStop(1),
            BlockStart(2, "reasoning"),
            BlockDelta(2, "more"),
            BlockStop(2),
            BlockStart(3, "text"),
            BlockDelta(3, "!"),
            BlockStop(3),
            Finish("length"),
            End(),
        ],
        id="reasoning-and-content-in-one-chunk-keeps-both",
    ),
    pytest.param(
        [choice({"reasoning": "r1"}), choice({"reasoning": "r2", "content": None}), choice({}, "stop"), DONE],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "reasoning"),
            BlockDelta(0, "r1"),
            BlockDelta(0, "r2"),
            BlockStop(0),
            Finish("stop"),
            End(),
        ],
        id="reasoning-field",
    ),
    pytest.param(
        [
            choice(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "look", "arguments": ""},
                        }
                    ],
                }
            ),
            choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}),
            choice({"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}),
            choice(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "see", "arguments": "{"},
                        }
                    ]
                }
            ),
            choice({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}),
            choice({}, "tool_calls"),
            chunk(
                {
                    "id": "cmpl-1",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 9,
                        "completion_tokens": 4,
                        "prompt_tokens_details": {"cached_tokens": 2},
                        "completion_tokens_details": {"reasoning_tokens": 1},
                    },
                }
            ),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "tool", call_id="call_a", name="look"),
            BlockDelta(0, '{"q":'),
            BlockDelta(0, '"x"}'),
            # A call that begins while another streams is held whole until the finish (so that
            # interleaved calls lose nothing): one delta with all its arguments.
            BlockStop(0),
            BlockStart(1, "tool", call_id="call_b", name="see"),
            BlockDelta(1, "{}"),
            BlockStop(1),
            Finish("tool_calls"),
            UsageReport(Usage(9, 4, 2, 0, 1)),
            End(),
        ],
        id="two-tool-calls-by-index-and-usage-after-finish",
    ),
    pytest.param(
        [
            choice({"content": "Let me look."}),
            choice({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}),
            choice({}, "stop"),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "Let me look."),
            BlockStop(0),
            BlockStart(1, "tool", call_id="c1", name="f"),
            BlockDelta(1, "{}"),
            BlockStop(1),
            Finish("tool_calls"),
            End(),
        ],
        id="text-then-tool-stop-read-as-tool-calls",
    ),
    pytest.param(
        [
            choice({"refusal": "I can't"}),
            choice({"refusal": " do that."}),
            choice({}, "content_filter"),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "refusal"),
            BlockDelta(0, "I can't"),
            BlockDelta(0, " do that."),
            BlockStop(0),
            Finish("content_filter"),
            End(),
        ],
        id="refusal",
    ),
    pytest.param(
        [
            chunk(
                {
                    "id": "cmpl-1",
                    "model": "qwen",
                    "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
                }
            ),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "hi"),
            BlockStop(0),
            Finish("stop"),
            UsageReport(Usage(3, 1)),
            End(),
        ],
        id="content-finish-and-usage-in-one-chunk",
    ),
    pytest.param(
        [
            chunk({"id": "", "model": "", "choices": [], "prompt_filter_results": []}),
            choice({"content": "x"}),
            choice({}),
            choice({}, "stop"),
            DONE,
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "x"),
            BlockStop(0),
            Finish("stop"),
            End(),
        ],
        id="empty-chunks-say-nothing",
    ),
    pytest.param(
        [
            choice({"content": "part"}),
            chunk({"error": {"message": "overloaded", "type": "server_error", "code": 503}}),
        ],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "part"),
            StreamError("overloaded", "server_error", "503"),
        ],
        id="error-chunk",
    ),
    pytest.param(
        [chunk({"error": "boom"})],
        [StreamError("boom")],
        id="error-string",
    ),
    pytest.param(
        [choice({"content": "a"}), DONE, choice({"content": "late"})],
        [Start("cmpl-1", "qwen"), BlockStart(0, "text"), BlockDelta(0, "a"), BlockStop(0), End()],
        id="done-without-finish-and-nothing-after",
    ),
    pytest.param(
        [
            chunk(
                {
                    "id": "cmpl-1",
                    "choices": [
                        {"index": 1, "delta": {"content": "other"}},
                        {"index": 0, "delta": {"content": "mine"}},
                    ],
                }
            )
        ],
        [Start("cmpl-1", None), BlockStart(0, "text"), BlockDelta(0, "mine")],
        id="only-choice-zero",
    ),
    pytest.param(
        [choice({"content": "a"}, "stop"), choice({}, "stop"), DONE],
        [
            Start("cmpl-1", "qwen"),
            BlockStart(0, "text"),
            BlockDelta(0, "a"),
            BlockStop(0),
            Finish("stop"),
            End(),
        ],
        id="second-finish-ignored",
    ),
]


@pytest.mark.parametrize(("raws", "expected"), STREAM_CASES)
def test_stream_decoder(raws: list[bytes], expected: list[StreamEvent]) -> None:
    assert decode_stream(raws) == expected


def test_stream_decoder_cut_stream_closes_to_nothing() -> None:
    decoder = CODEC.stream_decoder()
    decoder.feed(parse_event(choice({"content": "half"})))
    assert decoder.close() == []


def test_stream_decoder_finish_without_done_closes_with_end() -> None:
    decoder = CODEC.stream_decoder()
    events = decoder.feed(parse_event(choice({"content": "all"}, "stop")))
    assert events[-2:] == [BlockStop(0), Finish("stop")]
    assert decoder.close() == [End()]
    assert decoder.close() == []


def test_stream_decoder_tool_call_id_never_empty() -> None:
    events = decode_stream(
        [
            choice({"tool_calls": [{"index": 0, "id": "", "function": {"name": "f", "arguments": "{}"}}]}),
            choice({"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "{}"}}]}),
            choice({}, "tool_calls"),
        ]
    )
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [s.name for s in starts] == ["f", "g"]
    for start in starts:
        assert start.call_id is not None and start.call_id.startswith("call_") and len(start.call_id) == 29
    assert starts[0].call_id != starts[1].call_id


def test_stream_decoder_one_index_reused_for_two_calls() -> None:
    """Servers that number every parallel call 0: a new id with a name is a new block, never a
    second call merged into the first."""
    events = decode_stream(
        [
            choice(
                {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}]}
            ),
            choice({"tool_calls": [{"index": 0, "id": "c1", "function": {"arguments": ""}}]}),  # id repeated
            choice(
                {"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "g", "arguments": '{"b":2}'}}]}
            ),
            choice({}, "tool_calls"),
        ]
    )
    assert events[1:] == [
        BlockStart(0, "tool", call_id="c1", name="f"),
        BlockDelta(0, '{"a":1}'),
        BlockStop(0),
        BlockStart(1, "tool", call_id="c2", name="g"),
        BlockDelta(1, '{"b":2}'),
        BlockStop(1),
        Finish("tool_calls"),
    ]


def test_stream_decoder_tool_calls_without_index() -> None:
    events = decode_stream(
        [
            choice({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}]}),
            choice({"tool_calls": [{"function": {"arguments": "}"}}]}),
            choice({"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]}),
            choice({}, "tool_calls"),
        ]
    )
    assert events[1:] == [
        BlockStart(0, "tool", call_id="c1", name="f"),
        BlockDelta(0, "{"),
        BlockDelta(0, "}"),
        BlockStop(0),
        BlockStart(1, "tool", call_id="c2", name="g"),
        BlockDelta(1, "{}"),
        BlockStop(1),
        Finish("tool_calls"),
    ]


def test_stream_decoder_interleaved_parallel_calls_keep_every_argument() -> None:
    """Two calls streamed interleaved (0, 1, 0, 1): the first streams, the second is held whole
    until the finish; no argument is lost and each block is whole, in the canonical order."""
    events = decode_stream(
        [
            _tool_chunk(0, id="a", function={"name": "f", "arguments": '{"x":'}),
            _tool_chunk(1, id="b", function={"name": "g", "arguments": '{"y":'}),
            _tool_chunk(0, function={"arguments": "1}"}),
            _tool_chunk(1, function={"arguments": "2}"}),
            choice({}, "tool_calls"),
            DONE,
        ]
    )
    assert events[1:] == [
        BlockStart(0, "tool", call_id="a", name="f"),
        BlockDelta(0, '{"x":'),
        BlockDelta(0, "1}"),
        BlockStop(0),
        BlockStart(1, "tool", call_id="b", name="g"),
        BlockDelta(1, '{"y":2}'),
        BlockStop(1),
        Finish("tool_calls"),
        End(),
    ]


def _tool_chunk(index: Any = 0, **fields: Any) -> bytes:
    return choice({"tool_calls": [{"index": index, **fields}]})


MALFORMED_CHUNKS = [
    pytest.param([b"data: {not json\n\n"], id="not-json"),
    pytest.param([b"data: [1, 2]\n\n"], id="array"),
    pytest.param([chunk({"choices": {"0": {}}})], id="choices-object"),
    pytest.param([chunk({"choices": ["x"]})], id="choice-string"),
    pytest.param([chunk({"choices": [{"index": 0, "delta": "hi"}]})], id="delta-string"),
    pytest.param([choice({"content": 5})], id="content-number"),
    pytest.param([choice({"refusal": ["x"]})], id="refusal-list"),
    pytest.param([choice({"reasoning_content": {}})], id="reasoning-content-object"),
    pytest.param([choice({"tool_calls": {"index": 0}})], id="tool-calls-object"),
    pytest.param([choice({"tool_calls": ["x"]})], id="tool-call-string"),
    pytest.param([_tool_chunk("0", id="c", function={"name": "f"})], id="index-string"),
    pytest.param([_tool_chunk(-1, id="c", function={"name": "f"})], id="index-negative"),
    pytest.param([_tool_chunk(True, id="c", function={"name": "f"})], id="index-bool"),
    pytest.param([_tool_chunk(0, id=7, function={"name": "f"})], id="id-number"),
    pytest.param([_tool_chunk(0, id="c", function="f")], id="function-string"),
    pytest.param([_tool_chunk(0, id="c", function={"name": 1})], id="name-number"),
    pytest.param([_tool_chunk(0, id="c", function={"name": "f", "arguments": 1})], id="arguments-number"),
    pytest.param([_tool_chunk(0, id="c", function={"arguments": "{}"})], id="new-call-without-name"),
    pytest.param(
        [
            _tool_chunk(0, id="a", function={"name": "f"}),
            choice({"content": "text between"}),
            _tool_chunk(0, function={"arguments": "{}"}),
        ],
        id="stopped-tool-index-revisited",
    ),
    pytest.param(
        [
            _tool_chunk(0, id="a", function={"name": "f"}),
            choice({"content": "x"}),
            _tool_chunk(0, function={"arguments": "{}"}),
        ],
        id="tool-index-after-text",
    ),
    pytest.param([choice({}, "stop"), choice({"content": "late"})], id="content-after-finish"),
    pytest.param([choice({"content": "x"}, 1)], id="finish-number"),
    pytest.param(
        [chunk({"id": 5, "choices": [{"index": 0, "delta": {"content": "x"}}]})], id="chunk-id-number"
    ),
]


@pytest.mark.parametrize("raws", MALFORMED_CHUNKS)
def test_stream_decoder_malformed(raws: list[bytes]) -> None:
    decoder = CODEC.stream_decoder()
    for raw in raws[:-1]:
        decoder.feed(parse_event(raw))
    with pytest.raises(Malformed):
        decoder.feed(parse_event(raws[-1]))


def test_malformed_chunk_changes_nothing() -> None:
    """A chunk that raises leaves the decoder as it was: the caller may drop it and go on."""
    decoder = CODEC.stream_decoder()
    decoder.feed(parse_event(choice({"content": "a"})))
    bad = choice(
        {"reasoning_content": "r", "tool_calls": [{"index": 0, "id": "c", "function": {"arguments": "{}"}}]}
    )
    with pytest.raises(Malformed):
        decoder.feed(parse_event(bad))
    assert decoder.feed(parse_event(choice({"content": "c"}, "stop"))) == [
        BlockDelta(0, "c"),
        BlockStop(0),
        Finish("stop"),
    ]


# -- stream encoder -------------------------------------------------------------------------------
def _enc_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return chunk(
        {
            "id": "chatcmpl-0",
            "object": "chat.completion.chunk",
            "created": 1700,
            "model": "up-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
    )


ANSWER_EVENTS: list[StreamEvent] = [
    Start("msg_up", "claude"),
    BlockStart(0, "reasoning"),
    BlockDelta(0, "Think"),
    BlockOpaque(0, "sig", "anthropic"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, "Hel"),
    BlockDelta(1, "lo"),
    BlockDelta(1, ""),
    BlockStop(1),
    BlockStart(2, "tool", call_id="toolu_01", name="look"),
    BlockDelta(2, '{"q":'),
    BlockDelta(2, '"cat"}'),
    BlockStop(2),
    BlockStart(3, "tool", call_id="", name="see"),
    BlockDelta(3, "{}"),
    BlockStop(3),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=50, cached_tokens=20)),
    UsageReport(Usage(output_tokens=9, reasoning_tokens=3)),
    End(),
]

ANSWER_BYTES = b"".join(
    [
        _enc_chunk({"role": "assistant", "content": ""}),
        _enc_chunk({"reasoning_content": "Think"}),
        _enc_chunk({"content": "Hel"}),
        _enc_chunk({"content": "lo"}),
        _enc_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_01",
                        "type": "function",
                        "function": {"name": "look", "arguments": ""},
                    }
                ]
            }
        ),
        _enc_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}),
        _enc_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"cat"}'}}]}),
        _enc_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "see", "arguments": ""},
                    }
                ]
            }
        ),
        _enc_chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        _enc_chunk({}, "tool_calls"),
        chunk(
            {
                "id": "chatcmpl-0",
                "object": "chat.completion.chunk",
                "created": 1700,
                "model": "up-model",
                "choices": [],
                "usage": {
                    "prompt_tokens": 50,
                    "completion_tokens": 9,
                    "total_tokens": 59,
                    "prompt_tokens_details": {"cached_tokens": 20},
                    "completion_tokens_details": {"reasoning_tokens": 3},
                },
            }
        ),
        DONE,
    ]
)


def encode_stream(events: list[StreamEvent], context: ClientContext) -> bytes:
    encoder = CODEC.stream_encoder(context)
    return b"".join(encoder.encode(e) for e in events)


def test_stream_encoder_exact_chunks() -> None:
    assert encode_stream(ANSWER_EVENTS, ctx(include_usage=True)) == ANSWER_BYTES


def test_stream_encoder_no_usage_chunk_unless_asked() -> None:
    assert encode_stream(ANSWER_EVENTS, ctx()) == ANSWER_BYTES.replace(
        ANSWER_BYTES.split(b"\n\n")[-3] + b"\n\n", b""
    )


ENCODER_TOLERANCE = [
    pytest.param(
        [BlockStart(0, "text"), BlockDelta(0, "hi"), End()],
        [
            _enc_chunk({"role": "assistant", "content": ""}),
            _enc_chunk({"content": "hi"}),
            _enc_chunk({}, "stop"),
            DONE,
        ],
        id="events-before-start-and-end-without-finish",
    ),
    pytest.param(
        [Start(), BlockStart(0, "tool", call_id="call_z", name="f"), End()],
        [
            _enc_chunk({"role": "assistant", "content": ""}),
            _enc_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_z",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            _enc_chunk({}, "tool_calls"),
            DONE,
        ],
        id="end-without-finish-after-tool",
    ),
    pytest.param(
        [Start(), BlockStart(0, "refusal"), BlockDelta(0, "No."), Finish("refusal"), End(), End()],
        [
            _enc_chunk({"role": "assistant", "content": ""}),
            _enc_chunk({"refusal": "No."}),
            _enc_chunk({}, "content_filter"),
            DONE,
        ],
        id="refusal-and-double-end",
    ),
    pytest.param(
        [
            Start(),
            BlockStart(0, "text"),
            BlockDelta(0, "par"),
            StreamError("overloaded", "server_error", "503"),
            End(),
        ],
        [
            _enc_chunk({"role": "assistant", "content": ""}),
            _enc_chunk({"content": "par"}),
            b'data: {"error":{"message":"overloaded","type":"server_error","code":"503"}}\n\n',
        ],
        id="stream-error-then-nothing",
    ),
    pytest.param(
        [Start(), Finish("pause"), End()],
        [_enc_chunk({"role": "assistant", "content": ""}), _enc_chunk({}, "stop"), DONE],
        id="pause-is-stop",
    ),
]


@pytest.mark.parametrize(("events", "expected"), ENCODER_TOLERANCE)
def test_stream_encoder_tolerance(events: list[StreamEvent], expected: list[bytes]) -> None:
    assert encode_stream(events, ctx()) == b"".join(expected)


def test_stream_encoder_duplicate_tool_indexes_never_produced() -> None:
    """Tool calls are numbered 0.. among tool blocks whatever the canonical indexes, and two calls
    with the same upstream id get distinct client ids."""
    events: list[StreamEvent] = [
        Start(),
        BlockStart(0, "text"),
        BlockDelta(0, "x"),
        BlockStop(0),
        BlockStart(1, "tool", call_id="same", name="f"),
        BlockStop(1),
        BlockStart(2, "reasoning"),
        BlockDelta(2, "r"),
        BlockStop(2),
        BlockStart(3, "tool", call_id="same", name="g"),
        BlockStop(3),
        End(),
    ]
    calls = []
    for raw in encode_stream(events, ctx()).split(b"\n\n"):
        if raw.startswith(b"data: {"):
            for c in orjson.loads(raw[6:])["choices"]:
                calls += c["delta"].get("tool_calls", [])
    assert [(c["index"], c["id"]) for c in calls] == [(0, "call_same"), (1, "call_1")]


# -- the real openai SDK reads the encoder's stream ----------------------------------------------------
def sdk_stream(body: bytes, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The openai SDK's ``chat.completions.stream`` over ``body``: its final completion and the
    request it sent."""
    sent: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent.update(orjson.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="x",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.chat.completions.stream(
        model="client-model",
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
        **kwargs,
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion(), sent


def test_openai_sdk_reads_the_stream() -> None:
    completion, sent = sdk_stream(encode_stream(ANSWER_EVENTS, ctx(include_usage=True)))
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert completion.id == "chatcmpl-0"
    assert completion.model == "up-model"
    (first,) = completion.choices
    assert first.finish_reason == "tool_calls"
    assert first.message.content == "Hello"
    assert first.message.role == "assistant"
    assert getattr(first.message, "reasoning_content", None) == "Think"
    calls = [(c.id, c.type, c.function.name, c.function.arguments) for c in first.message.tool_calls or []]
    assert calls == [("call_01", "function", "look", '{"q":"cat"}'), ("call_1", "function", "see", "{}")]
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (
        50,
        9,
        59,
    )
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 20
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 3


def test_openai_sdk_reads_a_decoded_local_stream() -> None:
    """A local server's chunks (reasoning and content in one delta, a tool call with no id, usage
    after finish, no [DONE]) decoded and encoded again: the SDK sees one whole answer."""
    upstream = [
        choice({"role": "assistant", "reasoning_content": "Plan.", "content": "Calling."}),
        choice({"tool_calls": [{"index": 0, "function": {"name": "look", "arguments": '{"q"'}}]}),
        choice({"tool_calls": [{"index": 0, "function": {"arguments": ':"x"}'}}]}),
        choice({}, "stop"),
        chunk({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}),
    ]
    decoder = CODEC.stream_decoder()
    encoder = CODEC.stream_encoder(ctx(include_usage=True))
    body = b""
    for raw in upstream:
        for event in decoder.feed(parse_event(raw)):
            body += encoder.encode(event)
    for event in decoder.close():
        body += encoder.encode(event)
    completion, _ = sdk_stream(body)
    (first,) = completion.choices
    assert first.message.content == "Calling."
    assert getattr(first.message, "reasoning_content", None) == "Plan."
    (call,) = first.message.tool_calls or []
    assert call.id.startswith("call_") and len(call.id) > len("call_")
    assert (call.function.name, call.function.arguments) == ("look", '{"q":"x"}')
    assert first.finish_reason == "tool_calls"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)


def test_openai_sdk_hears_the_error_chunk() -> None:
    body = encode_stream(
        [Start(), BlockStart(0, "text"), BlockDelta(0, "x"), StreamError("overloaded")], ctx()
    )
    with pytest.raises(openai.APIError, match="overloaded"):
        sdk_stream(body)
