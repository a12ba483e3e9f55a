"""The Responses codec: Codex-shaped requests in, Responses bodies out, answers and streams both ways.

Golden expectations are written out literally; the client-facing stream is also read back by the
real openai SDK (``client.responses.stream(...)``) to prove its grammar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spillgate.protocols.adapter import sse
from spillgate.protocols.errors import GatewayError
from spillgate.protocols.events import Event, parse_event, split_events
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
    Usage,
    UsageReport,
)
from spillgate.protocols.translate.codec import ClientContext, Malformed, Target
from spillgate.protocols.translate.responses import CODEC, client_call_id, effort_for_budget

CREATED = 1700000000
MODEL = "gpt-5.1-codex"


def counting_ids() -> Callable[[str], str]:
    """``resp_1``, ``msg_1``, ``msg_2``…: one counter per prefix."""
    counts: dict[str, int] = {}

    def new_id(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}{counts[prefix]}"

    return new_id


def context(**extra: Any) -> ClientContext:
    return ClientContext(model=MODEL, new_id=counting_ids(), created=CREATED, extra=dict(extra))


def response_object(
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object the encoders write (every other field at its literal default)."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "metadata": {},
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }


def usage_object(inp: int, out: int, cached: int = 0, reasoning: int = 0, written: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


# == decode_request ==============================================================================
EXEC_PARAMS = {
    "type": "object",
    "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
    "required": ["cmd"],
    "additionalProperties": False,
}
STDIN_PARAMS = {
    "type": "object",
    "properties": {"session_id": {"type": "number"}, "chars": {"type": "string"}},
    "required": ["session_id"],
    "additionalProperties": False,
}
SPAWN_PARAMS = {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}
WAIT_PARAMS = {"type": "object", "properties": {"agent_id": {"type": "string"}}, "required": ["agent_id"]}
LARK = {
    "type": "grammar",
    "syntax": "lark",
    "definition": 'start: "*** Begin Patch" LF hunk+ "*** End Patch"',
}
WEB_SEARCH = {"type": "web_search", "external_web_access": False}
PATCH = "*** Begin Patch\n*** Update File: a.py\n-x = 1\n+x = 2\n*** End Patch\n"

CODEX_BODY: dict[str, Any] = {
    "model": MODEL,
    "instructions": "You are Codex, a coding agent based on GPT-5.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [
                {"type": "input_text", "text": "<permissions instructions>workspace-write</permissions>"}
            ],
        },
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<collaboration_mode>default</collaboration_mode>"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "<environment_context><cwd>/repo</cwd></environment_context>"}
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Fix the failing test."}],
        },
        {
            "type": "reasoning",
            "id": "rs_prev",
            "summary": [
                {"type": "summary_text", "text": "**Running the tests**"},
                {"type": "summary_text", "text": "Then reading a.py."},
            ],
            "content": None,
            "encrypted_content": "gAAAAB-enc-1",
        },
        {
            "type": "function_call",
            "id": "fc_prev",
            "name": "exec_command",
            "arguments": '{"cmd":"pytest -q"}',
            "call_id": "call_exec1",
        },
        {"type": "function_call_output", "call_id": "call_exec1", "output": "1 failed, 3 passed"},
        {
            "type": "custom_tool_call",
            "id": "ctc_prev",
            "status": "completed",
            "call_id": "call_patch1",
            "name": "apply_patch",
            "input": PATCH,
        },
        {"type": "custom_tool_call_output", "call_id": "call_patch1", "output": "Success. Updated: M a.py"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed a.py."}]},
        {"role": "user", "content": "Thanks. Run it again."},
    ],
    "tools": [
        {
            "type": "function",
            "name": "exec_command",
            "description": "Runs a command in a PTY.",
            "strict": False,
            "parameters": EXEC_PARAMS,
        },
        {
            "type": "function",
            "name": "write_stdin",
            "description": "Writes characters to a running exec session.",
            "strict": False,
            "parameters": STDIN_PARAMS,
        },
        {
            "type": "namespace",
            "name": "multi_agent_v1",
            "description": "Tools to run sub-agents.",
            "tools": [
                {
                    "type": "function",
                    "name": "spawn_agent",
                    "description": "Starts one.",
                    "parameters": SPAWN_PARAMS,
                },
                {
                    "type": "function",
                    "name": "wait_agent",
                    "description": "Waits for one.",
                    "parameters": WAIT_PARAMS,
                },
            ],
        },
        {"type": "custom", "name": "apply_patch", "description": "Edits files.", "format": LARK},
        WEB_SEARCH,
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a1b2c-0000-7000-8000-000000000001",
    "text": {"verbosity": "low"},
    "client_metadata": {"x-codex-turn": "1"},
}

CODEX_REQUEST = Request(
    model=MODEL,
    messages=(
        Message("system", (Text("You are Codex, a coding agent based on GPT-5."),)),
        Message("developer", (Text("<permissions instructions>workspace-write</permissions>"),)),
        Message("developer", (Text("<collaboration_mode>default</collaboration_mode>"),)),
        Message("user", (Text("<environment_context><cwd>/repo</cwd></environment_context>"),)),
        Message("user", (Text("Fix the failing test."),)),
        Message(
            "assistant",
            (
                Reasoning(
                    "**Running the tests**\n\nThen reading a.py.",
                    opaque="gAAAAB-enc-1",
                    origin="openai",
                    item_id="rs_prev",
                ),
                ToolCall("call_exec1", "exec_command", '{"cmd":"pytest -q"}', item_id="fc_prev"),
            ),
        ),
        Message("tool", (ToolResult("call_exec1", "1 failed, 3 passed"),)),
        Message(
            "assistant", (ToolCall("call_patch1", "apply_patch", PATCH, kind="custom", item_id="ctc_prev"),)
        ),
        Message("tool", (ToolResult("call_patch1", "Success. Updated: M a.py", kind="custom"),)),
        Message("assistant", (Text("Fixed a.py."),)),
        Message("user", (Text("Thanks. Run it again."),)),
    ),
    tools=(
        Tool("exec_command", "function", "Runs a command in a PTY.", EXEC_PARAMS, strict=False),
        Tool(
            "write_stdin",
            "function",
            "Writes characters to a running exec session.",
            STDIN_PARAMS,
            strict=False,
        ),
        Tool(
            "spawn_agent",
            "function",
            "Starts one.",
            SPAWN_PARAMS,
            namespace="multi_agent_v1",
            namespace_description="Tools to run sub-agents.",
        ),
        Tool(
            "wait_agent",
            "function",
            "Waits for one.",
            WAIT_PARAMS,
            namespace="multi_agent_v1",
            namespace_description="Tools to run sub-agents.",
        ),
        Tool("apply_patch", "custom", "Edits files.", format=LARK),
        Tool("web_search", "hosted", hosted=WEB_SEARCH),
    ),
    tool_choice=ToolChoice("auto"),
    parallel_tool_calls=True,
    reasoning=ReasoningConfig(effort="medium", summary=True),
    stream=True,
    prompt_cache_key="019a1b2c-0000-7000-8000-000000000001",
    store=False,
    include_encrypted_reasoning=True,
    source_family="openai",
)

DECODE_REQUEST_CASES = [
    pytest.param(CODEX_BODY, CODEX_REQUEST, id="codex-turn"),
    pytest.param(
        {"model": "gpt-5", "input": "hello", "max_output_tokens": 100, "temperature": 0.5, "top_p": 1},
        Request(
            model="gpt-5",
            messages=(Message("user", (Text("hello"),)),),
            max_output_tokens=100,
            temperature=0.5,
            top_p=1,
            source_family="openai",
        ),
        id="string-input",
    ),
    pytest.param(
        {
            "model": "gpt-5",
            "input": [
                {"role": "system", "content": "sys"},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "see"},
                        {"type": "input_image", "image_url": "https://x/a.png", "detail": "high"},
                        {"type": "input_image", "file_id": "file_1"},
                        {"type": "input_file", "file_id": "file_2"},
                    ],
                },
                {"role": "assistant", "content": "First."},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
                {"type": "item_reference", "id": "msg_old"},
                {"type": "local_shell_call", "id": "lsh_1", "call_id": "c", "action": {}},
                {"type": "mcp_call", "id": "mcp_1"},
                {"type": "file_search_call", "id": "fs_1"},
            ],
            "previous_response_id": "resp_old",
            "safety_identifier": "user-hash",
        },
        Request(
            model="gpt-5",
            messages=(
                Message("system", (Text("sys"),)),
                Message("user", (Text("see"), Image("https://x/a.png", "high"))),
                Message("assistant", (Text("First."), Refusal("No."))),
            ),
            user="user-hash",
            previous_response_id="resp_old",
            source_family="openai",
            untranslatable=(
                "an input_image given by file_id",
                "content part 'input_file'",
                "input item 'item_reference'",
                "input item 'local_shell_call'",
                "input item 'mcp_call'",
                "previous_response_id",
            ),
            droppable=("web_search_call in the history", "file_search_call in the history"),
        ),
        id="what-only-responses-carries",
    ),
    pytest.param(
        {
            "model": "gpt-5",
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}", "namespace": "ns"},
                {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [
                        {"type": "input_text", "text": "shot:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                },
                {"type": "function_call_output", "call_id": "c2", "output": "ok"},
            ],
            "tool_choice": {"type": "function", "name": "a"},
            "user": "u1",
            "safety_identifier": "ignored-when-user-is-set",
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
            },
            "reasoning": {"effort": "high", "summary": None},
        },
        Request(
            model="gpt-5",
            messages=(
                Message("assistant", (ToolCall("c1", "a", "{}", namespace="ns"), ToolCall("c2", "b", "{}"))),
                Message(
                    "tool",
                    (
                        ToolResult("c1", (Text("shot:"), Image("data:image/png;base64,AAAA"))),
                        ToolResult("c2", "ok"),
                    ),
                ),
            ),
            tool_choice=ToolChoice("tool", "a"),
            reasoning=ReasoningConfig(effort="high", summary=False),
            output_format=OutputFormat("json_schema", "out", {"type": "object"}, True),
            user="u1",
            source_family="openai",
        ),
        id="parallel-calls-and-outputs-grouped",
    ),
    pytest.param(
        {
            "model": "m",
            "input": [],
            "tool_choice": {"type": "web_search_preview"},
            "reasoning": {"summary": "none"},
        },
        Request(
            model="m",
            messages=(),
            tool_choice=ToolChoice("tool", "web_search_preview", hosted=True),
            reasoning=ReasoningConfig(summary=False),
            source_family="openai",
        ),
        id="hosted-tool-choice",
    ),
    pytest.param(
        {"model": "m", "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}, "text": {}},
        Request(model="m", messages=(), tool_choice=ToolChoice("auto"), source_family="openai"),
        id="allowed-tools-is-auto",
    ),
]


@pytest.mark.parametrize(("body", "expected"), DECODE_REQUEST_CASES)
def test_decode_request(body: dict[str, Any], expected: Request) -> None:
    assert CODEC.decode_request(body) == expected


def _with(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "input": []}
    body.update(changes)
    return body


BAD_REQUEST_CASES = [
    pytest.param({"input": []}, "model", id="model-missing"),
    pytest.param(_with(input=5), "input", id="input-number"),
    pytest.param(_with(instructions=["x"]), "instructions", id="instructions-list"),
    pytest.param(_with(input=["hi"]), "input[0]", id="item-not-object"),
    pytest.param(_with(input=[{"type": 3}]), "input[0].type", id="item-type-number"),
    pytest.param(_with(input=[{"role": "robot", "content": "x"}]), "input[0].role", id="role-unknown"),
    pytest.param(_with(input=[{"role": "user", "content": 3}]), "input[0].content", id="content-number"),
    pytest.param(
        _with(input=[{"role": "user", "content": [{"type": "input_text", "text": 5}]}]),
        "input[0].content[0].text",
        id="part-text-number",
    ),
    pytest.param(
        _with(input=[{"role": "user", "content": [{"type": "input_image", "image_url": 1}]}]),
        "input[0].content[0].image_url",
        id="image-url-number",
    ),
    pytest.param(
        _with(
            input=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "user", "content": "c"},
                {"type": "function_call", "call_id": 7, "name": "f", "arguments": "{}"},
            ]
        ),
        "input[3].call_id",
        id="call-id-number",
    ),
    pytest.param(
        _with(input=[{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]),
        "input[0].call_id",
        id="call-id-empty",
    ),
    pytest.param(
        _with(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]),
        "input[0].arguments",
        id="arguments-object",
    ),
    pytest.param(
        _with(input=[{"type": "custom_tool_call", "call_id": "c", "name": "f"}]),
        "input[0].input",
        id="custom-input-missing",
    ),
    pytest.param(
        _with(input=[{"type": "function_call_output", "call_id": "c", "output": 4}]),
        "input[0].output",
        id="output-number",
    ),
    pytest.param(
        _with(input=[{"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": 1}]}]),
        "input[0].summary[0].text",
        id="summary-text-number",
    ),
    pytest.param(
        _with(input=[{"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": 5}]),
        "input[0].encrypted_content",
        id="encrypted-number",
    ),
    pytest.param(_with(tools={}), "tools", id="tools-object"),
    pytest.param(_with(tools=[{"type": "function", "name": 1}]), "tools[0].name", id="tool-name-number"),
    pytest.param(
        _with(tools=[{"type": "function", "name": "f", "parameters": "x"}]),
        "tools[0].parameters",
        id="params",
    ),
    pytest.param(
        _with(tools=[{"type": "namespace", "name": "n", "tools": [{"type": "web_search", "name": "w"}]}]),
        "tools[0].tools[0].type",
        id="namespace-inner-hosted",
    ),
    pytest.param(_with(tool_choice="maybe"), "tool_choice", id="tool-choice-unknown"),
    pytest.param(_with(tool_choice={"type": "function"}), "tool_choice.name", id="tool-choice-no-name"),
    pytest.param(_with(parallel_tool_calls="yes"), "parallel_tool_calls", id="parallel-string"),
    pytest.param(_with(max_output_tokens="10"), "max_output_tokens", id="max-tokens-string"),
    pytest.param(_with(max_output_tokens=True), "max_output_tokens", id="max-tokens-bool"),
    pytest.param(_with(temperature="hot"), "temperature", id="temperature-string"),
    pytest.param(_with(reasoning={"effort": 3}), "reasoning.effort", id="effort-number"),
    pytest.param(_with(reasoning="high"), "reasoning", id="reasoning-string"),
    pytest.param(_with(include=[1]), "include[0]", id="include-number"),
    pytest.param(_with(text={"format": {"type": "xml"}}), "text.format.type", id="format-unknown"),
    pytest.param(_with(stream="yes"), "stream", id="stream-string"),
    pytest.param(_with(store=1), "store", id="store-number"),
    pytest.param(_with(previous_response_id=5), "previous_response_id", id="previous-number"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUEST_CASES)
def test_decode_request_rejects_wrong_types(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        CODEC.decode_request(body)
    assert (caught.value.status, caught.value.param) == (400, param)


# == encode_request ==============================================================================
READ_PARAMS = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}

ENCODE_REQUEST_CASES = [
    pytest.param(
        Request(
            model="claude-sonnet-4-5",
            messages=(
                Message("system", (Text("Be brief.", cache=True),)),
                Message("user", (Text("Look:"), Image("data:image/png;base64,AAAA"))),
                Message(
                    "assistant",
                    (
                        Reasoning("Thinking about it.", opaque="sig-1", origin="anthropic"),
                        Text("Let me read it."),
                        ToolCall("toolu_01", "read_file", '{"path":"a.py"}'),
                    ),
                ),
                Message("tool", (ToolResult("toolu_01", (Text("line 1"), Text("line 2"))),)),
                Message("user", (Text("And?"),)),
            ),
            tools=(Tool("read_file", description="Reads a file.", parameters=READ_PARAMS), Tool("noop")),
            tool_choice=ToolChoice("tool", "read_file"),
            parallel_tool_calls=False,
            max_output_tokens=32000,
            temperature=1.0,
            stop=("END",),
            reasoning=ReasoningConfig(budget_tokens=10000, summary=True),
            stream=True,
            user="user-1",
            source_family="anthropic",
        ),
        Target("gpt-5.1"),
        {
            "model": "gpt-5.1",
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Be brief."}],
                },
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Let me read it."}],
                },
                {
                    "type": "function_call",
                    "call_id": "toolu_01",
                    "name": "read_file",
                    "arguments": '{"path":"a.py"}',
                },
                {"type": "function_call_output", "call_id": "toolu_01", "output": "line 1\nline 2"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And?"}]},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "read_file",
                    "description": "Reads a file.",
                    "parameters": READ_PARAMS,
                    "strict": False,
                },
                {
                    "type": "function",
                    "name": "noop",
                    "parameters": {"type": "object", "properties": {}},
                    "strict": False,
                },
            ],
            "tool_choice": {"type": "function", "name": "read_file"},
            "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "store": False,
            "max_output_tokens": 32000,
            "stream": True,
            "user": "user-1",
        },
        ["reasoning from another provider", "temperature and top_p (the model reasons)", "stop sequences"],
        id="anthropic-history-to-a-reasoning-model",
    ),
    pytest.param(
        Request(
            model="gpt-4o",
            messages=(
                Message("user", (Text("Hi"),), name="alice"),
                Message("developer", (Text("Answer in JSON."),)),
                Message("assistant", (Refusal("I can't."), ToolCall("call_1", "shot", "{}"))),
                Message(
                    "tool",
                    (ToolResult("call_1", (Text("here"), Image("https://x/s.png", "low")), is_error=True),),
                ),
            ),
            tool_choice=ToolChoice("required"),
            max_output_tokens=5,
            temperature=0.2,
            top_p=0.9,
            output_format=OutputFormat("json_schema", None, {"type": "object"}, True),
            prompt_cache_key="pk",
            reasoning=ReasoningConfig(effort="low"),
            source_family="openai",
        ),
        Target("gpt-4.1"),
        {
            "model": "gpt-4.1",
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "Answer in JSON."}],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't."}],
                },
                {"type": "function_call", "call_id": "call_1", "name": "shot", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "call_1",
                    "output": [
                        {"type": "input_text", "text": "here"},
                        {"type": "input_image", "image_url": "https://x/s.png", "detail": "low"},
                    ],
                },
            ],
            "tool_choice": "required",
            "store": False,
            "max_output_tokens": 16,
            "temperature": 0.2,
            "top_p": 0.9,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "output",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            "stream": False,
            "prompt_cache_key": "pk",
        },
        ["message names", "the error flag of tool results", "reasoning settings (the model does not reason)"],
        id="chat-to-a-plain-model",
    ),
    pytest.param(
        Request(
            model="m",
            messages=(
                Message("user", (Text("q"),)),
                Message(
                    "assistant", (Reasoning("Summary only.", origin="openai", item_id="rs_1"), Text("a"))
                ),
            ),
        ),
        Target("o4-mini"),
        {
            "model": "o4-mini",
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            ],
            "store": False,
            "stream": False,
        },
        ["reasoning without its encrypted content"],
        id="openai-reasoning-without-encrypted-content-dropped",
    ),
    pytest.param(
        Request(
            model=MODEL,
            messages=(
                Message(
                    "assistant",
                    (
                        Reasoning("Plan.", opaque="gAAA-enc", origin="openai", item_id="rs_9"),
                        ToolCall("call_p", "apply_patch", PATCH, kind="custom"),
                    ),
                ),
                Message("tool", (ToolResult("call_p", "Done.", kind="custom"),)),
            ),
            tools=(
                Tool("spawn_agent", parameters=SPAWN_PARAMS, strict=True, namespace="multi_agent_v1"),
                Tool("apply_patch", "custom", "Edits files.", format=LARK),
                Tool("wait_agent", parameters=WAIT_PARAMS, namespace="multi_agent_v1"),
                Tool("web_search", "hosted", hosted=WEB_SEARCH),
            ),
            tool_choice=ToolChoice("tool", "apply_patch"),
            reasoning=ReasoningConfig(effort="high"),
            store=True,
            stream=True,
            previous_response_id="resp_prev",
            include_encrypted_reasoning=True,
        ),
        Target("house-model", reasoning=True),
        {
            "model": "house-model",
            "input": [
                {
                    "type": "reasoning",
                    "id": "rs_9",
                    "summary": [{"type": "summary_text", "text": "Plan."}],
                    "encrypted_content": "gAAA-enc",
                },
                {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH},
                {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done."},
            ],
            "tools": [
                {
                    "type": "namespace",
                    "name": "multi_agent_v1",
                    "description": "",
                    "tools": [
                        {
                            "type": "function",
                            "name": "spawn_agent",
                            "parameters": SPAWN_PARAMS,
                            "strict": True,
                        },
                        {
                            "type": "function",
                            "name": "wait_agent",
                            "parameters": WAIT_PARAMS,
                            "strict": False,
                        },
                    ],
                },
                {"type": "custom", "name": "apply_patch", "description": "Edits files.", "format": LARK},
                WEB_SEARCH,
            ],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "reasoning": {"effort": "high"},
            "include": ["reasoning.encrypted_content"],
            "store": True,
            "stream": True,
            "previous_response_id": "resp_prev",
        },
        [],
        id="openai-reasoning-and-custom-tool-round-trip",
    ),
]


@pytest.mark.parametrize(("request_", "target", "expected", "omitted"), ENCODE_REQUEST_CASES)
def test_encode_request(
    request_: Request, target: Target, expected: dict[str, Any], omitted: list[str]
) -> None:
    carried = Carried()
    assert CODEC.encode_request(request_, target, carried) == expected
    assert carried.omitted == omitted


def test_codex_request_round_trips_through_canonical() -> None:
    """Codex's own body, decoded and encoded for a Responses upstream, keeps its items in order."""
    carried = Carried()
    body = CODEC.encode_request(CODEX_REQUEST, Target(MODEL), carried)
    assert [(item["type"], item.get("role")) for item in body["input"]] == [
        ("message", "system"),
        ("message", "developer"),
        ("message", "developer"),
        ("message", "user"),
        ("message", "user"),
        ("reasoning", None),
        ("function_call", None),
        ("function_call_output", None),
        ("custom_tool_call", None),
        ("custom_tool_call_output", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert body["input"][5] == {
        "type": "reasoning",
        "id": "rs_prev",
        "summary": [{"type": "summary_text", "text": "**Running the tests**\n\nThen reading a.py."}],
        "encrypted_content": "gAAAAB-enc-1",
    }
    assert body["tools"][2]["type"] == "namespace"
    assert [t["name"] for t in body["tools"][2]["tools"]] == ["spawn_agent", "wait_agent"]
    assert body["tools"][4] == WEB_SEARCH
    assert carried.omitted == []


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high"), (64000, "high")],
)
def test_effort_for_budget(budget: int, effort: str) -> None:
    assert effort_for_budget(budget) == effort


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param("call_abc", "call_abc", id="already-call"),
        pytest.param("toolu_01XYZ", "call_01XYZ", id="anthropic"),
        pytest.param("fc_123", "call_123", id="item-id"),
        pytest.param("weird-id", "call_weird-id", id="foreign"),
        pytest.param("", "call_1", id="empty-gets-new"),
        pytest.param(None, "call_1", id="none-gets-new"),
        pytest.param("toolu_", "call_1", id="prefix-only-gets-new"),
    ],
)
def test_client_call_id(upstream: str | None, expected: str) -> None:
    assert client_call_id("call_", upstream, counting_ids()) == expected


