"""The Anthropic Messages codec: client bodies, upstream bodies, answers and streams, against
golden literals, and the encoded stream consumed by the real anthropic SDK."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillgate.protocols.adapter import sse
from spillgate.protocols.errors import GatewayError
from spillgate.protocols.events import parse_event, split_events
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
    merge_usage,
)
from spillgate.protocols.translate.codec import ClientContext, Malformed, Target
from spillgate.protocols.translate.messages import CODEC, client_call_id, tool_input

EPH = {"type": "ephemeral"}


def counter() -> Callable[[str], str]:
    """Deterministic ids: ``prefix`` + ``gen1``, ``gen2``…"""
    n = 0

    def new_id(prefix: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}gen{n}"

    return new_id


def ctx(estimate: int = 0) -> ClientContext:
    return ClientContext(model="claude-up", estimated_input_tokens=estimate, new_id=counter())


# -- decode_request ---------------------------------------------------------------------------------------
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 32000,
    "stream": True,
    "temperature": 1,
    "metadata": {"user_id": "user_7f_account__session_42"},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "cwd: /repo", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {
            "name": "Read",
            "input_schema": {"type": "object", "properties": {}},
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "messages": [
        {"role": "user", "content": "list the files"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should run ls.", "signature": "EqQBsig"},
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls -la"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "a.py\nb.py"},
                {"type": "text", "text": "now read a.py", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "redacted_thinking", "data": "ENCRYPTED"},
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "x"},
                },
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "tool_use", "id": "toolu_01B", "name": "Read", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "no such file"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                    ],
                }
            ],
        },
    ],
}

CLAUDE_CODE_REQUEST = Request(
    model="claude-sonnet-4-5-20250929",
    messages=(
        Message("system", (Text("You are Claude Code.", cache=True), Text("cwd: /repo", cache=True))),
        Message("user", (Text("list the files"),)),
        Message(
            "assistant",
            (
                Reasoning("I should run ls.", opaque="EqQBsig", origin="anthropic"),
                Text("Listing."),
                ToolCall("toolu_01A", "Bash", '{"command":"ls -la"}'),
            ),
        ),
        Message("tool", (ToolResult("toolu_01A", "a.py\nb.py"),)),
        Message("user", (Text("now read a.py", cache=True),)),
        Message(
            "assistant",
            (
                Reasoning("", opaque="ENCRYPTED", origin="anthropic", redacted=True),
                ToolCall("toolu_01B", "Read", "{}"),
            ),
        ),
        Message(
            "tool",
            (
                ToolResult(
                    "toolu_01B",
                    (Text("no such file"), Image("data:image/png;base64,iVBO")),
                    is_error=True,
                ),
            ),
        ),
    ),
    tools=(
        Tool(
            name="Bash",
            description="Run a command",
            parameters={"type": "object", "properties": {"command": {"type": "string"}}},
        ),
        Tool(
            name="web_search",
            kind="hosted",
            hosted={"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ),
        Tool(name="Read", parameters={"type": "object", "properties": {}}, cache=True),
    ),
    max_output_tokens=32000,
    temperature=1.0,
    reasoning=ReasoningConfig(budget_tokens=31999, summary=True),
    stream=True,
    user="user_7f_account__session_42",
    source_family="anthropic",
    droppable=(
        "a server_tool_use block (a hosted tool's call or result)",
        "a web_search_tool_result block (a hosted tool's call or result)",
    ),
)


def test_decode_request_of_a_claude_code_body() -> None:
    assert CODEC.decode_request(CLAUDE_CODE_BODY) == CLAUDE_CODE_REQUEST


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        pytest.param(
            body(system="be brief"),
            "messages",
            (Message("system", (Text("be brief"),)), Message("user", (Text("hi"),))),
            id="system-string",
        ),
        pytest.param(
            body(system=""),
            "messages",
            (Message("user", (Text("hi"),)),),
            id="system-empty-string-no-message",
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]),
            "messages",
            (Message("tool", (ToolResult("t1", ""),)),),
            id="only-results-only-tool-message",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j"},
                            },
                        ],
                    }
                ]
            ),
            "messages",
            (Message("user", (Image("https://x/a.png"), Image("data:image/jpeg;base64,/9j"))),),
            id="images",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t1",
                                "content": "out",
                                "cache_control": {"type": "ephemeral"},
                            }
                        ],
                    }
                ]
            ),
            "messages",
            (Message("tool", (ToolResult("t1", (Text("out", cache=True),)),)),),
            id="cached-tool-result-keeps-its-breakpoint-on-its-text",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {}}, {"type": "text", "text": "x"}],
                    }
                ]
            ),
            "untranslatable",
            ("a document block",),
            id="document-untranslatable",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "search_result"},
                            {"type": "container_upload"},
                            {"type": "brand_new"},
                        ],
                    }
                ]
            ),
            "untranslatable",
            ("a search_result block", "a container_upload block", "a brand_new block"),
            id="search-result-container-upload-unknown-untranslatable",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            "untranslatable",
            ("an image with a file source",),
            id="image-file-source-untranslatable",
        ),
        pytest.param(body(top_k=5), "droppable", ("top_k",), id="top-k-droppable"),
        pytest.param(body(tool_choice={"type": "auto"}), "tool_choice", ToolChoice("auto"), id="choice-auto"),
        pytest.param(
            body(tool_choice={"type": "any"}), "tool_choice", ToolChoice("required"), id="choice-any"
        ),
        pytest.param(body(tool_choice={"type": "none"}), "tool_choice", ToolChoice("none"), id="choice-none"),
        pytest.param(
            body(tool_choice={"type": "tool", "name": "Bash"}),
            "tool_choice",
            ToolChoice("tool", "Bash"),
            id="choice-tool",
        ),
        pytest.param(
            body(
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
                tool_choice={"type": "tool", "name": "web_search"},
            ),
            "tool_choice",
            ToolChoice("tool", "web_search", hosted=True),
            id="choice-hosted-tool",
        ),
        pytest.param(
            body(tool_choice={"type": "auto", "disable_parallel_tool_use": True}),
            "parallel_tool_calls",
            False,
            id="parallel-disabled",
        ),
        pytest.param(
            body(tool_choice={"type": "any", "disable_parallel_tool_use": False}),
            "parallel_tool_calls",
            True,
            id="parallel-allowed",
        ),
        pytest.param(
            body(thinking={"type": "disabled"}),
            "reasoning",
            ReasoningConfig(enabled=False),
            id="thinking-disabled",
        ),
        pytest.param(
            body(thinking={"type": "adaptive"}),
            "reasoning",
            ReasoningConfig(summary=True),
            id="thinking-adaptive",
        ),
        pytest.param(
            body(thinking={"type": "adaptive", "display": "omitted"}, output_config={"effort": "medium"}),
            "reasoning",
            ReasoningConfig(effort="medium", summary=False),
            id="thinking-adaptive-effort-omitted",
        ),
        pytest.param(
            body(output_config={"effort": "max"}),
            "reasoning",
            ReasoningConfig(effort="high"),
            id="effort-max-is-high",
        ),
        pytest.param(
            body(output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}),
            "output_format",
            OutputFormat("json_schema", schema={"type": "object"}),
            id="output-format",
        ),
        pytest.param(
            body(tools=[{"name": "f", "input_schema": {"type": "object"}, "type": "custom", "strict": True}]),
            "tools",
            (Tool(name="f", parameters={"type": "object"}, strict=True),),
            id="custom-typed-tool-is-a-function",
        ),
        pytest.param(
            body(tools=[{"type": "bash_20250124", "name": "bash"}, {"type": "text_editor_20250728"}]),
            "tools",
            (
                Tool(name="bash", kind="hosted", hosted={"type": "bash_20250124", "name": "bash"}),
                Tool(name="text_editor_20250728", kind="hosted", hosted={"type": "text_editor_20250728"}),
            ),
            id="hosted-tools-named-by-name-or-type",
        ),
        pytest.param(
            body(stop_sequences=["\n\nHuman:"], top_p=0.9), "stop", ("\n\nHuman:",), id="stop-sequences"
        ),
        pytest.param(
            body(unknown_field={"x": 1}, service_tier="auto"),
            "untranslatable",
            (),
            id="unknown-fields-ignored",
        ),
    ],
)
def test_decode_request_fields(data: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(CODEC.decode_request(data), field) == expected


def with_message_block(block: Any) -> dict[str, Any]:
    return body(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [block]},
        ]
    )


@pytest.mark.parametrize(
    ("data", "param"),
    [
        pytest.param({"messages": []}, "model", id="model-missing"),
        pytest.param(body(messages="hi"), "messages", id="messages-not-list"),
        pytest.param(body(messages=["hi"]), "messages[0]", id="message-not-object"),
        pytest.param(
            body(messages=[{"role": "developer", "content": "x"}]), "messages[0].role", id="role-developer"
        ),
        pytest.param(
            body(messages=[{"role": "user", "content": 5}]), "messages[0].content", id="content-number"
        ),
        pytest.param(
            with_message_block({"type": "tool_result", "tool_use_id": 7}),
            "messages[2].content[0].tool_use_id",
            id="tool-use-id-number",
        ),
        pytest.param(with_message_block("text"), "messages[2].content[0]", id="block-not-object"),
        pytest.param(
            with_message_block({"text": "x"}), "messages[2].content[0].type", id="block-without-type"
        ),
        pytest.param(
            with_message_block({"type": "text", "text": None}), "messages[2].content[0].text", id="text-null"
        ),
        pytest.param(
            with_message_block({"type": "tool_use", "id": "t", "name": "f", "input": "{}"}),
            "messages[2].content[0].input",
            id="tool-use-input-string",
        ),
        pytest.param(
            with_message_block({"type": "tool_result", "tool_use_id": "t", "content": 3}),
            "messages[2].content[0].content",
            id="tool-result-content-number",
        ),
        pytest.param(
            with_message_block({"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}),
            "messages[2].content[0].is_error",
            id="is-error-string",
        ),
        pytest.param(
            with_message_block(
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": 1}]}
            ),
            "messages[2].content[0].content[0].text",
            id="tool-result-inner-text-number",
        ),
        pytest.param(
            with_message_block({"type": "image", "source": {"type": "base64", "data": "x"}}),
            "messages[2].content[0].source.media_type",
            id="image-without-media-type",
        ),
        pytest.param(
            with_message_block({"type": "thinking", "thinking": 1}),
            "messages[2].content[0].thinking",
            id="thinking-number",
        ),
        pytest.param(
            body(messages=[{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]),
            "messages[0].content[0]",
            id="tool-result-in-assistant",
        ),
        pytest.param(body(system=5), "system", id="system-number"),
        pytest.param(body(system=[{"type": "image"}]), "system[0].type", id="system-image-block"),
        pytest.param(body(system=[{"type": "text", "text": 1}]), "system[0].text", id="system-text-number"),
        pytest.param(body(tools={"name": "f"}), "tools", id="tools-object"),
        pytest.param(body(tools=[{"name": 3}]), "tools[0].name", id="tool-name-number"),
        pytest.param(
            body(tools=[{"name": "f", "input_schema": "{}"}]),
            "tools[0].input_schema",
            id="tool-schema-string",
        ),
        pytest.param(body(tool_choice="auto"), "tool_choice", id="tool-choice-string"),
        pytest.param(body(tool_choice={"type": "sometimes"}), "tool_choice.type", id="tool-choice-unknown"),
        pytest.param(
            body(tool_choice={"type": "tool"}), "tool_choice.name", id="tool-choice-tool-without-name"
        ),
        pytest.param(
            body(tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
            "tool_choice.disable_parallel_tool_use",
            id="disable-parallel-number",
        ),
        pytest.param(body(thinking={"type": "enabled"}), "thinking.budget_tokens", id="budget-missing"),
        pytest.param(
            body(thinking={"type": "enabled", "budget_tokens": "big"}),
            "thinking.budget_tokens",
            id="budget-string",
        ),
        pytest.param(body(thinking="on"), "thinking", id="thinking-string"),
        pytest.param(body(max_tokens="100"), "max_tokens", id="max-tokens-string"),
        pytest.param(body(max_tokens=True), "max_tokens", id="max-tokens-bool"),
        pytest.param(body(temperature="hot"), "temperature", id="temperature-string"),
        pytest.param(body(top_p=[1]), "top_p", id="top-p-list"),
        pytest.param(body(stop_sequences="END"), "stop_sequences", id="stop-string"),
        pytest.param(body(stop_sequences=["a", 1]), "stop_sequences[1]", id="stop-item-number"),
        pytest.param(body(metadata={"user_id": 5}), "metadata.user_id", id="user-id-number"),
        pytest.param(body(metadata="u"), "metadata", id="metadata-string"),
        pytest.param(body(stream="yes"), "stream", id="stream-string"),
        pytest.param(
            body(output_config={"format": {"type": "json_object"}}),
            "output_config.format.type",
            id="format-type",
        ),
    ],
)
def test_decode_request_rejects_a_wrong_type_naming_the_param(data: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(data)
    assert caught.value.status == 400
    assert caught.value.param == param


# -- encode_request ---------------------------------------------------------------------------------------
TARGET = Target(model="claude-target", max_output_tokens=4096, reasoning=True)


def req(*messages: Message, **fields: Any) -> Request:
    return Request(model="client-model", messages=messages, **fields)


def U(text: str) -> Message:
    return Message("user", (Text(text),))


def encode(request: Request, target: Target = TARGET) -> tuple[dict[str, Any], list[str]]:
    carried = Carried()
    return CODEC.encode_request(request, target, carried), carried.omitted


def test_encode_request_system_leading_and_mid_conversation() -> None:
    request = req(
        Message("system", (Text("rules"),)),
        Message("developer", (Text("dev rules", cache=True),)),
        U("q1"),
        Message("assistant", (Text("a1"),)),
        Message("developer", (Text("mid note"),)),
        U("q2"),
    )
    assert encode(request) == (
        {
            "model": "claude-target",
            "max_tokens": 4096,
            "system": [
                {"type": "text", "text": "rules"},
                {"type": "text", "text": "dev rules", "cache_control": EPH},
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "q1"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a1"}]},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "mid note"}, {"type": "text", "text": "q2"}],
                },
            ],
        },
        [],
    )


def test_encode_request_merges_tool_results_first_and_sanitises_ids() -> None:
    request = req(
        U("go"),
        Message(
            "assistant",
            (
                Text(""),  # a Chat client's empty content beside its tool calls
                ToolCall("call.1/a", "read", '{"path":"a"}'),
                ToolCall("call_2", "noargs", ""),
                ToolCall("call_3", "listy", "[1,2]"),
                ToolCall("call_4", "broken", "{not json"),
            ),
        ),
        Message("tool", (ToolResult("call.1/a", "A"),)),
        Message("tool", (ToolResult("call_2", (Text("B1"), Text("B2", cache=True))),)),
        U("and?"),
        Message(
            "tool", (ToolResult("call_3", (Text("see"), Image("data:image/png;base64,AAA")), is_error=True),)
        ),
        Message("tool", (ToolResult("call_4", "D"),)),
    )
    out, omitted = encode(request)
    assert omitted == []
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1_a", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "call_2", "name": "noargs", "input": {}},
                {"type": "tool_use", "id": "call_3", "name": "listy", "input": {"input": [1, 2]}},
                {"type": "tool_use", "id": "call_4", "name": "broken", "input": {"input": "{not json"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1_a", "content": "A"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "B1\nB2", "cache_control": EPH},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_3",
                    "content": [
                        {"type": "text", "text": "see"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA"},
                        },
                    ],
                    "is_error": True,
                },
                {"type": "tool_result", "tool_use_id": "call_4", "content": "D"},
                {"type": "text", "text": "and?"},
            ],
        },
    ]


def test_encode_request_drops_reasoning_of_another_provider() -> None:
    request = req(
        U("q"),
        Message(
            "assistant",
            (
                Reasoning("openai summary", opaque="gAAAA", origin="openai", item_id="rs_1"),
                Reasoning("claude thought", opaque="sig", origin="anthropic"),
                Reasoning("", opaque="REDACTED", origin="anthropic", redacted=True),
                Reasoning("unsigned", origin="anthropic"),
                Refusal("I can't"),
                Text("answer"),
            ),
        ),
        U("more"),
    )
    out, omitted = encode(request)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "claude thought", "signature": "sig"},
            {"type": "redacted_thinking", "data": "REDACTED"},
            {"type": "text", "text": "I can't"},
            {"type": "text", "text": "answer"},
        ],
    }
    assert omitted == ["reasoning from another provider"]


CODEX_TOOLS = (
    Tool(
        name="shell",
        description="Run",
        parameters={"type": "object", "properties": {"cmd": {"type": "string"}}},
    ),
    Tool(name="apply_patch", parameters=None),
)


def test_encode_request_prompt_cache_key_marks_last_system_block_and_last_tool() -> None:
    request = req(
        Message("system", (Text("instructions"), Text("more instructions"))),
        U("q"),
        tools=CODEX_TOOLS,
        prompt_cache_key="conv-1",
    )
    out, _ = encode(request)
    assert out["system"] == [
        {"type": "text", "text": "instructions"},
        {"type": "text", "text": "more instructions", "cache_control": EPH},
    ]
    assert out["tools"] == [
        {
            "name": "shell",
            "description": "Run",
            "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        },
        {"name": "apply_patch", "input_schema": {"type": "object", "properties": {}}, "cache_control": EPH},
    ]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "q"}]}]


def test_encode_request_prompt_cache_key_adds_nothing_when_the_client_placed_breakpoints() -> None:
    request = req(
        Message("system", (Text("instructions"),)),
        Message("user", (Text("q", cache=True),)),
        tools=CODEX_TOOLS,
        prompt_cache_key="conv-1",
    )
    out, _ = encode(request)
    assert out["system"] == [{"type": "text", "text": "instructions"}]
    assert [t.get("cache_control") for t in out["tools"]] == [None, None]
    assert out["messages"][0]["content"] == [{"type": "text", "text": "q", "cache_control": EPH}]


@pytest.mark.parametrize(
    ("reasoning", "max_output", "thinking", "max_tokens"),
    [
        pytest.param(ReasoningConfig(effort="minimal"), None, 1024, 4096, id="minimal"),
        pytest.param(ReasoningConfig(effort="low"), None, 2048, 4096, id="low"),
        pytest.param(
            ReasoningConfig(effort="medium"), None, 8192, 8192 + 4096, id="medium-raises-max-tokens"
        ),
        pytest.param(ReasoningConfig(effort="high", summary=True), 30000, 24576, 30000, id="high-fits"),
        pytest.param(
            ReasoningConfig(effort="medium"), 8192, 8192, 8192 + 4096, id="max-tokens-equal-budget-raised"
        ),
        pytest.param(ReasoningConfig(budget_tokens=5000), 6000, 5000, 6000, id="budget"),
        pytest.param(ReasoningConfig(budget_tokens=100), 6000, 1024, 6000, id="budget-below-minimum"),
        pytest.param(ReasoningConfig(summary=True), None, None, 4096, id="summary-only-no-thinking"),
        pytest.param(ReasoningConfig(effort="high", enabled=False), None, None, 4096, id="disabled"),
        pytest.param(ReasoningConfig(effort="none"), None, None, 4096, id="effort-none"),
        pytest.param(None, None, None, 4096, id="no-reasoning"),
    ],
)
def test_encode_request_thinking(
    reasoning: ReasoningConfig | None, max_output: int | None, thinking: int | None, max_tokens: int
) -> None:
    out, omitted = encode(
        req(U("q"), reasoning=reasoning, max_output_tokens=max_output, temperature=0.2, top_p=0.9)
    )
    assert out["max_tokens"] == max_tokens
    if thinking is None:
        assert "thinking" not in out
        assert (out["temperature"], out["top_p"]) == (0.2, 0.9)
        assert omitted == []
    else:
        assert out["thinking"] == {"type": "enabled", "budget_tokens": thinking}
        assert "temperature" not in out and "top_p" not in out
        assert omitted == ["temperature with thinking", "top_p with thinking"]


@pytest.mark.parametrize(
    ("model", "reasoning", "thinks"),
    [
        pytest.param("claude-3-5-sonnet-latest", None, False, id="claude-3-5-no"),
        pytest.param("claude-3-haiku-20240307", None, False, id="claude-3-haiku-no"),
        pytest.param("claude-3-7-sonnet-latest", None, True, id="claude-3-7-yes"),
        pytest.param("claude-opus-4-1", None, True, id="claude-4-yes"),
        pytest.param("claude-3-5-sonnet-latest", True, True, id="route-says-yes"),
        pytest.param("claude-opus-4-1", False, False, id="route-says-no"),
    ],
)
def test_encode_request_thinking_only_for_models_that_think(
    model: str, reasoning: bool | None, thinks: bool
) -> None:
    out, _ = encode(req(U("q"), reasoning=ReasoningConfig(effort="low")), Target(model, 4096, reasoning))
    assert ("thinking" in out) is thinks


def test_encode_request_thinking_left_out_with_a_forced_tool_choice() -> None:
    out, omitted = encode(
        req(
            U("q"),
            tools=CODEX_TOOLS,
            tool_choice=ToolChoice("required"),
            reasoning=ReasoningConfig(effort="low"),
        )
    )
    assert "thinking" not in out and out["tool_choice"] == {"type": "any"}
    assert omitted == ["thinking with a forced tool choice"]


@pytest.mark.parametrize(
    ("assistant", "thinks"),
    [
        pytest.param(
            (Reasoning("r", "gAAA", "openai"), ToolCall("c1", "shell", "{}")),
            False,
            id="openai-reasoning-dropped",
        ),
        pytest.param(
            (Reasoning("r", "sig", "anthropic"), ToolCall("c1", "shell", "{}")),
            True,
            id="anthropic-thinking-first",
        ),
        pytest.param(
            (Reasoning("", "data", "anthropic", redacted=True), ToolCall("c1", "shell", "{}")),
            True,
            id="redacted-first",
        ),
    ],
)
def test_encode_request_thinking_left_out_when_the_turn_in_progress_began_without_it(
    assistant: tuple[Reasoning | ToolCall, ...], thinks: bool
) -> None:
    request = req(
        U("q"),
        Message("assistant", assistant),
        Message("tool", (ToolResult("c1", "ok"),)),
        tools=CODEX_TOOLS,
        reasoning=ReasoningConfig(effort="low"),
    )
    out, omitted = encode(request)
    assert ("thinking" in out) is thinks
    assert ("thinking (the turn in progress began without Anthropic thinking)" in omitted) is not thinks


def test_encode_request_thinking_kept_after_a_new_user_turn() -> None:
    request = req(
        U("q"),
        Message("assistant", (ToolCall("c1", "shell", "{}"),)),
        Message("tool", (ToolResult("c1", "ok"),)),
        Message("assistant", (Text("done"),)),
        U("next question"),
        tools=CODEX_TOOLS,
        reasoning=ReasoningConfig(effort="low"),
    )
    out, _ = encode(request)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        pytest.param(ToolChoice("auto"), None, {"type": "auto"}, id="auto"),
        pytest.param(ToolChoice("required"), None, {"type": "any"}, id="required"),
        pytest.param(ToolChoice("tool", "shell"), None, {"type": "tool", "name": "shell"}, id="tool"),
        pytest.param(ToolChoice("none"), None, {"type": "none"}, id="none"),
        pytest.param(None, None, None, id="absent"),
        pytest.param(
            None, False, {"type": "auto", "disable_parallel_tool_use": True}, id="parallel-false-auto"
        ),
        pytest.param(
            ToolChoice("required"),
            False,
            {"type": "any", "disable_parallel_tool_use": True},
            id="parallel-false-any",
        ),
        pytest.param(ToolChoice("auto"), True, {"type": "auto"}, id="parallel-true"),
        pytest.param(ToolChoice("none"), False, {"type": "none"}, id="parallel-false-none"),
    ],
)
def test_encode_request_tool_choice(
    choice: ToolChoice | None, parallel: bool | None, wire: dict[str, Any] | None
) -> None:
    out, _ = encode(req(U("q"), tools=CODEX_TOOLS, tool_choice=choice, parallel_tool_calls=parallel))
    assert out.get("tool_choice") == wire


def test_encode_request_without_tools_has_no_tool_fields() -> None:
    out, _ = encode(req(U("q"), tool_choice=ToolChoice("required"), parallel_tool_calls=False))
    assert "tools" not in out and "tool_choice" not in out


def test_encode_request_the_other_fields() -> None:
    request = req(
        U("q"),
        Message("user", (Image("https://x/y.png", detail="high"), Image("data:image/gif;base64,R0lG"))),
        stop=("END",),
        user="u-1",
        stream=True,
        max_output_tokens=777,
        temperature=0.5,
        output_format=OutputFormat("json_schema", "fmt", {"type": "object"}),
        include_usage=True,
        store=False,
    )
    assert encode(request) == (
        {
            "model": "claude-target",
            "max_tokens": 777,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "q"},
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"},
                        },
                    ],
                }
            ],
            "temperature": 0.5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "stream": True,
        },
        ["response format"],
    )


@pytest.mark.parametrize(
    ("messages", "wire"),
    [
        pytest.param((), [], id="empty"),
        pytest.param(
            (Message("assistant", (Text("prefill"),)), U("q")),
            [
                {"role": "assistant", "content": [{"type": "text", "text": "prefill"}]},
                {"role": "user", "content": [{"type": "text", "text": "q"}]},
            ],
            id="starts-with-assistant",
        ),
    ],
)
def test_encode_request_encodes_odd_conversations_as_given(
    messages: tuple[Message, ...], wire: list[Any]
) -> None:
    out, _ = encode(req(*messages))
    assert out["messages"] == wire


def test_encode_request_hosted_tools_pass_only_from_an_anthropic_client() -> None:
    hosted = Tool(
        name="web_search", kind="hosted", hosted={"type": "web_search_20250305", "name": "web_search"}
    )
    from_claude, omitted = encode(req(U("q"), tools=(hosted,), source_family="anthropic"))
    assert from_claude["tools"] == [{"type": "web_search_20250305", "name": "web_search"}] and omitted == []
    openai_hosted = Tool(name="web_search", kind="hosted", hosted={"type": "web_search"})
    from_codex, omitted = encode(req(U("q"), tools=(openai_hosted,), source_family="openai"))
    assert "tools" not in from_codex and omitted == ["the hosted tool web_search"]


def test_encode_request_previous_response_id_is_uncarriable() -> None:
    with pytest.raises(Uncarriable):
        encode(req(U("q"), previous_response_id="resp_1"))


def test_encode_request_of_the_decoded_claude_code_body_is_byte_stable() -> None:
    target = Target("claude-sonnet-4-5-20250929", 4096, True)
    first, _ = encode(CLAUDE_CODE_REQUEST, target)
    again, _ = encode(CODEC.decode_request(copy.deepcopy(CLAUDE_CODE_BODY)), target)
    assert orjson.dumps(first) == orjson.dumps(again)
    assert first["system"] == CLAUDE_CODE_BODY["system"]
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 31999}
    assert first["messages"][2]["content"][1] == {
        "type": "text",
        "text": "now read a.py",
        "cache_control": EPH,
    }


# -- answers ---------------------------------------------------------------------------------------------
ANTHROPIC_MESSAGE = {
    "id": "msg_01XYZ",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "DATA"},
        {"type": "text", "text": "Let me check.", "citations": None},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "ls"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "output_tokens": 55,
    },
}


def test_decode_response() -> None:
    assert CODEC.decode_response(ANTHROPIC_MESSAGE) == Response(
        id="msg_01XYZ",
        model="claude-sonnet-4-5",
        parts=(
            Reasoning("hmm", opaque="sig", origin="anthropic"),
            Reasoning("", opaque="DATA", origin="anthropic", redacted=True),
            Text("Let me check."),
            ToolCall("toolu_9", "Bash", '{"command":"ls"}'),
        ),
        finish="tool_calls",
        usage=Usage(input_tokens=1210, output_tokens=55, cached_tokens=1000, cache_write_tokens=200),
    )


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "refusal"),
        ("pause_turn", "pause"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_decode_response_stop_reasons(stop_reason: str | None, finish: str) -> None:
    payload: dict[str, Any] = {"content": [], "stop_reason": stop_reason}
    assert CODEC.decode_response(payload).finish == finish


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"content": "text"}, id="content-string"),
        pytest.param({}, id="content-missing"),
        pytest.param({"content": ["x"]}, id="block-string"),
        pytest.param({"content": [{"type": "text", "text": 5}]}, id="text-number"),
        pytest.param(
            {"content": [{"type": "tool_use", "id": "t", "name": None, "input": {}}]}, id="tool-name-null"
        ),
        pytest.param({"content": [{"type": "thinking"}]}, id="thinking-missing"),
        pytest.param({"content": [{"type": "redacted_thinking", "data": 1}]}, id="redacted-data-number"),
    ],
)
def test_decode_response_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        CODEC.decode_response(payload)


def test_decode_response_tolerates_odd_counts_and_ids() -> None:
    response = CODEC.decode_response(
        {
            "id": 5,
            "content": [],
            "usage": {"input_tokens": -1, "output_tokens": "7", "cache_read_input_tokens": True},
        }
    )
    assert (response.id, response.usage) == (None, Usage())


def test_encode_response() -> None:
    response = Response(
        id="resp_abc",
        model="gpt-5",
        parts=(
            Reasoning("openai summary", opaque="gAAAA", origin="openai"),
            Reasoning("claude thought", opaque="sig", origin="anthropic"),
            Reasoning("", opaque="DATA", origin="anthropic", redacted=True),
            Reasoning("", opaque="gAAAA", origin="openai"),
            Text("Here."),
            Text(""),
            Refusal("Not that."),
            ToolCall("call_abc", "shell", '{"cmd":"ls"}'),
            ToolCall("toolu_keep", "shell", "[1]"),
            ToolCall("", "shell", ""),
        ),
        finish="tool_calls",
        usage=Usage(input_tokens=1210, output_tokens=55, cached_tokens=1000, cache_write_tokens=200),
    )
    assert CODEC.encode_response(response, ctx()) == {
        "id": "msg_gen1",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": [
            {"type": "thinking", "thinking": "openai summary", "signature": ""},
            {"type": "thinking", "thinking": "claude thought", "signature": "sig"},
            {"type": "redacted_thinking", "data": "DATA"},
            {"type": "text", "text": "Here."},
            {"type": "text", "text": "Not that."},
            {"type": "tool_use", "id": "toolu_abc", "name": "shell", "input": {"cmd": "ls"}},
            {"type": "tool_use", "id": "toolu_keep", "name": "shell", "input": {"input": [1]}},
            {"type": "tool_use", "id": "toolu_gen2", "name": "shell", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 55,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
        },
    }


@pytest.mark.parametrize(
    ("finish", "tools", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("stop", True, "tool_use"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("refusal", False, "refusal"),
        ("pause", False, "pause_turn"),
    ],
)
def test_encode_response_stop_reasons(finish: Any, tools: bool, stop_reason: str) -> None:
    parts = (ToolCall("call_1", "f", "{}"),) if tools else (Text("x"),)
    out = CODEC.encode_response(Response("msg_keep", None, parts, finish=finish), ctx(estimate=42))
    assert (out["id"], out["stop_reason"], out["usage"]["input_tokens"]) == ("msg_keep", stop_reason, 42)


@pytest.mark.parametrize(
    ("prefix", "upstream", "expected"),
    [
        ("toolu_", "toolu_01", "toolu_01"),
        ("toolu_", "call_abc", "toolu_abc"),
        ("toolu_", "fc_abc", "toolu_abc"),
        ("toolu_", "xyz", "toolu_xyz"),
        ("toolu_", "", "toolu_gen1"),
        ("toolu_", "call_", "toolu_gen1"),
        ("call_", "toolu_01", "call_01"),
    ],
)
def test_client_call_id(prefix: str, upstream: str, expected: str) -> None:
    assert client_call_id(prefix, upstream, counter()) == expected


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ('{"a":1}', {"a": 1}),
        ("3", {"input": 3}),
        ("nope", {"input": "nope"}),
        ('"s"', {"input": "s"}),
    ],
)
def test_tool_input(arguments: str, expected: dict[str, Any]) -> None:
    assert tool_input(arguments) == expected


# -- the stream decoder -----------------------------------------------------------------------------------
def ev(payload: Any, name: str | None = None) -> bytes:
    if name is None and isinstance(payload, dict):
        name = payload.get("type")
    return sse(name, payload)


def decode_stream(frames: list[bytes], close: bool = True) -> list[StreamEvent]:
    decoder = CODEC.stream_decoder()
    out: list[StreamEvent] = []
    for frame in frames:
        out.extend(decoder.feed(parse_event(frame)))
    if close:
        out.extend(decoder.close())
    return out


def message_start(usage: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage is not None:
        message["usage"] = usage
    return ev({"type": "message_start", "message": message})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, d: dict[str, Any]) -> bytes:
    return ev({"type": "content_block_delta", "index": index, "delta": d})


def block_stop(index: int) -> bytes:
    return ev({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str | None, usage: dict[str, Any]) -> bytes:
    return ev(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage,
        }
    )


MESSAGE_STOP = ev({"type": "message_stop"})
PING = ev({"type": "ping"})

START_USAGE = {
    "input_tokens": 12,
    "cache_read_input_tokens": 3000,
    "cache_creation_input_tokens": 40,
    "output_tokens": 1,
}

TEXT_STREAM = [
    message_start(START_USAGE),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    delta(0, {"type": "text_delta", "text": "Hel"}),
    delta(0, {"type": "text_delta", "text": "lo"}),
    block_stop(0),
    message_delta("end_turn", {"output_tokens": 9}),
    MESSAGE_STOP,
]

THINKING_TOOL_STREAM = [
    message_start(START_USAGE),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
    delta(0, {"type": "thinking_delta", "thinking": "think."}),
    delta(0, {"type": "signature_delta", "signature": "EqQBsig"}),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {}}),
    delta(1, {"type": "input_json_delta", "partial_json": ""}),
    delta(1, {"type": "input_json_delta", "partial_json": '{"command":'}),
    delta(1, {"type": "input_json_delta", "partial_json": ' "ls"}'}),
    block_stop(1),
    message_delta("tool_use", {"output_tokens": 80}),
    MESSAGE_STOP,
]

HOSTED_STREAM = [
    message_start(START_USAGE),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, {"type": "text_delta", "text": "Searching."}),
    block_stop(0),
    block_start(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
    delta(1, {"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
    block_stop(1),
    block_start(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
    block_stop(2),
    block_start(3, {"type": "text", "text": ""}),
    delta(3, {"type": "text_delta", "text": "Found"}),
    delta(3, {"type": "citations_delta", "citation": {"type": "web_search_result_location"}}),
    block_stop(3),
    block_start(4, {"type": "redacted_thinking", "data": "DATA"}),
    block_stop(4),
    message_delta(
        "end_turn", {"output_tokens": 20, "input_tokens": 12, "server_tool_use": {"web_search_requests": 1}}
    ),
    MESSAGE_STOP,
]

START = Start("msg_up", "claude-sonnet-4-5", Usage(3052, 1, 3000, 40))


@pytest.mark.parametrize(
    ("frames", "events"),
    [
        pytest.param(
            TEXT_STREAM,
            [
                START,
                BlockStart(0, "text"),
                BlockDelta(0, "Hel"),
                BlockDelta(0, "lo"),
                BlockStop(0),
                Finish("stop"),
                UsageReport(Usage(output_tokens=9)),
                End(),
            ],
            id="text",
        ),
        pytest.param(
            THINKING_TOOL_STREAM,
            [
                START,
                BlockStart(0, "reasoning"),
                BlockDelta(0, "Let me "),
                BlockDelta(0, "think."),
                BlockOpaque(0, "EqQBsig", "anthropic"),
                BlockStop(0),
                BlockStart(1, "tool", call_id="toolu_01", name="Bash"),
                BlockDelta(1, '{"command":'),
                BlockDelta(1, ' "ls"}'),
                BlockStop(1),
                Finish("tool_calls"),
                UsageReport(Usage(output_tokens=80)),
                End(),
            ],
            id="thinking-signature-tool-use",
        ),
        pytest.param(
            HOSTED_STREAM,
            [
                START,
                BlockStart(0, "text"),
                BlockDelta(0, "Searching."),
                BlockStop(0),
                BlockStart(1, "text"),
                BlockDelta(1, "Found"),
                BlockStop(1),
                BlockStart(2, "reasoning"),
                BlockOpaque(2, "DATA", "anthropic", redacted=True),
                BlockStop(2),
                Finish("stop"),
                # input repeated without its cache counts: the start's cache counts still add up
                UsageReport(Usage(3052, 20, 3000, 40)),
                End(),
            ],
            id="hosted-blocks-skipped-and-renumbered",
        ),
        pytest.param(
            [
                message_start(START_USAGE),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, {"type": "text_delta", "text": "partial"}),
                ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ],
            [
                START,
                BlockStart(0, "text"),
                BlockDelta(0, "partial"),
                StreamError("Overloaded", "overloaded_error"),
            ],
            id="error-event",
        ),
        pytest.param(
            [
                message_start(START_USAGE),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, {"type": "text_delta", "text": "cut"}),
            ],
            [START, BlockStart(0, "text"), BlockDelta(0, "cut")],
            id="cut-stream-close-adds-nothing",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, {"type": "text_delta", "text": "x"}),
                message_delta("max_tokens", {"output_tokens": 4}),
            ],
            [
                Start("msg_up", "claude-sonnet-4-5", None),
                BlockStart(0, "text"),
                BlockDelta(0, "x"),
                BlockStop(0),
                Finish("length"),
                UsageReport(Usage(output_tokens=4)),
                End(),
            ],
            id="finished-without-message-stop-close-ends-it",
        ),
        pytest.param(
            [
                message_start(START_USAGE),
                block_start(0, {"type": "text", "text": "pre"}),
                block_start(1, {"type": "tool_use", "id": "", "name": "f", "input": {"a": 1}}),
                MESSAGE_STOP,
            ],
            [
                START,
                BlockStart(0, "text"),
                BlockDelta(0, "pre"),
                BlockStop(0),
                BlockStart(1, "tool", call_id="toolu_RANDOM", name="f"),
                BlockDelta(1, '{"a":1}'),
                BlockStop(1),
                End(),
            ],
            id="unstopped-blocks-stopped-and-start-contents-kept",
        ),
        pytest.param(
            [ev({"type": "something_new", "x": 1}), ev({"type": "ping"}), MESSAGE_STOP, PING],
            [End()],
            id="unknown-events-ignored",
        ),
    ],
)
def test_stream_decoder(frames: list[bytes], events: list[StreamEvent]) -> None:
    got = decode_stream(frames)
    # a tool call without an id gets a random toolu_ one: pin its shape, then compare the rest
    for i, event in enumerate(got):
        if (
            isinstance(event, BlockStart)
            and event.call_id
            and event.call_id.startswith("toolu_")
            and len(event.call_id) == 30
        ):
            got[i] = BlockStart(event.index, event.kind, "toolu_RANDOM", event.name)
    assert got == events


def test_stream_decoder_close_of_a_cut_stream_is_empty() -> None:
    decoder = CODEC.stream_decoder()
    for frame in TEXT_STREAM[:4]:
        decoder.feed(parse_event(frame))
    assert decoder.close() == []


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([b"event: message_start\ndata: {not json\n\n"], id="not-json"),
        pytest.param([ev([1, 2], "message_start")], id="not-object"),
        pytest.param([ev({"type": 5}, "message_start")], id="type-number"),
        pytest.param([ev({"type": "message_start", "message": "m"})], id="message-not-object"),
        pytest.param(
            [message_start(), delta(0, {"type": "text_delta", "text": "x"})], id="delta-for-unstarted-index"
        ),
        pytest.param([message_start(), block_stop(3)], id="stop-for-unstarted-index"),
        pytest.param(
            [message_start(), ev({"type": "content_block_start", "content_block": {"type": "text"}})],
            id="start-without-index",
        ),
        pytest.param([message_start(), block_start(-1, {"type": "text", "text": ""})], id="negative-index"),
        pytest.param(
            [message_start(), ev({"type": "content_block_start", "index": True, "content_block": {}})],
            id="bool-index",
        ),
        pytest.param(
            [message_start(), ev({"type": "content_block_start", "index": 0, "content_block": "text"})],
            id="block-not-object",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                block_start(0, {"type": "text", "text": ""}),
            ],
            id="index-started-twice",
        ),
        pytest.param(
            [message_start(), block_start(0, {"type": "tool_use", "id": "t", "input": {}})],
            id="tool-without-name",
        ),
        pytest.param([message_start(), block_start(0, {"type": "text", "text": 3})], id="text-number"),
        pytest.param(
            [message_start(), block_start(0, {"type": "redacted_thinking"})], id="redacted-without-data"
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                ev({"type": "content_block_delta", "index": 0, "delta": "x"}),
            ],
            id="delta-not-object",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, {"type": "text_delta", "text": None}),
            ],
            id="text-delta-null",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, {"type": "input_json_delta", "partial_json": "{"}),
            ],
            id="json-delta-for-text-block",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
                delta(0, {"type": "signature_delta", "signature": "s"}),
            ],
            id="signature-delta-for-tool-block",
        ),
        pytest.param(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                block_stop(0),
                delta(0, {"type": "text_delta", "text": "late"}),
            ],
            id="delta-after-stop",
        ),
    ],
)
def test_stream_decoder_malformed_upstream_events(frames: list[bytes]) -> None:
    decoder = CODEC.stream_decoder()
    for frame in frames[:-1]:
        decoder.feed(parse_event(frame))
    with pytest.raises(Malformed):
        decoder.feed(parse_event(frames[-1]))


# -- the stream encoder -----------------------------------------------------------------------------------
def encode_stream(events: list[StreamEvent], estimate: int = 0) -> bytes:
    encoder = CODEC.stream_encoder(ctx(estimate))
    return b"".join(encoder.encode(e) for e in events)


def wire(blob: bytes) -> list[tuple[str | None, Any]]:
    return [(event.name, orjson.loads(event.data)) for event in map(parse_event, split_events(blob))]


def w_start(msg_id: str, input_tokens: int, read: int = 0, write: int = 0) -> tuple[str, Any]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": "claude-up",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": 0,
                    "cache_read_input_tokens": read,
                    "cache_creation_input_tokens": write,
                },
            },
        },
    )


def w_block(index: int, block: dict[str, Any]) -> tuple[str, Any]:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def w_delta(index: int, d: dict[str, Any]) -> tuple[str, Any]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})


def w_stop(index: int) -> tuple[str, Any]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def w_end(
    stop_reason: str, output: int, input_tokens: int, read: int = 0, write: int = 0
) -> list[tuple[str, Any]]:
    return [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {
                    "output_tokens": output,
                    "input_tokens": input_tokens,
                    "cache_read_input_tokens": read,
                    "cache_creation_input_tokens": write,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


TEXT_THEN_TOOLS: list[StreamEvent] = [
    Start("chatcmpl-1", "gpt-5", Usage(input_tokens=1500, cached_tokens=1000)),
    BlockStart(0, "reasoning"),
    BlockDelta(0, "thinking..."),
    BlockOpaque(0, "gAAAA", "openai"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, "Running."),
    BlockStop(1),
    BlockStart(2, "tool", call_id="call_A", name="Bash"),
    BlockDelta(2, '{"command":'),
    BlockDelta(2, '"ls"}'),
    BlockStop(2),
    BlockStart(3, "tool", call_id="call_B", name="Read"),
    BlockDelta(3, '{"path":"a"}'),
    BlockStop(3),
    Finish("tool_calls"),
    UsageReport(Usage(input_tokens=1500, output_tokens=42, cached_tokens=1000)),
    End(),
]


def test_stream_encoder_exact_sequence() -> None:
    assert wire(encode_stream(TEXT_THEN_TOOLS, estimate=999)) == [
        w_start("msg_gen1", 500, read=1000),
        w_block(0, {"type": "thinking", "thinking": "", "signature": ""}),
        w_delta(0, {"type": "thinking_delta", "thinking": "thinking..."}),
        w_stop(0),
        w_block(1, {"type": "text", "text": ""}),
        w_delta(1, {"type": "text_delta", "text": "Running."}),
        w_stop(1),
        w_block(2, {"type": "tool_use", "id": "toolu_A", "name": "Bash", "input": {}}),
        w_delta(2, {"type": "input_json_delta", "partial_json": '{"command":'}),
        w_delta(2, {"type": "input_json_delta", "partial_json": '"ls"}'}),
        w_stop(2),
        w_block(3, {"type": "tool_use", "id": "toolu_B", "name": "Read", "input": {}}),
        w_delta(3, {"type": "input_json_delta", "partial_json": '{"path":"a"}'}),
        w_stop(3),
        *w_end("tool_use", 42, 500, read=1000),
    ]


def test_stream_encoder_bytes_are_event_lines_then_data() -> None:
    blob = encode_stream([Start("msg_1"), BlockStart(0, "text"), BlockDelta(0, "hi"), BlockStop(0), End()])
    assert blob.split(b"\n\n")[1:4] == [
        b"event: content_block_start\n"
        b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
    ]
    assert blob.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            # "Content block not found": a delta or stop for an index never started, or after its stop
            [
                Start("msg_1"),
                BlockDelta(5, "orphan"),
                BlockStop(5),
                BlockStart(0, "text"),
                BlockDelta(0, "ok"),
                BlockStop(0),
                BlockDelta(0, "late"),
                BlockOpaque(0, "sig", "anthropic"),
                Finish("stop"),
                End(),
            ],
            [
                w_start("msg_1", 7),
                w_block(0, {"type": "text", "text": ""}),
                w_delta(0, {"type": "text_delta", "text": "ok"}),
                w_stop(0),
                *w_end("end_turn", 0, 7),
            ],
            id="content-block-not-found",
        ),
        pytest.param(
            # zero usage in message_start: the estimate is reported instead
            [Start("msg_1", usage=Usage()), BlockStart(0, "text"), BlockDelta(0, "x"), End()],
            [
                w_start("msg_1", 7),
                w_block(0, {"type": "text", "text": ""}),
                w_delta(0, {"type": "text_delta", "text": "x"}),
                w_stop(0),
                *w_end("end_turn", 0, 7),
            ],
            id="zero-usage-in-message-start",
        ),
        pytest.param(
            # duplicate tool indexes: two tools on one canonical index each get their own index
            [
                Start("msg_1"),
                BlockStart(0, "tool", call_id="call_1", name="a"),
                BlockDelta(0, "{}"),
                BlockStop(0),
                BlockStart(0, "tool", call_id="call_2", name="b"),
                BlockDelta(0, '{"x":1}'),
                BlockStop(0),
                End(),
            ],
            [
                w_start("msg_1", 7),
                w_block(0, {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}}),
                w_delta(0, {"type": "input_json_delta", "partial_json": "{}"}),
                w_stop(0),
                w_block(1, {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {}}),
                w_delta(1, {"type": "input_json_delta", "partial_json": '{"x":1}'}),
                w_stop(1),
                *w_end("tool_use", 0, 7),
            ],
            id="duplicate-tool-indexes",
        ),
        pytest.param(
            # a block before Start, a block started while another is open, End with one open
            [
                BlockStart(0, "text"),
                BlockDelta(0, "a"),
                BlockStart(1, "refusal"),
                BlockDelta(1, "no"),
                Finish("refusal"),
                End(),
            ],
            [
                w_start("msg_gen1", 7),
                w_block(0, {"type": "text", "text": ""}),
                w_delta(0, {"type": "text_delta", "text": "a"}),
                w_stop(0),
                w_block(1, {"type": "text", "text": ""}),
                w_delta(1, {"type": "text_delta", "text": "no"}),
                w_stop(1),
                *w_end("refusal", 0, 7),
            ],
            id="block-before-start-and-end-with-open-block",
        ),
        pytest.param(
            # Anthropic thinking: the signature comes before the stop; a redacted block starts as such
            [
                Start("msg_abc", usage=Usage(input_tokens=100, cached_tokens=60, cache_write_tokens=30)),
                BlockStart(0, "reasoning"),
                BlockDelta(0, "hmm"),
                BlockOpaque(0, "SIG", "anthropic"),
                BlockStop(0),
                BlockStart(1, "reasoning"),
                BlockOpaque(1, "DATA", "anthropic", redacted=True),
                BlockStop(1),
                BlockStart(2, "reasoning"),
                BlockOpaque(2, "SIG2", "anthropic"),
                BlockStop(2),
                BlockStart(3, "reasoning"),
                BlockOpaque(3, "gAAAA", "openai"),
                BlockStop(3),
                Finish("stop"),
                UsageReport(Usage(output_tokens=5)),
                End(),
            ],
            [
                w_start("msg_abc", 10, read=60, write=30),
                w_block(0, {"type": "thinking", "thinking": "", "signature": ""}),
                w_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
                w_delta(0, {"type": "signature_delta", "signature": "SIG"}),
                w_stop(0),
                w_block(1, {"type": "redacted_thinking", "data": "DATA"}),
                w_stop(1),
                w_block(2, {"type": "thinking", "thinking": "", "signature": ""}),
                w_delta(2, {"type": "signature_delta", "signature": "SIG2"}),
                w_stop(2),
                *w_end("end_turn", 5, 10, read=60, write=30),
            ],
            id="thinking-signature-redacted-and-foreign-opaque",
        ),
        pytest.param(
            [
                Start("msg_1"),
                BlockStart(0, "tool", call_id="call_9", name="f"),
                BlockStop(0),
                Finish("stop"),
                End(),
                End(),
            ],
            [
                w_start("msg_1", 7),
                w_block(0, {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}),
                w_stop(0),
                *w_end("tool_use", 0, 7),
            ],
            id="stop-with-tool-calls-is-tool-use",
        ),
        pytest.param(
            # a reasoning block with no content is never started (no empty thinking block)
            [
                Start("msg_1"),
                BlockStart(0, "reasoning"),
                BlockDelta(0, ""),
                BlockStart(1, "text"),
                BlockDelta(1, "x"),
                End(),
            ],
            [
                w_start("msg_1", 7),
                w_block(0, {"type": "text", "text": ""}),
                w_delta(0, {"type": "text_delta", "text": "x"}),
                w_stop(0),
                *w_end("end_turn", 0, 7),
            ],
            id="empty-reasoning-never-started",
        ),
        pytest.param(
            [Start("msg_1"), End()],
            [w_start("msg_1", 7), *w_end("end_turn", 0, 7)],
            id="empty-answer",
        ),
    ],
)
def test_stream_encoder_known_bugs(events: list[StreamEvent], expected: list[Any]) -> None:
    assert wire(encode_stream(events, estimate=7)) == expected


@pytest.mark.parametrize(
    ("error", "wire_type"),
    [
        (StreamError("busy", "overloaded_error"), "overloaded_error"),
        (StreamError("slow down", "rate_limit_error"), "rate_limit_error"),
        (StreamError("boom", "server_error", "500"), "api_error"),
        (StreamError("?"), "api_error"),
    ],
)
def test_stream_encoder_error(error: StreamError, wire_type: str) -> None:
    events: list[StreamEvent] = [Start("msg_1"), BlockStart(0, "text"), BlockDelta(0, "x"), error, End()]
    assert wire(encode_stream(events))[-1:] == [
        ("error", {"type": "error", "error": {"type": wire_type, "message": error.message}})
    ]


def sdk_client(blob: bytes) -> anthropic.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=blob)

    return anthropic.Anthropic(
        api_key="x",
        base_url="http://127.0.0.1:9",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def sdk_final(blob: bytes) -> Any:
    client = sdk_client(blob)
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def test_the_anthropic_sdk_accumulates_the_encoded_stream() -> None:
    events: list[StreamEvent] = [
        Start("resp_1", "gpt-5", Usage(input_tokens=1500, cached_tokens=1000, cache_write_tokens=100)),
        BlockStart(0, "reasoning"),
        BlockDelta(0, "Let me "),
        BlockDelta(0, "see."),
        BlockOpaque(0, "SIG", "anthropic"),
        BlockStop(0),
        BlockStart(1, "text"),
        BlockDelta(1, "Checking "),
        BlockDelta(1, "files."),
        BlockStop(1),
        BlockStart(2, "tool", call_id="call_abc", name="Bash"),
        BlockDelta(2, '{"command": "ls'),
        BlockDelta(2, ' -la", "timeout": 5}'),
        BlockStop(2),
        BlockStart(3, "tool", call_id="fc_def", name="Read"),
        BlockStop(3),
        Finish("tool_calls"),
        UsageReport(Usage(output_tokens=77)),
        End(),
    ]
    message = sdk_final(encode_stream(events))
    assert message.id == "msg_gen1"
    assert message.model == "claude-up"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, bash, read = message.content
    assert (thinking.thinking, thinking.signature) == ("Let me see.", "SIG")
    assert text.text == "Checking files."
    assert (bash.id, bash.name, bash.input) == ("toolu_abc", "Bash", {"command": "ls -la", "timeout": 5})
    assert (read.id, read.name, read.input) == ("toolu_def", "Read", {})
    assert message.stop_reason == "tool_use"
    assert message.stop_sequence is None
    usage = message.usage
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    ) == (400, 77, 1000, 100)


def test_the_anthropic_sdk_reads_the_tolerated_streams() -> None:
    """A block before Start, a delta for an unknown index, End with a block open and no Finish."""
    events: list[StreamEvent] = [
        BlockStart(0, "text"),
        BlockDelta(9, "lost"),
        BlockDelta(0, "only text"),
        End(),
    ]
    blob = CODEC.stream_encoder(ctx(estimate=321))
    message = sdk_final(b"".join(blob.encode(e) for e in events))
    assert [(b.type, b.text) for b in message.content] == [("text", "only text")]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == (
        "end_turn",
        321,
        0,
    )


def test_the_anthropic_sdk_raises_the_encoded_error() -> None:
    blob = encode_stream(
        [
            Start("msg_1"),
            BlockStart(0, "text"),
            BlockDelta(0, "x"),
            StreamError("Overloaded", "overloaded_error"),
        ]
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk_final(blob)
    assert "overloaded_error" in str(caught.value)


@pytest.mark.parametrize(
    "frames", [TEXT_STREAM, THINKING_TOOL_STREAM, HOSTED_STREAM], ids=["text", "thinking-tool", "hosted"]
)
def test_an_upstream_stream_decoded_then_encoded_reads_back_the_same(frames: list[bytes]) -> None:
    """Anthropic upstream -> canonical -> Anthropic client -> canonical: the same blocks and
    finish, and the same usage once merged (hosted blocks were skipped the first time)."""
    first = decode_stream(frames)
    again = decode_stream(split_events(encode_stream(first)))
    strip = (Start, UsageReport)
    assert [e for e in again if not isinstance(e, strip)] == [e for e in first if not isinstance(e, strip)]
    assert total_usage(again) == total_usage(first)


def total_usage(events: list[StreamEvent]) -> Usage | None:
    usage: Usage | None = None
    for event in events:
        counted = event.usage if isinstance(event, Start | UsageReport) else None
        if counted is not None:
            usage = merge_usage(usage, counted)
    return usage


# -- hostile input, any order of events --------------------------------------------------------------------
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "text", "tool_use"])
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["type", "text", "id", "name", "input", "index"]), inner, max_size=3),
    ),
    max_leaves=8,
)
EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
]
BLOCK_TYPES = ["text", "tool_use", "thinking", "redacted_thinking", "server_tool_use"]
DELTA_TYPES = ["text_delta", "input_json_delta", "thinking_delta", "signature_delta", "citations_delta"]
upstream_event = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={
        "index": st.one_of(st.integers(-1, 3), json_value),
        "message": st.one_of(
            st.fixed_dictionaries({}, optional={"id": json_value, "usage": json_value}), json_value
        ),
        "content_block": st.one_of(
            st.fixed_dictionaries(
                {"type": st.sampled_from(BLOCK_TYPES)},
                optional={"text": json_value, "id": json_value, "name": json_value, "data": json_value},
            ),
            json_value,
        ),
        "delta": st.one_of(
            st.fixed_dictionaries(
                {"type": st.sampled_from(DELTA_TYPES)},
                optional={
                    "text": json_value,
                    "partial_json": json_value,
                    "thinking": json_value,
                    "signature": json_value,
                    "stop_reason": json_value,
                },
            ),
            json_value,
        ),
        "usage": json_value,
        "error": json_value,
    },
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(upstream_event, max_size=12))
def test_the_stream_decoder_raises_only_malformed(events: list[dict[str, Any]]) -> None:
    decoder = CODEC.stream_decoder()
    for payload in events:
        try:
            decoder.feed(parse_event(sse(payload["type"], payload)))
        except Malformed:
            pass
    decoder.close()


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.sampled_from(["id", "content", "stop_reason", "usage", "model"]), json_value))
def test_decode_response_raises_only_malformed(payload: dict[str, Any]) -> None:
    try:
        CODEC.decode_response(payload)
    except Malformed:
        pass


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "model",
                "messages",
                "system",
                "tools",
                "tool_choice",
                "thinking",
                "metadata",
                "max_tokens",
                "output_config",
            ]
        ),
        json_value,
    )
)
def test_decode_request_raises_only_invalid(data: dict[str, Any]) -> None:
    try:
        CODEC.decode_request(data)
    except GatewayError as error:
        assert error.status == 400


canonical_event = st.one_of(
    st.builds(
        Start, st.sampled_from([None, "msg_1", "resp_1"]), st.none(), st.one_of(st.none(), st.builds(Usage))
    ),
    st.builds(
        BlockStart,
        st.integers(0, 3),
        st.sampled_from(["text", "tool", "reasoning", "refusal"]),
        st.sampled_from([None, "", "call_1", "toolu_2"]),
        st.sampled_from([None, "f"]),
    ),
    st.builds(BlockDelta, st.integers(0, 3), st.sampled_from(["", "a", '{"x":'])),
    st.builds(
        BlockOpaque,
        st.integers(0, 3),
        st.sampled_from(["", "sig"]),
        st.sampled_from(["anthropic", "openai"]),
        st.booleans(),
    ),
    st.builds(BlockStop, st.integers(0, 3)),
    st.builds(
        Finish, st.sampled_from(["stop", "length", "tool_calls", "content_filter", "refusal", "pause"])
    ),
    st.builds(UsageReport, st.builds(Usage, st.integers(0, 9), st.integers(0, 9))),
    st.just(End()),
)


def check_grammar(blob: bytes) -> None:
    """The grammar the anthropic SDK accumulates: message_start first; blocks indexed 0, 1, 2…,
    one open at a time; deltas and stops only for the open block; message_delta then
    message_stop last (an error event may end it anywhere)."""
    events = wire(blob)
    if events and events[-1][0] == "error":
        events = events[:-1]
    if not events:
        return
    assert events[0][0] == "message_start"
    started, open_index = 0, None
    for name, payload in events[1:-2]:
        assert name == payload["type"]
        if name == "content_block_start":
            assert open_index is None and payload["index"] == started
            open_index, started = started, started + 1
        elif name in ("content_block_delta", "content_block_stop"):
            assert payload["index"] == open_index
            if name == "content_block_stop":
                open_index = None
        else:
            raise AssertionError(f"unexpected {name}")
    assert open_index is None
    assert [name for name, _ in events[-2:]] == ["message_delta", "message_stop"]


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(canonical_event, max_size=14))
def test_any_canonical_events_encode_to_the_sdk_grammar(events: list[StreamEvent]) -> None:
    blob = encode_stream([*events, End()], estimate=5)
    check_grammar(blob)
    if b"event: error" not in blob and b"input_json_delta" not in blob:
        # the SDK accumulates it without complaint (tool argument text is the upstream's: the
        # SDK parses it as JSON, so arbitrary pieces of it are left to the golden cases)
        sdk_final(blob)


def test_a_system_message_among_the_turns_is_kept_in_place() -> None:
    """Claude Code 2.1.328 sends ``{"role": "system"}`` messages after the user's (measured
    through the gateway): decoded in place, as the canonical form's mid-conversation system message."""
    request = CODEC.decode_request(
        body(
            messages=[
                {"role": "user", "content": "Say hello."},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
            ]
        )
    )
    assert [(m.role, m.parts) for m in request.messages] == [
        ("user", (Text("Say hello."),)),
        ("system", (Text("reminder"),)),
    ]


def test_the_text_delta_fast_path_writes_what_the_general_path_would() -> None:
    """Text deltas are written from pre-serialised frames: byte for byte what ``sse`` makes."""
    from spillgate.protocols.adapter import sse
    from spillgate.protocols.translate.canonical import BlockDelta, BlockStart, BlockStop, Start
    from spillgate.protocols.translate.codec import ClientContext

    encoder = CODEC.stream_encoder(ClientContext(model="m", new_id=lambda p: p + "x"))
    encoder.encode(Start())
    encoder.encode(BlockStart(0, "tool", call_id="call_1", name="f"))
    encoder.encode(BlockStop(0))
    encoder.encode(BlockStart(1, "text"))
    for text in ("plain", 'quote " and \\ and \n', "ünïcødé ✓"):
        assert encoder.encode(BlockDelta(1, text)) == sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": text}},
        )