# == decode_response =============================================================================
UPSTREAM_USAGE = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 128},
    "total_tokens": 1500,
}


def upstream_response(output: Any, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "resp_up1",
        "object": "response",
        "created_at": 1700000001,
        "status": "completed",
        "model": "gpt-5.1-codex-2025",
        "output": output,
        "usage": UPSTREAM_USAGE,
    }
    body.update(fields)
    return body


REASONING_ITEM = {
    "id": "rs_up1",
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "**Plan**"}, {"type": "summary_text", "text": "Run tests."}],
    "encrypted_content": "gAAA-up",
}
MESSAGE_ITEM = {
    "id": "msg_up1",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Running the tests.", "annotations": []}],
}
CALL_ITEM = {
    "id": "fc_up1",
    "type": "function_call",
    "status": "completed",
    "arguments": '{"cmd":"pytest"}',
    "call_id": "call_up1",
    "name": "exec_command",
}
FULL_USAGE = Usage(input_tokens=1200, output_tokens=300, cached_tokens=1024, reasoning_tokens=128)

DECODE_RESPONSE_CASES = [
    pytest.param(
        upstream_response([REASONING_ITEM, MESSAGE_ITEM, CALL_ITEM]),
        Response(
            id="resp_up1",
            model="gpt-5.1-codex-2025",
            parts=(
                Reasoning("**Plan**\n\nRun tests.", opaque="gAAA-up", origin="openai", item_id="rs_up1"),
                Text("Running the tests."),
                ToolCall("call_up1", "exec_command", '{"cmd":"pytest"}', item_id="fc_up1"),
            ),
            finish="tool_calls",
            usage=FULL_USAGE,
            created=1700000001,
        ),
        id="reasoning-text-call",
    ),
    pytest.param(
        upstream_response(
            [{**MESSAGE_ITEM, "status": "incomplete"}],
            status="incomplete",
            incomplete_details={"reason": "max_output_tokens"},
        ),
        Response(
            id="resp_up1",
            model="gpt-5.1-codex-2025",
            parts=(Text("Running the tests."),),
            finish="length",
            usage=FULL_USAGE,
            created=1700000001,
        ),
        id="incomplete-is-length-with-usage",
    ),
    pytest.param(
        upstream_response(
            [], status="incomplete", incomplete_details={"reason": "content_filter"}, usage=None
        ),
        Response(
            id="resp_up1", model="gpt-5.1-codex-2025", parts=(), finish="content_filter", created=1700000001
        ),
        id="content-filter",
    ),
    pytest.param(
        upstream_response(
            [
                {
                    "type": "message",
                    "id": "m",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't help."}],
                },
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            ]
        ),
        Response(
            id="resp_up1",
            model="gpt-5.1-codex-2025",
            parts=(Refusal("I can't help."),),
            usage=FULL_USAGE,
            created=1700000001,
        ),
        id="refusal-and-hosted-item-ignored",
    ),
    pytest.param(
        upstream_response(
            [
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_c",
                    "name": "apply_patch",
                    "input": PATCH,
                }
            ]
        ),
        Response(
            id="resp_up1",
            model="gpt-5.1-codex-2025",
            parts=(ToolCall("call_c", "apply_patch", PATCH, kind="custom", item_id="ctc_1"),),
            finish="tool_calls",
            usage=FULL_USAGE,
            created=1700000001,
        ),
        id="custom-tool-call",
    ),
]


@pytest.mark.parametrize(("payload", "expected"), DECODE_RESPONSE_CASES)
def test_decode_response(payload: dict[str, Any], expected: Response) -> None:
    assert CODEC.decode_response(payload) == expected


MALFORMED_RESPONSES = [
    pytest.param([], id="not-an-object"),
    pytest.param(upstream_response({"a": 1}), id="output-object"),
    pytest.param(upstream_response(["x"]), id="item-string"),
    pytest.param(
        upstream_response([{"type": "message", "content": [{"type": "output_text", "text": 3}]}]), id="text"
    ),
    pytest.param(
        upstream_response([{"type": "function_call", "call_id": "c", "arguments": "{}"}]), id="no-name"
    ),
    pytest.param(upstream_response([{**CALL_ITEM, "arguments": {"cmd": "ls"}}]), id="arguments-object"),
    pytest.param(upstream_response([{**REASONING_ITEM, "summary": "x"}]), id="summary-string"),
    pytest.param(upstream_response([], usage="lots"), id="usage-string"),
    pytest.param(upstream_response([], usage={"input_tokens": "3"}), id="usage-count-string"),
    pytest.param(
        upstream_response([], usage={"input_tokens": 3, "input_tokens_details": 1}), id="details-number"
    ),
    pytest.param(upstream_response([], status="failed", error={"message": "boom"}), id="failed"),
]


@pytest.mark.parametrize("payload", MALFORMED_RESPONSES)
def test_decode_response_malformed(payload: Any) -> None:
    with pytest.raises(Malformed):
        CODEC.decode_response(payload)


# == encode_response =============================================================================
ENCODE_RESPONSE_CASES = [
    pytest.param(
        Response(
            id="up",
            model="x",
            parts=(
                Reasoning("Plan.", opaque="gAAA-up", origin="openai", item_id="rs_up1"),
                Text("Hello "),
                Text("world."),
                ToolCall("toolu_01A", "exec_command", '{"cmd":"ls"}'),
                ToolCall("call_ns", "spawn_agent", '{"task":"t"}', namespace="multi_agent_v1"),
            ),
            finish="tool_calls",
            usage=Usage(100, 20, 80, 0, 5),
        ),
        response_object(
            "completed",
            [
                {
                    "type": "reasoning",
                    "id": "rs_up1",
                    "summary": [{"type": "summary_text", "text": "Plan."}],
                    "encrypted_content": "gAAA-up",
                },
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": "Hello ", "annotations": []},
                        {"type": "output_text", "text": "world.", "annotations": []},
                    ],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_01A",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_ns",
                    "name": "spawn_agent",
                    "arguments": '{"task":"t"}',
                    "status": "completed",
                    "namespace": "multi_agent_v1",
                },
            ],
            usage_object(100, 20, 80, 5),
        ),
        id="reasoning-text-calls",
    ),
    pytest.param(
        Response(id=None, model=None, parts=(Text("Partial"),), finish="length", usage=Usage(10, 4096)),
        response_object(
            "incomplete",
            [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Partial", "annotations": []}],
                }
            ],
            usage_object(10, 4096),
            incomplete="max_output_tokens",
        ),
        id="usage-on-an-incomplete-response",
    ),
    pytest.param(
        Response(
            id=None,
            model=None,
            parts=(
                Reasoning("Thought.", opaque="anthropic-sig", origin="anthropic"),
                ToolCall("toolu_9", "apply_patch", PATCH, kind="custom"),
            ),
            finish="tool_calls",
        ),
        response_object(
            "completed",
            [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Thought."}],
                },
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_9",
                    "name": "apply_patch",
                    "input": PATCH,
                },
            ],
            usage_object(0, 0),
        ),
        id="custom-tool-call-back-as-custom-and-foreign-reasoning-without-opaque",
    ),
    pytest.param(
        Response(id=None, model=None, parts=(Refusal("No."),), finish="content_filter"),
        response_object(
            "incomplete",
            [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "No."}],
                }
            ],
            usage_object(0, 0),
            incomplete="content_filter",
        ),
        id="content-filter-refusal",
    ),
]


@pytest.mark.parametrize(("response", "expected"), ENCODE_RESPONSE_CASES)
def test_encode_response(response: Response, expected: dict[str, Any]) -> None:
    assert CODEC.encode_response(response, context()) == expected


def test_encode_response_echoes_request_fields_and_parses_in_the_sdk() -> None:
    tools = [{"type": "function", "name": "exec_command", "parameters": EXEC_PARAMS, "strict": False}]
    body = CODEC.encode_response(
        Response(id=None, model=None, parts=(Text("hi"), ToolCall("call_1", "exec_command", '{"cmd":"ls"}'))),
        context(instructions="Be brief.", tools=tools, tool_choice="required", unrelated="x"),
    )
    assert (body["instructions"], body["tools"], body["tool_choice"]) == ("Be brief.", tools, "required")
    assert "unrelated" not in body
    parsed = openai.types.responses.Response.model_validate(body)
    assert parsed.output_text == "hi"
    assert parsed.output[1].type == "function_call"


# == stream decoder ==============================================================================
def upstream_events(*payloads: Any) -> list[Event]:
    """Recorded-looking SSE events: each payload as its own ``event: <type>`` / ``data:`` event."""
    events = []
    for payload in payloads:
        name = payload.get("type") if isinstance(payload, dict) else None
        events.append(parse_event(sse(name if isinstance(name, str) else None, payload)))
    return events


def decode_stream(events: list[Event]) -> tuple[list[StreamEvent], list[StreamEvent]]:
    decoder = CODEC.stream_decoder()
    fed = [out for event in events for out in decoder.feed(event)]
    return fed, decoder.close()


UP_RESPONSE = {
    "id": "resp_up1",
    "object": "response",
    "created_at": 1700000001,
    "status": "in_progress",
    "model": "gpt-5.1-codex-2025",
    "output": [],
    "usage": None,
}


def up(kind: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": seq, **fields}


RECORDED_STREAM = [
    up("response.created", 0, response=UP_RESPONSE),
    up("response.in_progress", 1, response=UP_RESPONSE),
    up(
        "response.output_item.added",
        2,
        output_index=0,
        item={"id": "rs_up1", "type": "reasoning", "summary": [], "encrypted_content": "partial"},
    ),
    up(
        "response.reasoning_summary_part.added",
        3,
        item_id="rs_up1",
        output_index=0,
        summary_index=0,
        part={"type": "summary_text", "text": ""},
    ),
    up(
        "response.reasoning_summary_text.delta",
        4,
        item_id="rs_up1",
        output_index=0,
        summary_index=0,
        delta="**Plan**",
        obfuscation="xy",
    ),
    up(
        "response.reasoning_summary_text.done",
        5,
        item_id="rs_up1",
        output_index=0,
        summary_index=0,
        text="**Plan**",
    ),
    up("response.reasoning_summary_part.done", 6, item_id="rs_up1", output_index=0, summary_index=0, part={}),
    up(
        "response.reasoning_summary_part.added", 7, item_id="rs_up1", output_index=0, summary_index=1, part={}
    ),
    up(
        "response.reasoning_summary_text.delta",
        8,
        item_id="rs_up1",
        output_index=0,
        summary_index=1,
        delta="Run tests.",
    ),
    up("response.output_item.done", 9, output_index=0, item=REASONING_ITEM),
    up(
        "response.output_item.added",
        10,
        output_index=1,
        item={
            "id": "msg_up1",
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        },
    ),
    up(
        "response.content_part.added",
        11,
        item_id="msg_up1",
        output_index=1,
        content_index=0,
        part={"type": "output_text", "annotations": [], "text": ""},
    ),
    up(
        "response.output_text.delta",
        12,
        item_id="msg_up1",
        output_index=1,
        content_index=0,
        delta="Running ",
        logprobs=[],
    ),
    up(
        "response.output_text.delta",
        13,
        item_id="msg_up1",
        output_index=1,
        content_index=0,
        delta="the tests.",
        logprobs=[],
    ),
    up(
        "response.output_text.done",
        14,
        item_id="msg_up1",
        output_index=1,
        content_index=0,
        text="Running the tests.",
    ),
    up("response.content_part.done", 15, item_id="msg_up1", output_index=1, content_index=0, part={}),
    up("response.output_item.done", 16, output_index=1, item=MESSAGE_ITEM),
    up(
        "response.output_item.added",
        17,
        output_index=2,
        item={**CALL_ITEM, "status": "in_progress", "arguments": ""},
    ),
    up("response.function_call_arguments.delta", 18, item_id="fc_up1", output_index=2, delta='{"cmd":'),
    up("response.function_call_arguments.delta", 19, item_id="fc_up1", output_index=2, delta='"pytest"}'),
    up(
        "response.function_call_arguments.done",
        20,
        item_id="fc_up1",
        output_index=2,
        arguments='{"cmd":"pytest"}',
    ),
    up("response.output_item.done", 21, output_index=2, item=CALL_ITEM),
    up(
        "response.completed",
        22,
        response={
            **UP_RESPONSE,
            "status": "completed",
            "output": [REASONING_ITEM, MESSAGE_ITEM, CALL_ITEM],
            "usage": UPSTREAM_USAGE,
        },
    ),
]

RECORDED_CANONICAL: list[StreamEvent] = [
    Start("resp_up1", "gpt-5.1-codex-2025"),
    BlockStart(0, "reasoning"),
    BlockDelta(0, "**Plan**"),
    BlockDelta(0, "\n\n"),
    BlockDelta(0, "Run tests."),
    BlockOpaque(0, "gAAA-up", "openai"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, "Running "),
    BlockDelta(1, "the tests."),
    BlockStop(1),
    BlockStart(2, "tool", call_id="call_up1", name="exec_command"),
    BlockDelta(2, '{"cmd":'),
    BlockDelta(2, '"pytest"}'),
    BlockStop(2),
    Finish("tool_calls"),
    UsageReport(FULL_USAGE),
    End(),
]

DECODE_STREAM_CASES = [
    pytest.param(RECORDED_STREAM, RECORDED_CANONICAL, [], id="recorded-reasoning-text-call"),
    pytest.param(
        RECORDED_STREAM[:13],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "reasoning"),
            BlockDelta(0, "**Plan**"),
            BlockDelta(0, "\n\n"),
            BlockDelta(0, "Run tests."),
            BlockOpaque(0, "gAAA-up", "openai"),
            BlockStop(0),
            BlockStart(1, "text"),
            BlockDelta(1, "Running "),
        ],
        [],
        id="cut-without-completed-closes-to-nothing",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up("response.output_item.added", 1, output_index=0, item={**CALL_ITEM, "arguments": ""}),
            up("response.output_item.done", 2, output_index=0, item=CALL_ITEM),
            up("response.output_item.added", 3, output_index=1, item={**MESSAGE_ITEM, "content": []}),
            up("response.output_item.done", 4, output_index=1, item=MESSAGE_ITEM),
            up("response.completed", 5, response={**UP_RESPONSE, "status": "completed", "usage": None}),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "tool", call_id="call_up1", name="exec_command"),
            BlockDelta(0, '{"cmd":"pytest"}'),
            BlockStop(0),
            BlockStart(1, "text"),
            BlockDelta(1, "Running the tests."),
            BlockStop(1),
            Finish("tool_calls"),
            End(),
        ],
        [],
        id="upstream-without-deltas",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up(
                "response.completed",
                1,
                response={**UP_RESPONSE, "status": "completed", "output": [REASONING_ITEM, MESSAGE_ITEM]},
            ),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "reasoning"),
            BlockDelta(0, "**Plan**\n\nRun tests."),
            BlockOpaque(0, "gAAA-up", "openai"),
            BlockStop(0),
            BlockStart(1, "text"),
            BlockDelta(1, "Running the tests."),
            BlockStop(1),
            Finish("stop"),
            End(),
        ],
        [],
        id="one-event-carrying-reasoning-and-text-keeps-both-in-order",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up("response.output_item.added", 1, output_index=0, item={**MESSAGE_ITEM, "content": []}),
            up(
                "response.output_text.delta",
                2,
                item_id="msg_up1",
                output_index=0,
                content_index=0,
                delta="Part",
            ),
            up(
                "response.incomplete",
                3,
                response={
                    **UP_RESPONSE,
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "usage": {"input_tokens": 10, "output_tokens": 16},
                },
            ),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "text"),
            BlockDelta(0, "Part"),
            BlockStop(0),
            Finish("length"),
            UsageReport(Usage(10, 16)),
            End(),
        ],
        [],
        id="usage-on-an-incomplete-response",
    ),
    pytest.param(
        [
            up(
                "response.incomplete",
                0,
                response={"id": "resp_x", "usage": {"input_tokens": 3, "output_tokens": 0}},
            )
        ],
        [Start("resp_x", None), Finish("length"), UsageReport(Usage(3, 0)), End()],
        [],
        id="incomplete-event-without-status-is-length",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up(
                "response.output_item.added",
                1,
                output_index=0,
                item={
                    "type": "custom_tool_call",
                    "id": "ctc_u",
                    "call_id": "call_u",
                    "name": "apply_patch",
                    "input": "",
                },
            ),
            up(
                "response.custom_tool_call_input.delta", 2, item_id="ctc_u", output_index=0, delta="*** Begin"
            ),
            up(
                "response.output_item.done",
                3,
                output_index=0,
                item={
                    "type": "custom_tool_call",
                    "id": "ctc_u",
                    "call_id": "call_u",
                    "name": "apply_patch",
                    "input": "*** Begin Patch",
                },
            ),
            up("response.completed", 4, response={**UP_RESPONSE, "status": "completed"}),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "tool", call_id="call_u", name="apply_patch", tool_kind="custom"),
            BlockDelta(0, "*** Begin"),
            BlockDelta(0, " Patch"),
            BlockStop(0),
            Finish("tool_calls"),
            End(),
        ],
        [],
        id="custom-tool-call-with-the-rest-in-done",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up(
                "response.output_item.added",
                1,
                output_index=0,
                item={"type": "function_call", "id": "fc_only", "name": "f", "arguments": ""},
            ),
            up(
                "response.output_item.done",
                2,
                output_index=0,
                item={"type": "function_call", "id": "fc_only", "name": "f"},
            ),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "tool", call_id="fc_only", name="f"),
            BlockStop(0),
        ],
        [],
        id="call-id-never-empty",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up("response.output_item.added", 1, output_index=0, item={**MESSAGE_ITEM, "content": []}),
            up("response.output_text.delta", 2, item_id="m", output_index=0, content_index=0, delta="Sure"),
            up("response.refusal.delta", 3, item_id="m", output_index=0, content_index=1, delta="but no."),
            up(
                "response.output_item.done",
                4,
                output_index=0,
                item={
                    **MESSAGE_ITEM,
                    "content": [
                        {"type": "output_text", "text": "Sure"},
                        {"type": "refusal", "refusal": "but no."},
                    ],
                },
            ),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            BlockStart(0, "text"),
            BlockDelta(0, "Sure"),
            BlockStop(0),
            BlockStart(1, "refusal"),
            BlockDelta(1, "but no."),
            BlockStop(1),
        ],
        [],
        id="text-then-refusal-parts",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up(
                "response.failed",
                1,
                response={
                    **UP_RESPONSE,
                    "status": "failed",
                    "error": {"code": "server_is_overloaded", "message": "Try again later."},
                },
            ),
            up("response.completed", 2, response={**UP_RESPONSE, "status": "completed"}),
        ],
        [
            Start("resp_up1", "gpt-5.1-codex-2025"),
            StreamError("Try again later.", None, "server_is_overloaded"),
        ],
        [],
        id="failed",
    ),
    pytest.param(
        [up("error", 0, code="rate_limit_exceeded", message="Slow down.", param=None)],
        [StreamError("Slow down.", None, "rate_limit_exceeded")],
        [],
        id="error-event",
    ),
    pytest.param(
        [
            up("response.created", 0, response=UP_RESPONSE),
            up("response.web_search_call.searching", 1, output_index=0, item_id="ws"),
            up("response.output_text.annotation.added", 2, annotation={}),
            up("keepalive", 3),
        ],
        [Start("resp_up1", "gpt-5.1-codex-2025")],
        [],
        id="unknown-events-ignored",
    ),
]


@pytest.mark.parametrize(("payloads", "expected", "closed"), DECODE_STREAM_CASES)
def test_stream_decoder(payloads: list[Any], expected: list[StreamEvent], closed: list[StreamEvent]) -> None:
    fed, tail = decode_stream(upstream_events(*payloads))
    assert fed == expected
    assert tail == closed


def test_stream_decoder_reads_the_sse_event_name_when_data_has_no_type() -> None:
    decoder = CODEC.stream_decoder()
    event = parse_event(
        b"event: response.created\ndata: " + orjson.dumps({"response": UP_RESPONSE}) + b"\n\n"
    )
    assert decoder.feed(event) == [Start("resp_up1", "gpt-5.1-codex-2025")]


MALFORMED_EVENTS = [
    pytest.param(b"data: [1, 2]\n\n", id="not-an-object"),
    pytest.param(b"data: {not json\n\n", id="not-json"),
    pytest.param(b'data: {"type": 5}\n\n', id="type-number"),
    pytest.param(sse(None, up("response.created", 0, response="x")), id="response-string"),
    pytest.param(sse(None, up("response.output_item.added", 0, output_index=0, item=[])), id="item-list"),
    pytest.param(
        sse(None, up("response.output_item.added", 0, output_index="0", item={})), id="index-string"
    ),
    pytest.param(
        sse(
            None,
            up("response.output_item.added", 0, output_index=0, item={"type": "function_call", "name": 7}),
        ),
        id="call-name-number",
    ),
    pytest.param(
        sse(None, up("response.output_text.delta", 0, output_index=0, content_index=0, delta=5)),
        id="delta-number",
    ),
    pytest.param(
        sse(None, up("response.function_call_arguments.delta", 0, output_index=4, delta="{}")),
        id="arguments-for-no-item",
    ),
    pytest.param(sse(None, up("response.completed", 0, response={"usage": "lots"})), id="usage-string"),
    pytest.param(
        sse(None, up("response.completed", 0, response={"usage": {"output_tokens": -1}})), id="usage-negative"
    ),
    pytest.param(sse(None, up("response.completed", 0, response={"output": "x"})), id="output-string"),
    pytest.param(
        sse(
            None, up("response.output_item.done", 0, output_index=0, item={**REASONING_ITEM, "summary": [3]})
        ),
        id="summary-part-number",
    ),
]


@pytest.mark.parametrize("raw", MALFORMED_EVENTS)
def test_stream_decoder_malformed(raw: bytes) -> None:
    decoder = CODEC.stream_decoder()
    with pytest.raises(Malformed):
        decoder.feed(parse_event(raw))


def test_stream_decoder_malformed_event_changes_nothing() -> None:
    """A dropped event leaves the stream where it was: the open block still gets its stop."""
    decoder = CODEC.stream_decoder()
    good = upstream_events(*RECORDED_STREAM[:5])
    for event in good:
        decoder.feed(event)
    with pytest.raises(Malformed):
        decoder.feed(
            parse_event(
                sse(None, up("response.output_item.added", 9, output_index=1, item={"type": "function_call"}))
            )
        )
    rest = [out for event in upstream_events(*RECORDED_STREAM[5:]) for out in decoder.feed(event)]
    assert rest[:3] == [
        BlockDelta(0, "\n\n"),
        BlockDelta(0, "Run tests."),
        BlockOpaque(0, "gAAA-up", "openai"),
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "text", "refusal", "summary", "id", "reason"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_PATHS = [
    ("type",),
    ("delta",),
    ("output_index",),
    ("content_index",),
    ("summary_index",),
    ("item",),
    ("item", "type"),
    ("item", "name"),
    ("item", "call_id"),
    ("item", "arguments"),
    ("item", "summary"),
    ("item", "content"),
    ("item", "encrypted_content"),
    ("response",),
    ("response", "usage"),
    ("response", "output"),
    ("response", "status"),
    ("response", "error"),
    ("response", "incomplete_details"),
]


def _replaced(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    head, *rest = path
    if not rest:
        return {**payload, head: value}
    inner = payload.get(head)
    return {**payload, head: _replaced(inner, tuple(rest), value)} if isinstance(inner, dict) else payload


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(RECORDED_STREAM) - 1), st.sampled_from(_PATHS), _JSON), max_size=5)
)
def test_stream_decoder_raises_only_malformed(changes: list[tuple[int, tuple[str, ...], Any]]) -> None:
    """Recorded events with fields replaced by arbitrary JSON: Malformed or events, nothing else."""
    payloads = list(RECORDED_STREAM)
    for index, path, value in changes:
        payloads[index] = _replaced(payloads[index], path, value)
    decoder = CODEC.stream_decoder()
    for event in upstream_events(*payloads):
        try:
            decoder.feed(event)
        except Malformed:
            pass
    assert decoder.close() == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([REASONING_ITEM, MESSAGE_ITEM, CALL_ITEM]), st.sampled_from(_PATHS), _JSON)
def test_decode_response_raises_only_malformed(
    item: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    payload = _replaced({"item": item, "response": upstream_response([item])}, path, value)
    for body in (payload["response"], upstream_response([payload["item"]])):
        try:
            CODEC.decode_response(body)
        except Malformed:
            pass


# == stream encoder ==============================================================================
def encode_stream(events: list[StreamEvent], ctx: ClientContext | None = None) -> bytes:
    encoder = CODEC.stream_encoder(ctx or context())
    return b"".join(encoder.encode(event) for event in events)


def sse_events(body: bytes) -> list[tuple[str | None, Any]]:
    """Each SSE event as (its ``event:`` name, its JSON data); the name always equals the type."""
    out = []
    for raw in split_events(body):
        event = parse_event(raw)
        out.append((event.name, orjson.loads(event.data)))
    return out


CANONICAL_TURN: list[StreamEvent] = [
    Start("upstream-id", "upstream-model"),
    BlockStart(0, "reasoning"),
    BlockDelta(0, "Plan."),
    BlockOpaque(0, "gAAA-enc", "openai"),
    BlockStop(0),
    BlockStart(1, "text"),
    BlockDelta(1, "Hi"),
    BlockDelta(1, " there"),
    BlockStop(1),
    BlockStart(2, "tool", call_id="toolu_01A", name="exec_command"),
    BlockDelta(2, '{"cmd":'),
    BlockDelta(2, '"ls"}'),
    BlockStop(2),
    Finish("tool_calls"),
    UsageReport(Usage(100, 20, 80, 0, 5)),
    End(),
]

REASONING_DONE = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "Plan."}],
    "encrypted_content": "gAAA-enc",
}
MESSAGE_DONE = {
    "type": "message",
    "id": "msg_1",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hi there", "annotations": []}],
}
CALL_DONE = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_01A",
    "name": "exec_command",
    "arguments": '{"cmd":"ls"}',
    "status": "completed",
}
IN_PROGRESS = response_object("in_progress", [], None)


def ev(kind: str, seq: int, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, "sequence_number": seq, **fields}


ENCODED_TURN = [
    ev("response.created", 0, response=IN_PROGRESS),
    ev("response.in_progress", 1, response=IN_PROGRESS),
    ev(
        "response.output_item.added",
        2,
        output_index=0,
        item={"type": "reasoning", "id": "rs_1", "summary": []},
    ),
    ev(
        "response.reasoning_summary_part.added",
        3,
        item_id="rs_1",
        output_index=0,
        summary_index=0,
        part={"type": "summary_text", "text": ""},
    ),
    ev(
        "response.reasoning_summary_text.delta",
        4,
        item_id="rs_1",
        output_index=0,
        summary_index=0,
        delta="Plan.",
    ),
    ev(
        "response.reasoning_summary_text.done",
        5,
        item_id="rs_1",
        output_index=0,
        summary_index=0,
        text="Plan.",
    ),
    ev(
        "response.reasoning_summary_part.done",
        6,
        item_id="rs_1",
        output_index=0,
        summary_index=0,
        part={"type": "summary_text", "text": "Plan."},
    ),
    ev("response.output_item.done", 7, output_index=0, item=REASONING_DONE),
    ev(
        "response.output_item.added",
        8,
        output_index=1,
        item={"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []},
    ),
    ev(
        "response.content_part.added",
        9,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": []},
    ),
    ev(
        "response.output_text.delta",
        10,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        delta="Hi",
        logprobs=[],
    ),
    ev(
        "response.output_text.delta",
        11,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        delta=" there",
        logprobs=[],
    ),
    ev(
        "response.output_text.done",
        12,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        text="Hi there",
        logprobs=[],
    ),
    ev(
        "response.content_part.done",
        13,
        item_id="msg_1",
        output_index=1,
        content_index=0,
        part={"type": "output_text", "text": "Hi there", "annotations": []},
    ),
    ev("response.output_item.done", 14, output_index=1, item=MESSAGE_DONE),
    ev(
        "response.output_item.added",
        15,
        output_index=2,
        item={
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_01A",
            "name": "exec_command",
            "arguments": "",
            "status": "in_progress",
        },
    ),
    ev("response.function_call_arguments.delta", 16, item_id="fc_1", output_index=2, delta='{"cmd":'),
    ev("response.function_call_arguments.delta", 17, item_id="fc_1", output_index=2, delta='"ls"}'),
    ev("response.function_call_arguments.done", 18, item_id="fc_1", output_index=2, arguments='{"cmd":"ls"}'),
    ev("response.output_item.done", 19, output_index=2, item=CALL_DONE),
    ev(
        "response.completed",
        20,
        response=response_object(
            "completed", [REASONING_DONE, MESSAGE_DONE, CALL_DONE], usage_object(100, 20, 80, 5)
        ),
    ),
]


def test_stream_encoder_golden() -> None:
    body = encode_stream(CANONICAL_TURN)
    assert sse_events(body) == ENCODED_TURN
    first = split_events(body)[0]
    assert first.startswith(b'event: response.created\ndata: {"type":"response.created","sequence_number":0,')
    assert first.endswith(b"}\n\n")


CUSTOM_ADDED = {
    "type": "custom_tool_call",
    "id": "ctc_1",
    "call_id": "call_p1",
    "name": "apply_patch",
    "input": "",
}
CUSTOM_DONE = {**CUSTOM_ADDED, "input": PATCH}
REFUSAL_DONE = {
    "type": "message",
    "id": "msg_1",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "refusal", "refusal": "No."}],
}

ENCODE_STREAM_CASES = [
    pytest.param(
        [
            Start(),
            BlockStart(0, "tool", call_id="toolu_p1", name="apply_patch", tool_kind="custom"),
            BlockDelta(0, PATCH),
            BlockStop(0),
            Finish("tool_calls"),
            End(),
        ],
        [
            ev("response.created", 0, response=IN_PROGRESS),
            ev("response.in_progress", 1, response=IN_PROGRESS),
            ev("response.output_item.added", 2, output_index=0, item=CUSTOM_ADDED),
            ev("response.custom_tool_call_input.delta", 3, item_id="ctc_1", output_index=0, delta=PATCH),
            ev("response.custom_tool_call_input.done", 4, item_id="ctc_1", output_index=0, input=PATCH),
            ev("response.output_item.done", 5, output_index=0, item=CUSTOM_DONE),
            ev(
                "response.completed",
                6,
                response=response_object("completed", [CUSTOM_DONE], usage_object(0, 0)),
            ),
        ],
        id="custom-tool-call-turned-back-into-custom-tool-call",
    ),
    pytest.param(
        [BlockStart(0, "tool", call_id="", name="f"), End()],
        [
            ev("response.created", 0, response=IN_PROGRESS),
            ev("response.in_progress", 1, response=IN_PROGRESS),
            ev(
                "response.output_item.added",
                2,
                output_index=0,
                item={
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": "",
                    "status": "in_progress",
                },
            ),
            ev("response.function_call_arguments.done", 3, item_id="fc_1", output_index=0, arguments=""),
            ev(
                "response.output_item.done",
                4,
                output_index=0,
                item={
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": "",
                    "status": "completed",
                },
            ),
            ev(
                "response.completed",
                5,
                response=response_object(
                    "completed",
                    [
                        {
                            "type": "function_call",
                            "id": "fc_1",
                            "call_id": "call_1",
                            "name": "f",
                            "arguments": "",
                            "status": "completed",
                        }
                    ],
                    usage_object(0, 0),
                ),
            ),
        ],
        id="call-id-never-empty-block-before-start-end-with-open-block",
    ),
    pytest.param(
        [
            Start(),
            BlockStart(0, "text"),
            BlockDelta(0, "Part"),
            Finish("length"),
            UsageReport(Usage(10, 16)),
            End(),
        ],
        [
            ev("response.created", 0, response=IN_PROGRESS),
            ev("response.in_progress", 1, response=IN_PROGRESS),
            ev(
                "response.output_item.added",
                2,
                output_index=0,
                item={
                    "type": "message",
                    "id": "msg_1",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            ),
            ev(
                "response.content_part.added",
                3,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            ),
            ev(
                "response.output_text.delta",
                4,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                delta="Part",
                logprobs=[],
            ),
            ev(
                "response.output_text.done",
                5,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                text="Part",
                logprobs=[],
            ),
            ev(
                "response.content_part.done",
                6,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                part={"type": "output_text", "text": "Part", "annotations": []},
            ),
            ev(
                "response.output_item.done",
                7,
                output_index=0,
                item={
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Part", "annotations": []}],
                },
            ),
            ev(
                "response.incomplete",
                8,
                response=response_object(
                    "incomplete",
                    [
                        {
                            "type": "message",
                            "id": "msg_1",
                            "status": "completed",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": "Part", "annotations": []}],
                        }
                    ],
                    usage_object(10, 16),
                    incomplete="max_output_tokens",
                ),
            ),
        ],
        id="usage-on-an-incomplete-response",
    ),
    pytest.param(
        [Start(), BlockStart(0, "refusal"), BlockDelta(0, "No."), BlockStop(0), Finish("refusal"), End()],
        [
            ev("response.created", 0, response=IN_PROGRESS),
            ev("response.in_progress", 1, response=IN_PROGRESS),
            ev(
                "response.output_item.added",
                2,
                output_index=0,
                item={
                    "type": "message",
                    "id": "msg_1",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            ),
            ev(
                "response.content_part.added",
                3,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                part={"type": "refusal", "refusal": ""},
            ),
            ev("response.refusal.delta", 4, item_id="msg_1", output_index=0, content_index=0, delta="No."),
            ev("response.refusal.done", 5, item_id="msg_1", output_index=0, content_index=0, refusal="No."),
            ev(
                "response.content_part.done",
                6,
                item_id="msg_1",
                output_index=0,
                content_index=0,
                part={"type": "refusal", "refusal": "No."},
            ),
            ev("response.output_item.done", 7, output_index=0, item=REFUSAL_DONE),
            ev(
                "response.completed",
                8,
                response=response_object("completed", [REFUSAL_DONE], usage_object(0, 0)),
            ),
        ],
        id="refusal",
    ),
    pytest.param(
        [
            Start(),
            BlockStart(0, "reasoning"),
            BlockOpaque(0, "anthropic-signature", "anthropic"),
            BlockStop(0),
            BlockStart(1, "text"),
            BlockDelta(1, "Hi"),
            StreamError("Overloaded", "overloaded_error", None),
            End(),
        ],
        [
            ev("response.created", 0, response=IN_PROGRESS),
            ev("response.in_progress", 1, response=IN_PROGRESS),
            ev(
                "response.output_item.added",
                2,
                output_index=0,
                item={"type": "reasoning", "id": "rs_1", "summary": []},
            ),
            ev(
                "response.output_item.done",
                3,
                output_index=0,
                item={"type": "reasoning", "id": "rs_1", "summary": []},
            ),
            ev(
                "response.output_item.added",
                4,
                output_index=1,
                item={
                    "type": "message",
                    "id": "msg_1",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            ),
            ev(
                "response.content_part.added",
                5,
                item_id="msg_1",
                output_index=1,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            ),
            ev(
                "response.output_text.delta",
                6,
                item_id="msg_1",
                output_index=1,
                content_index=0,
                delta="Hi",
                logprobs=[],
            ),
            ev(
                "response.failed",
                7,
                response=response_object(
                    "failed",
                    [{"type": "reasoning", "id": "rs_1", "summary": []}],
                    usage_object(0, 0),
                    error={"code": "server_error", "message": "Overloaded"},
                ),
            ),
        ],
        id="foreign-opaque-dropped-then-failure",
    ),
]


@pytest.mark.parametrize(("events", "expected"), ENCODE_STREAM_CASES)
def test_stream_encoder(events: list[StreamEvent], expected: list[tuple[str, dict[str, Any]]]) -> None:
    assert sse_events(encode_stream(events)) == expected


def test_stream_encoder_reasoning_then_text_keeps_both_in_order() -> None:
    body = encode_stream(
        [
            BlockStart(0, "reasoning"),
            BlockDelta(0, "Think"),
            BlockStart(1, "text"),
            BlockDelta(1, "Say"),
            End(),
        ]
    )
    done = [payload["item"] for name, payload in sse_events(body) if name == "response.output_item.done"]
    assert [(item["type"], item["id"]) for item in done] == [("reasoning", "rs_1"), ("message", "msg_1")]
    assert done[0]["summary"] == [{"type": "summary_text", "text": "Think"}]
    assert done[1]["content"][0]["text"] == "Say"


# -- the real openai SDK reads the encoded stream ------------------------------------------------
def sdk_final(body: bytes) -> Any:
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(orjson.loads(request.content))
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="x",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.responses.stream(model=MODEL, input="hi") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[0]["stream"] is True
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    return final


def test_openai_sdk_accumulates_the_encoded_stream() -> None:
    final = sdk_final(encode_stream(CANONICAL_TURN))
    assert final.id == "resp_1"
    assert final.status == "completed"
    assert final.model == MODEL
    assert final.output_text == "Hi there"
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Plan."]
    assert reasoning.encrypted_content == "gAAA-enc"
    assert message.type == "message"
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.call_id, call.id) == (
        "exec_command",
        '{"cmd":"ls"}',
        "call_01A",
        "fc_1",
    )
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (100, 20, 120)
    assert final.usage.input_tokens_details.cached_tokens == 80
    assert final.usage.output_tokens_details.reasoning_tokens == 5


def test_openai_sdk_accumulates_a_custom_tool_call() -> None:
    final = sdk_final(
        encode_stream(
            [
                Start(),
                BlockStart(0, "text"),
                BlockDelta(0, "Patching."),
                BlockStop(0),
                BlockStart(1, "tool", call_id="toolu_p1", name="apply_patch", tool_kind="custom"),
                BlockDelta(1, PATCH[:10]),
                BlockDelta(1, PATCH[10:]),
                BlockStop(1),
                Finish("tool_calls"),
                End(),
            ]
        )
    )
    assert final.output_text == "Patching."
    call = final.output[1]
    assert call.type == "custom_tool_call"
    assert (call.name, call.input, call.call_id) == ("apply_patch", PATCH, "call_p1")


def test_decoder_and_encoder_compose_into_the_sdk() -> None:
    """An upstream Responses stream, decoded and re-encoded, reads back the same in the SDK."""
    fed, _ = decode_stream(upstream_events(*RECORDED_STREAM))
    final = sdk_final(encode_stream(fed))
    assert final.output_text == "Running the tests."
    assert [s.text for s in final.output[0].summary] == ["**Plan**\n\nRun tests."]
    assert final.output[0].encrypted_content == "gAAA-up"
    assert (final.output[2].name, final.output[2].call_id) == ("exec_command", "call_up1")
    assert final.usage is not None
    assert final.usage.input_tokens_details.cached_tokens == 1024


def test_the_text_delta_fast_path_writes_what_the_general_path_would() -> None:
    """Text deltas are written from pre-serialised frames: byte for byte the event ``sse`` makes
    of the payload (escapes and non-ASCII included)."""
    from spillgate.protocols.adapter import sse
    from spillgate.protocols.translate.canonical import BlockDelta, BlockStart, Start
    from spillgate.protocols.translate.codec import ClientContext

    ids = iter(range(100))
    encoder = CODEC.stream_encoder(ClientContext(model="m", new_id=lambda p: f"{p}{next(ids)}", created=1))
    encoder.encode(Start())
    encoder.encode(BlockStart(0, "text"))
    for seq, text in ((4, "plain"), (5, 'quote " and \\ and \n'), (6, "ünïcødé ✓")):
        assert encoder.encode(BlockDelta(0, text)) == sse(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": seq,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            },
        )
