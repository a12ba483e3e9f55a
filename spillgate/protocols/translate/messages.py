"""The Anthropic Messages API (``/v1/messages``: Claude Code, the anthropic SDKs) as a codec.

Requests: a client's body to a canonical :class:`~.canonical.Request` and a canonical request to
an Anthropic body; answers: an Anthropic message to a :class:`~.canonical.Response` and back;
streams: Anthropic SSE events to canonical stream events and back, in the exact grammar the
anthropic SDKs and Claude Code accumulate (``content_block_*`` events indexed 0, 1, 2… in start
order, a delta only for the block that is open).

Where the two sides differ, the rules (each applied the same way every time, so the bytes an
upstream sees for the same conversation do not change between turns and its prompt cache hits):

* Anthropic's ``system`` is the leading run of system/developer messages. A system or developer
  message *after* the conversation began has no Anthropic role: it is carried in place as a user
  text block (merged into the neighbouring user message), not moved and not dropped.
* Anthropic alternates roles: consecutive messages of one role are merged into one message, and
  tool results (canonical ``tool`` messages) are user messages whose ``tool_result`` blocks come
  first (Anthropic requires it).
* ``cache_control``: :attr:`Text.cache` / :attr:`Tool.cache` are breakpoints. A client that asked
  for prompt caching the OpenAI way (``prompt_cache_key``) and marked nothing gets breakpoints on
  the last system block and the last tool, so its long fixed prefix (Codex: about 20k tokens of
  instructions and tools) is cached on Claude too.
* Thinking: a budget is sent as is (at least Anthropic's minimum of 1024); an OpenAI effort is a
  budget from :data:`EFFORT_BUDGETS`. Anthropic rejects thinking with a forced tool choice and
  when the assistant turn in progress does not start with a thinking block (its reasoning came
  from another provider): thinking is then left out, the omission recorded.
* Reasoning of another provider is dropped going upstream (recorded) but shown to a Messages
  client as a ``thinking`` block with an empty signature (which decodes back to no opaque, so it
  is never sent to Anthropic as if signed). Hosted tools pass upstream only from an Anthropic
  client (their definitions are Anthropic's); others are left out, recorded.
* Answers: an answer that made tool calls ends in ``tool_use`` even where the upstream said
  ``stop``; empty text blocks are left out of requests (Anthropic rejects them) and answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.protocols.adapter import sse
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import invalid
from spillgate.protocols.events import Event
from spillgate.protocols.translate.canonical import (
    BlockDelta,
    BlockKind,
    BlockOpaque,
    BlockStart,
    BlockStop,
    Carried,
    End,
    Finish,
    FinishReason,
    Image,
    Message,
    OutputFormat,
    Part,
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
from spillgate.protocols.translate.codec import (
    ClientContext,
    Codec,
    Malformed,
    StreamDecoder,
    StreamEncoder,
    Target,
    client_call_id,
    random_id,
)

JSON = dict[str, Any]

EFFORT_BUDGETS: Mapping[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
}
"""The thinking budget sent for an OpenAI reasoning effort (``none`` and unknown efforts: no
thinking). ``minimal`` is Anthropic's smallest budget; ``high`` leaves room under the 32k-token
output limit of the smaller Claude models once :func:`_max_tokens` adds the answer's share."""

MIN_THINKING_BUDGET = 1024
"""Anthropic rejects a smaller ``budget_tokens``."""

EPHEMERAL: Mapping[str, str] = {"type": "ephemeral"}

ANTHROPIC_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)
"""The ``error.type`` values Anthropic clients know (Claude Code retries ``overloaded_error``)."""

_HOSTED_CALLS = frozenset({"server_tool_use", "mcp_tool_use", "mcp_tool_result"})
"""Blocks of a tool the provider ran; so is every ``<tool>_tool_result`` (``web_search_tool_result``…)."""

_STOP_IN: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
    "pause_turn": "pause",
}
_STOP_OUT: Mapping[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "refusal": "refusal",
    "pause": "pause_turn",
}
_EFFORT_IN: Mapping[str, str] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
"""Anthropic's ``output_config.effort`` as an OpenAI effort (OpenAI's scale tops out at ``high``)."""

_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


# -- shared helpers ---------------------------------------------------------------------------------


def anthropic_id(value: str) -> str:
    """A tool id as Anthropic accepts it (``^[a-zA-Z0-9_-]+$``): any other character becomes
    ``_``, the same in a ``tool_use`` and the ``tool_result`` answering it, so they still pair."""
    return _UNSAFE_ID.sub("_", value)


def tool_input(arguments: str) -> JSON:
    """A call's JSON arguments as the object Anthropic's ``input`` must be: ``{}`` for none, the
    value under ``"input"`` when it is not an object (or not JSON at all)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _count(value: Any) -> int:
    """An upstream's token count: a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _has_count(usage: Mapping[str, Any], key: str) -> bool:
    value = usage.get(key)
    return isinstance(value, int) and not isinstance(value, bool)


def _message_id(upstream: str | None, ctx: ClientContext) -> str:
    return upstream if upstream and upstream.startswith("msg_") else ctx.new_id("msg_")


def _wire_usage(usage: Usage | None, ctx: ClientContext) -> JSON:
    """Anthropic's usage fields for canonical ``usage`` (its ``input_tokens`` excludes cache
    reads and writes); the request's estimate stands in for input nobody counted yet."""
    usage = usage or Usage()
    fresh = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    if usage.input_tokens == 0:
        fresh = ctx.estimated_input_tokens
    return {
        "input_tokens": fresh,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def _stop_reason(finish: FinishReason | None, tool_emitted: bool) -> str:
    """Anthropic's ``stop_reason``. An answer that made tool calls is ``tool_use`` even where the
    upstream said ``stop`` (some Chat upstreams do): Anthropic clients run tools on ``tool_use``."""
    if finish is None or (finish == "stop" and tool_emitted):
        return "tool_use" if tool_emitted else "end_turn"
    return _STOP_OUT[finish]


# -- client bodies: checked field by field ------------------------------------------------------------
def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


def _want(what: str, value: object, path: str) -> Exception:
    return invalid(f"'{path}' must be {what}, got {_type_name(value)}", param=path)


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _want("a string", value, path)
    return value


def _opt_str(value: Any, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _want("an object", value, path)
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _want("a list", value, path)
    return value


def _opt_bool(value: Any, path: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _want("true or false", value, path)
    return value


def _opt_int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _want("a non-negative integer", value, path)
    return value


def _opt_number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _want("a number", value, path)
    return float(value)


def _cached(block: Mapping[str, Any]) -> bool:
    return block.get("cache_control") is not None


def _is_hosted_block(kind: str) -> bool:
    return kind in _HOSTED_CALLS or (kind.endswith("_tool_result") and kind != "tool_result")


@dataclass(slots=True)
class _Notes:
    """What a client's body had that only Anthropic can carry, in words, each once."""

    untranslatable: list[str]
    droppable: list[str]

    def cannot(self, what: str) -> None:
        if what not in self.untranslatable:
            self.untranslatable.append(what)

    def drop(self, what: str) -> None:
        if what not in self.droppable:
            self.droppable.append(what)


def _decode_system(value: Any) -> Message | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Message("system", (Text(value),)) if value else None
    blocks = _list(value, "system")
    parts: list[Part] = []
    for i, raw in enumerate(blocks):
        path = f"system[{i}]"
        block = _obj(raw, path)
        kind = _str(block.get("type"), f"{path}.type")
        if kind != "text":
            raise invalid(f"'{path}.type' must be \"text\", got {kind!r}", param=f"{path}.type")
        parts.append(Text(_str(block.get("text"), f"{path}.text"), cache=_cached(block)))
    return Message("system", tuple(parts)) if parts else None


def _decode_image(block: Mapping[str, Any], path: str, notes: _Notes) -> Image | None:
    source = _obj(block.get("source"), f"{path}.source")
    kind = _str(source.get("type"), f"{path}.source.type")
    if kind == "base64":
        media_type = _str(source.get("media_type"), f"{path}.source.media_type")
        data = _str(source.get("data"), f"{path}.source.data")
        return Image(f"data:{media_type};base64,{data}")
    if kind == "url":
        return Image(_str(source.get("url"), f"{path}.source.url"))
    notes.cannot(f"an image with a {kind} source")
    return None


def _decode_result_content(value: Any, path: str, notes: _Notes) -> str | tuple[Text | Image, ...]:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    parts: list[Text | Image] = []
    for i, raw in enumerate(_list(value, path)):
        block = _obj(raw, f"{path}[{i}]")
        kind = _str(block.get("type"), f"{path}[{i}].type")
        if kind == "text":
            parts.append(Text(_str(block.get("text"), f"{path}[{i}].text"), cache=_cached(block)))
        elif kind == "image":
            image = _decode_image(block, f"{path}[{i}]", notes)
            if image is not None:
                parts.append(image)
        else:
            notes.cannot(f"a {kind} block in a tool result")
    return tuple(parts) if parts else ""


def _decode_tool_result(block: Mapping[str, Any], path: str, notes: _Notes) -> ToolResult:
    """A ``tool_result``. Its own ``cache_control`` (Claude Code marks the last block of the
    conversation, often a result) is kept on its last text part: ToolResult has no flag of its own."""
    call_id = _str(block.get("tool_use_id"), f"{path}.tool_use_id")
    output = _decode_result_content(block.get("content"), f"{path}.content", notes)
    is_error = _opt_bool(block.get("is_error"), f"{path}.is_error") or False
    if _cached(block):
        parts = [Text(output)] if isinstance(output, str) else list(output)
        for k in range(len(parts) - 1, -1, -1):
            part = parts[k]
            if isinstance(part, Text):
                parts[k] = Text(part.text, cache=True)
                output = tuple(parts)
                break
    return ToolResult(call_id, output, is_error=is_error)


def _decode_block(block: Mapping[str, Any], path: str, notes: _Notes) -> Part | None:
    """One content block of a message (``tool_result`` aside); ``None`` for a block left out
    (recorded in ``notes``)."""
    kind = _str(block.get("type"), f"{path}.type")
    if kind == "text":
        return Text(_str(block.get("text"), f"{path}.text"), cache=_cached(block))
    if kind == "image":
        return _decode_image(block, path, notes)
    if kind == "tool_use":
        call_id = _str(block.get("id"), f"{path}.id")
        name = _str(block.get("name"), f"{path}.name")
        arguments = _obj(block.get("input"), f"{path}.input")
        return ToolCall(call_id, name, _dumps(arguments))
    if kind == "thinking":
        text = _str(block.get("thinking"), f"{path}.thinking")
        signature = _opt_str(block.get("signature"), f"{path}.signature")
        return Reasoning(text, opaque=signature or None, origin="anthropic")
    if kind == "redacted_thinking":
        data = _str(block.get("data"), f"{path}.data")
        return Reasoning("", opaque=data, origin="anthropic", redacted=True)
    if _is_hosted_block(kind):
        notes.drop(f"a {kind} block (a hosted tool's call or result)")
        return None
    notes.cannot(f"a {kind} block")
    return None


def _decode_message(raw: Any, i: int, notes: _Notes) -> list[Message]:
    """One Anthropic message as canonical messages: a user message's tool results become a
    ``tool`` message placed before the user message holding the rest of its blocks."""
    path = f"messages[{i}]"
    message = _obj(raw, path)
    role = message.get("role")
    if role not in ("user", "assistant", "system"):
        raise invalid(
            f'\'{path}.role\' must be "user", "assistant" or "system", got {role!r}', param=f"{path}.role"
        )
    # Claude Code (2.1) sends system messages among the turns (reminders, context): kept in
    # place, as a mid-conversation system message of the canonical form.
    if role == "system" and message.get("content") is None:
        raise invalid(f"'{path}.content' is required", param=f"{path}.content")
    content = message.get("content")
    if isinstance(content, str):
        return [Message(role, (Text(content),))]
    blocks = _list(content, f"{path}.content")
    results: list[Part] = []
    parts: list[Part] = []
    left_out = False
    for j, raw_block in enumerate(blocks):
        block_path = f"{path}.content[{j}]"
        block = _obj(raw_block, block_path)
        if block.get("type") == "tool_result":
            if role != "user":
                raise invalid(f"'{block_path}': tool_result blocks belong in user messages", param=block_path)
            results.append(_decode_tool_result(block, block_path, notes))
            continue
        part = _decode_block(block, block_path, notes)
        if part is None:
            left_out = True
        else:
            parts.append(part)
    out: list[Message] = []
    if results:
        out.append(Message("tool", tuple(results)))
    if parts or (not results and not left_out):
        out.append(Message(role, tuple(parts)))
    return out


def _decode_tool(raw: Any, i: int) -> Tool:
    path = f"tools[{i}]"
    tool = _obj(raw, path)
    kind = _opt_str(tool.get("type"), f"{path}.type")
    if kind is None or kind == "custom":
        schema = tool.get("input_schema")
        return Tool(
            name=_str(tool.get("name"), f"{path}.name"),
            description=_opt_str(tool.get("description"), f"{path}.description"),
            parameters=None if schema is None else _obj(schema, f"{path}.input_schema"),
            strict=_opt_bool(tool.get("strict"), f"{path}.strict"),
            cache=_cached(tool),
        )
    name = _opt_str(tool.get("name"), f"{path}.name")
    return Tool(name=name or kind, kind="hosted", hosted=dict(tool), cache=_cached(tool))


def _decode_tool_choice(value: Any, tools: Sequence[Tool]) -> tuple[ToolChoice | None, bool | None]:
    if value is None:
        return None, None
    choice = _obj(value, "tool_choice")
    kind = _str(choice.get("type"), "tool_choice.type")
    disable = _opt_bool(choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use")
    parallel = None if disable is None else not disable
    if kind == "auto":
        return ToolChoice("auto"), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "none":
        return ToolChoice("none"), parallel
    if kind == "tool":
        name = _str(choice.get("name"), "tool_choice.name")
        hosted = any(t.kind == "hosted" and t.name == name for t in tools)
        return ToolChoice("tool", name, hosted=hosted), parallel
    raise invalid(
        f"'tool_choice.type' must be auto, any, tool or none, got {kind!r}", param="tool_choice.type"
    )


def _decode_reasoning(thinking: Any, output_config: Mapping[str, Any]) -> ReasoningConfig | None:
    effort_value = _opt_str(output_config.get("effort"), "output_config.effort")
    effort = _EFFORT_IN.get(effort_value) if effort_value else None
    if thinking is None:
        return ReasoningConfig(effort=effort) if effort else None
    config = _obj(thinking, "thinking")
    kind = _str(config.get("type"), "thinking.type")
    display = _opt_str(config.get("display"), "thinking.display")
    if kind == "disabled":
        return ReasoningConfig(enabled=False)
    budget = None
    if kind == "enabled":
        budget = _opt_int(config.get("budget_tokens"), "thinking.budget_tokens")
        if budget is None:
            raise invalid("'thinking.budget_tokens' is required with type enabled", "thinking.budget_tokens")
    # adaptive, between_tools and later kinds: the model decides how much to think.
    return ReasoningConfig(effort=effort, budget_tokens=budget, summary=display != "omitted")


def _decode_output_format(output_config: Mapping[str, Any]) -> OutputFormat | None:
    value = output_config.get("format")
    if value is None:
        return None
    fmt = _obj(value, "output_config.format")
    kind = _str(fmt.get("type"), "output_config.format.type")
    if kind != "json_schema":
        raise invalid(
            f"'output_config.format.type' must be \"json_schema\", got {kind!r}",
            param="output_config.format.type",
        )
    return OutputFormat("json_schema", schema=_obj(fmt.get("schema"), "output_config.format.schema"))


# -- canonical to Anthropic -----------------------------------------------------------------------------
def _text_block(part: Text) -> JSON:
    block: JSON = {"type": "text", "text": part.text}
    if part.cache:
        block["cache_control"] = dict(EPHEMERAL)
    return block


def _image_block(part: Image, carried: Carried) -> JSON | None:
    url = part.url
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if sep and encoding == "base64" and media_type:
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        carried.omit("an image data URL that is not base64")
        return None
    return {"type": "image", "source": {"type": "url", "url": url}}


def _result_block(part: ToolResult, carried: Carried) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": anthropic_id(part.call_id)}
    output = part.output
    if isinstance(output, str):
        block["content"] = output
    elif any(isinstance(p, Image) for p in output):
        content: list[JSON] = []
        for p in output:
            piece = _text_block(p) if isinstance(p, Text) else _image_block(p, carried)
            if piece is not None:
                content.append(piece)
        block["content"] = content
    else:
        block["content"] = "\n".join(p.text for p in output if isinstance(p, Text))
        if any(isinstance(p, Text) and p.cache for p in output):
            block["cache_control"] = dict(EPHEMERAL)
    if part.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(parts: Sequence[Part], carried: Carried) -> list[JSON]:
    blocks: list[JSON] = []
    for part in parts:
        if isinstance(part, Text):
            if part.text:
                blocks.append(_text_block(part))
        elif isinstance(part, Refusal):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCall):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": anthropic_id(part.id),
                    "name": part.name,
                    "input": tool_input(part.arguments),
                }
            )
        elif isinstance(part, Reasoning):
            if part.origin == "anthropic" and part.opaque:
                if part.redacted:
                    blocks.append({"type": "redacted_thinking", "data": part.opaque})
                else:
                    blocks.append({"type": "thinking", "thinking": part.text, "signature": part.opaque})
            else:
                carried.omit("reasoning from another provider")
        elif isinstance(part, Image):
            carried.omit("an image in an assistant message")
        else:
            carried.omit("a tool result in an assistant message")
    return blocks


def _user_blocks(parts: Sequence[Part], carried: Carried) -> list[JSON]:
    blocks: list[JSON] = []
    for part in parts:
        if isinstance(part, Text | Refusal):
            if part.text:
                blocks.append(
                    _text_block(part) if isinstance(part, Text) else {"type": "text", "text": part.text}
                )
        elif isinstance(part, Image):
            image = _image_block(part, carried)
            if image is not None:
                blocks.append(image)
        elif isinstance(part, ToolResult):
            blocks.append(_result_block(part, carried))
        elif isinstance(part, ToolCall):
            carried.omit("a tool call in a user message")
        else:
            carried.omit("reasoning in a user message")
    return blocks


def _encode_conversation(messages: Sequence[Message], carried: Carried) -> tuple[list[JSON], list[JSON]]:
    """``system`` blocks and Anthropic messages (roles merged, tool results first)."""
    system: list[JSON] = []
    start = 0
    while start < len(messages) and messages[start].role in ("system", "developer"):
        for part in messages[start].parts:
            if isinstance(part, Text):
                if part.text:
                    system.append(_text_block(part))
            else:
                carried.omit("a non-text part of a system message")
        start += 1
    turns: list[tuple[str, list[JSON]]] = []
    for message in messages[start:]:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = (
            _assistant_blocks(message.parts, carried)
            if role == "assistant"
            else _user_blocks(message.parts, carried)
        )
        if not blocks:
            continue  # an empty message means nothing (Anthropic rejects it)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[JSON] = []
    for role, blocks in turns:
        if role == "user":
            blocks = [b for b in blocks if b["type"] == "tool_result"] + [
                b for b in blocks if b["type"] != "tool_result"
            ]
        out.append({"role": role, "content": blocks})
    return system, out


def _turn_lacks_thinking(messages: Sequence[JSON]) -> bool:
    """The assistant turn in progress (the last assistant message, followed only by tool results
    or by nothing) does not start with a thinking block: Anthropic rejects thinking then."""
    for message in reversed(messages):
        blocks: list[JSON] = message["content"]
        if message["role"] == "user":
            if any(b["type"] == "tool_result" for b in blocks):
                continue
            return False
        return blocks[0]["type"] not in ("thinking", "redacted_thinking")
    return False


def _model_thinks(target: Target) -> bool:
    """Whether the upstream model takes ``thinking``: as the route says, else every model but the
    Claude 3 ones before 3.7 (and Claude 2 / Instant)."""
    if target.reasoning is not None:
        return target.reasoning
    model = target.model.lower()
    if model.startswith(("claude-2", "claude-instant")):
        return False
    return not (model.startswith("claude-3") and not model.startswith("claude-3-7"))


def _thinking_budget(config: ReasoningConfig | None) -> int | None:
    if config is None or not config.enabled:
        return None
    if config.budget_tokens is not None:
        return max(config.budget_tokens, MIN_THINKING_BUDGET)
    if config.effort is not None:
        return EFFORT_BUDGETS.get(config.effort)
    return None


def _encode_tools(request: Request, carried: Carried) -> list[JSON]:
    tools: list[JSON] = []
    for tool in request.tools:
        if tool.kind == "hosted":
            if request.source_family == "anthropic" and tool.hosted is not None:
                tools.append(dict(tool.hosted))
            else:
                carried.omit(f"the hosted tool {tool.name}")
            continue
        wire: JSON = {"name": tool.name}
        if tool.description:
            wire["description"] = tool.description
        wire["input_schema"] = (
            dict(tool.parameters) if tool.parameters is not None else {"type": "object", "properties": {}}
        )
        if tool.cache:
            wire["cache_control"] = dict(EPHEMERAL)
        tools.append(wire)
    return tools


def _encode_tool_choice(request: Request) -> JSON | None:
    choice = request.tool_choice
    wire: JSON | None
    if choice is None:
        wire = None
    elif choice.mode == "required":
        wire = {"type": "any"}
    elif choice.mode == "tool":
        wire = {"type": "tool", "name": choice.name or ""}
    else:
        wire = {"type": choice.mode}
    if request.parallel_tool_calls is False and (wire is None or wire["type"] != "none"):
        wire = wire or {"type": "auto"}
        wire["disable_parallel_tool_use"] = True
    return wire


def _any_cache(request: Request) -> bool:
    def cached(part: Part) -> bool:
        if isinstance(part, Text):
            return part.cache
        if isinstance(part, ToolResult) and not isinstance(part.output, str):
            return any(isinstance(p, Text) and p.cache for p in part.output)
        return False

    return any(t.cache for t in request.tools) or any(cached(p) for m in request.messages for p in m.parts)


# -- upstream payloads: checked, Malformed on a shape that cannot be used --------------------------------
def _m_obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def _m_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a string")
    return value


def _m_index(payload: Mapping[str, Any]) -> int:
    index = payload.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise Malformed("a content block event without a valid index")
    return index


def _opaque_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _InputCounts:
    """Anthropic's three input counts, kept so a later report that repeats only some of them still
    adds up to every input token."""

    fresh: int = 0
    read: int = 0
    write: int = 0

    def update(self, usage: Mapping[str, Any]) -> bool:
        """Take the counts ``usage`` has; whether it had any."""
        seen = False
        if _has_count(usage, "input_tokens"):
            self.fresh, seen = _count(usage["input_tokens"]), True
        if _has_count(usage, "cache_read_input_tokens"):
            self.read, seen = _count(usage["cache_read_input_tokens"]), True
        if _has_count(usage, "cache_creation_input_tokens"):
            self.write, seen = _count(usage["cache_creation_input_tokens"]), True
        return seen

    def usage(self, output: int) -> Usage:
        return Usage(self.fresh + self.read + self.write, output, self.read, self.write)


def _decode_usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    counts = _InputCounts()
    counts.update(value)
    return counts.usage(_count(value.get("output_tokens")))


def _decode_content_block(block: Mapping[str, Any]) -> Text | ToolCall | Reasoning | None:
    kind = block.get("type")
    if kind == "text":
        return Text(_m_str(block.get("text"), "a text block's text"))
    if kind == "tool_use":
        call_id = block.get("id")
        name = _m_str(block.get("name"), "a tool_use block's name")
        arguments = _dumps(block.get("input") if block.get("input") is not None else {})
        return ToolCall(
            call_id if isinstance(call_id, str) and call_id else random_id("toolu_"), name, arguments
        )
    if kind == "thinking":
        text = _m_str(block.get("thinking"), "a thinking block's text")
        return Reasoning(text, opaque=_opaque_str(block.get("signature")) or None, origin="anthropic")
    if kind == "redacted_thinking":
        data = _m_str(block.get("data"), "a redacted_thinking block's data")
        return Reasoning("", opaque=data, origin="anthropic", redacted=True)
    return None  # server_tool_use, web_search_tool_result...: the provider's own business


# -- the stream decoder ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Block:
    index: int
    kind: BlockKind
    open: bool = True


class MessagesStreamDecoder(StreamDecoder):
    """An Anthropic upstream's SSE events as canonical events. Blocks of hosted tools
    (``server_tool_use``, ``web_search_tool_result``…) are skipped with their deltas, and the
    blocks kept are renumbered 0, 1, 2…; a delta for a block never started is :class:`Malformed`."""

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        """Upstream index -> the canonical block it became."""
        self._skipped: set[int] = set()
        self._open: _Block | None = None
        self._next = 0
        self._counts = _InputCounts()
        self._finished = False
        self._ended = False

    def _stop_open(self) -> list[StreamEvent]:
        block = self._open
        if block is None:
            return []
        block.open = False
        self._open = None
        return [BlockStop(block.index)]

    def feed(self, event: Event) -> list[StreamEvent]:
        payload = event.payload
        if payload is None:
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise Malformed("an event that is not JSON") from None
        if not isinstance(payload, dict):
            raise Malformed("an event that is not a JSON object")
        kind = payload.get("type") or event.name
        if not isinstance(kind, str):
            raise Malformed("an event whose type is not a string")
        if self._ended:
            return []
        if kind == "message_start":
            return self._message_start(payload)
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._block_delta(payload)
        if kind == "content_block_stop":
            return self._block_stop(payload)
        if kind == "message_delta":
            return self._message_delta(payload)
        if kind == "message_stop":
            self._ended = True
            return [*self._stop_open(), End()]
        if kind == "error":
            error = payload.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            error_type = error.get("type")
            return [
                StreamError(
                    message if isinstance(message, str) else "the upstream reported an error",
                    error_type if isinstance(error_type, str) else None,
                )
            ]
        return []  # ping and event types this codec does not know

    def _message_start(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        message = _m_obj(payload.get("message"), "message_start's message")
        usage_value = message.get("usage")
        usage = None
        if isinstance(usage_value, dict):
            self._counts.update(usage_value)
            usage = self._counts.usage(_count(usage_value.get("output_tokens")))
        return [Start(_opaque_str(message.get("id")), _opaque_str(message.get("model")), usage)]

    def _block_start(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        upstream = _m_index(payload)
        if upstream in self._blocks or upstream in self._skipped:
            raise Malformed(f"content block {upstream} started twice")
        block = _m_obj(payload.get("content_block"), "content_block_start's content_block")
        kind = block.get("type")
        out: list[StreamEvent] = []
        index = self._next
        if kind == "text":
            text = _m_str(block.get("text", ""), "a text block's text")
            out = [BlockStart(index, "text")]
            if text:
                out.append(BlockDelta(index, text))
            canonical: BlockKind = "text"
        elif kind == "tool_use":
            call_id = block.get("id")
            name = _m_str(block.get("name"), "a tool_use block's name")
            call_id = call_id if isinstance(call_id, str) and call_id else random_id("toolu_")
            out = [BlockStart(index, "tool", call_id=call_id, name=name)]
            given = block.get("input")
            if isinstance(given, dict) and given:  # some compatible upstreams send the whole input here
                out.append(BlockDelta(index, _dumps(given)))
            canonical = "tool"
        elif kind == "thinking":
            text = _m_str(block.get("thinking", ""), "a thinking block's text")
            out = [BlockStart(index, "reasoning")]
            if text:
                out.append(BlockDelta(index, text))
            signature = block.get("signature")
            if isinstance(signature, str) and signature:
                out.append(BlockOpaque(index, signature, "anthropic"))
            canonical = "reasoning"
        elif kind == "redacted_thinking":
            data = _m_str(block.get("data"), "a redacted_thinking block's data")
            out = [BlockStart(index, "reasoning"), BlockOpaque(index, data, "anthropic", redacted=True)]
            canonical = "reasoning"
        else:
            self._skipped.add(upstream)
            return []
        stopped = self._stop_open()
        self._next += 1
        entry = _Block(index, canonical)
        self._blocks[upstream] = entry
        self._open = entry
        return [*stopped, *out]

    def _known(self, upstream: int) -> _Block | None:
        if upstream in self._skipped:
            return None
        block = self._blocks.get(upstream)
        if block is None:
            raise Malformed(f"an event for content block {upstream}, never started")
        return block

    def _block_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        block = self._known(_m_index(payload))
        if block is None:
            return []
        delta = _m_obj(payload.get("delta"), "content_block_delta's delta")
        kind = delta.get("type")
        if kind == "citations_delta" or kind not in (
            "text_delta",
            "input_json_delta",
            "thinking_delta",
            "signature_delta",
        ):
            return []
        if not block.open:
            raise Malformed(f"a delta for content block {block.index} after its stop")
        expected = {
            "text_delta": ("text", "text"),
            "input_json_delta": ("tool", "partial_json"),
            "thinking_delta": ("reasoning", "thinking"),
            "signature_delta": ("reasoning", "signature"),
        }[kind]
        if block.kind != expected[0]:
            raise Malformed(f"a {kind} for a {block.kind} block")
        value = _m_str(delta.get(expected[1]), f"a {kind}'s {expected[1]}")
        if not value:
            return []
        if kind == "signature_delta":
            return [BlockOpaque(block.index, value, "anthropic")]
        return [BlockDelta(block.index, value)]

    def _block_stop(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        block = self._known(_m_index(payload))
        if block is None or not block.open:
            return []
        return self._stop_open()

    def _message_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        delta = payload.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        out: list[StreamEvent] = []
        reason = delta.get("stop_reason")
        if isinstance(reason, str) and reason:
            out.extend(self._stop_open())
            out.append(Finish(_STOP_IN.get(reason, "stop")))
            self._finished = True
        usage = payload.get("usage")
        if isinstance(usage, dict):
            had_input = self._counts.update(usage)
            output = _count(usage.get("output_tokens"))
            if had_input:
                out.append(UsageReport(self._counts.usage(output)))
            elif output:
                out.append(UsageReport(Usage(output_tokens=output)))
        return out

    def close(self) -> list[StreamEvent]:
        if self._finished and not self._ended:
            self._ended = True
            return [*self._stop_open(), End()]
        return []


# -- the stream encoder --------------------------------------------------------------------------------------
_TEXT_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA_MIDDLE = b',"delta":{"type":"text_delta","text":'
_TEXT_DELTA_TAIL = b"}}\n\n"
"""A text delta event around its block index and its text: what :func:`sse` makes of it."""


class MessagesStreamEncoder(StreamEncoder):
    """Canonical events as the Anthropic SSE stream Claude Code and the SDKs accumulate: every
    block gets the next wire index when it starts (two tools sharing a canonical index still get
    one each), deltas go only to the block that is open (a delta for another index is dropped:
    never a "Content block not found"), and ``message_start`` reports the request's input
    estimate when the upstream has not counted it yet."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._started = False
        self._done = False
        self._next = 0
        self._open: tuple[int, int, BlockKind] | None = None
        """The open block: (canonical index, wire index, kind)."""
        self._pending: int | None = None
        """A reasoning block's canonical index whose start waits for its first content: a
        redacted one starts as ``redacted_thinking`` with its data, and one with nothing Anthropic
        can show (another provider's opaque reasoning only) is never started."""
        self._tool_emitted = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> bytes:
        if self._done:
            return b""
        open_block = self._open
        if (
            type(event) is BlockDelta
            and open_block is not None
            and open_block[2] == "text"
            and open_block[0] == event.index
            and self._pending is None
            and event.text
        ):
            # The hot path: more text of the open block, written as _block_delta would.
            return (
                _TEXT_DELTA_HEAD
                + str(open_block[1]).encode()
                + _TEXT_DELTA_MIDDLE
                + orjson.dumps(event.text)
                + _TEXT_DELTA_TAIL
            )
        if isinstance(event, StreamError):
            self._done = True
            error_type = event.type if event.type in ANTHROPIC_ERROR_TYPES else "api_error"
            return sse("error", {"type": "error", "error": {"type": error_type, "message": event.message}})
        if isinstance(event, Start):
            if self._started:
                return b""
            return self._start(event.id, event.usage)
        if isinstance(event, UsageReport):
            self._usage = merge_usage(self._usage, event.usage)
            return b""
        if isinstance(event, Finish):
            self._finish = event.reason
            return b""
        out = b"" if self._started else self._start(None, None)
        if self._pending is not None:
            pending = self._pending
            content = isinstance(event, BlockDelta | BlockOpaque) and event.index == pending
            if not content:
                self._pending = None  # the reasoning block ended with nothing Anthropic can show
            elif isinstance(event, BlockDelta) and event.text:
                out += self._flush_pending()
            elif isinstance(event, BlockOpaque) and event.origin == "anthropic" and event.opaque:
                if event.redacted:
                    self._pending = None
                    block = {"type": "redacted_thinking", "data": event.opaque}
                    return out + self._open_block(pending, "reasoning", block)
                out += self._flush_pending()
            else:
                return out  # an empty delta, another provider's opaque: the start still waits
        if isinstance(event, BlockStart):
            return out + self._block_start(event)
        if isinstance(event, BlockDelta):
            return out + self._block_delta(event)
        if isinstance(event, BlockOpaque):
            return out + self._block_opaque(event)
        if isinstance(event, BlockStop):
            if self._open is not None and self._open[0] == event.index:
                return out + self._stop_open()
            return out
        # End
        self._done = True
        return out + self._stop_open() + self._finish_message()

    def _start(self, upstream_id: str | None, usage: Usage | None) -> bytes:
        self._started = True
        if usage is not None:
            self._usage = merge_usage(self._usage, usage)
        message: JSON = {
            "id": _message_id(upstream_id, self._ctx),
            "type": "message",
            "role": "assistant",
            "model": self._ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _wire_usage(self._usage, self._ctx),
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def _open_block(self, index: int, kind: BlockKind, content_block: JSON) -> bytes:
        out = self._stop_open()
        wire = self._next
        self._next += 1
        self._open = (index, wire, kind)
        return out + sse(
            "content_block_start",
            {"type": "content_block_start", "index": wire, "content_block": content_block},
        )

    def _flush_pending(self) -> bytes:
        index, self._pending = self._pending, None
        if index is None:
            return b""
        return self._open_block(index, "reasoning", {"type": "thinking", "thinking": "", "signature": ""})

    def _block_start(self, event: BlockStart) -> bytes:
        if event.kind == "reasoning":
            out = self._stop_open()
            self._pending = event.index
            return out
        if event.kind == "tool":
            self._tool_emitted = True
            block: JSON = {
                "type": "tool_use",
                "id": client_call_id("toolu_", event.call_id, self._ctx.new_id),
                "name": event.name or "",
                "input": {},
            }
        else:  # text, refusal
            block = {"type": "text", "text": ""}
        return self._open_block(event.index, event.kind, block)

    def _block_delta(self, event: BlockDelta) -> bytes:
        if self._open is None or self._open[0] != event.index or not event.text:
            return b""
        _, wire, kind = self._open
        if kind == "tool":
            delta = {"type": "input_json_delta", "partial_json": event.text}
        elif kind == "reasoning":
            delta = {"type": "thinking_delta", "thinking": event.text}
        else:
            delta = {"type": "text_delta", "text": event.text}
        return sse("content_block_delta", {"type": "content_block_delta", "index": wire, "delta": delta})

    def _block_opaque(self, event: BlockOpaque) -> bytes:
        if (
            self._open is None
            or self._open[0] != event.index
            or self._open[2] != "reasoning"
            or event.origin != "anthropic"
            or event.redacted
            or not event.opaque
        ):
            return b""
        delta = {"type": "signature_delta", "signature": event.opaque}
        return sse(
            "content_block_delta", {"type": "content_block_delta", "index": self._open[1], "delta": delta}
        )

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        wire = self._open[1]
        self._open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": wire})

    def _finish_message(self) -> bytes:
        usage = _wire_usage(self._usage, self._ctx)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(self._finish, self._tool_emitted), "stop_sequence": None},
            "usage": {
                "output_tokens": usage["output_tokens"],
                "input_tokens": usage["input_tokens"],
                "cache_read_input_tokens": usage["cache_read_input_tokens"],
                "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            },
        }
        return sse("message_delta", delta) + sse("message_stop", {"type": "message_stop"})


# -- the codec ---------------------------------------------------------------------------------------------
class MessagesCodec(Codec):
    api = Api.ANTHROPIC_MESSAGES

    def decode_request(self, data: Mapping[str, Any]) -> Request:
        """A client's Messages body. Document, search-result and container-upload blocks (and block
        types this codec does not know) are ``untranslatable``; hosted tools' calls and results in
        the history are ``droppable``; ``top_k`` (no other API has it) is ``droppable``."""
        notes = _Notes([], [])
        model = _str(data.get("model"), "model")
        messages: list[Message] = []
        system = _decode_system(data.get("system"))
        if system is not None:
            messages.append(system)
        for i, raw in enumerate(_list(data.get("messages"), "messages")):
            messages.extend(_decode_message(raw, i, notes))
        raw_tools = data.get("tools")
        tools = (
            tuple(_decode_tool(t, i) for i, t in enumerate(_list(raw_tools, "tools")))
            if raw_tools is not None
            else ()
        )
        tool_choice, parallel = _decode_tool_choice(data.get("tool_choice"), tools)
        output_config = data.get("output_config")
        output_config = {} if output_config is None else _obj(output_config, "output_config")
        stop = data.get("stop_sequences")
        stop_sequences = (
            tuple(_str(s, f"stop_sequences[{i}]") for i, s in enumerate(_list(stop, "stop_sequences")))
            if stop is not None
            else ()
        )
        metadata = data.get("metadata")
        user = None
        if metadata is not None:
            user = _opt_str(_obj(metadata, "metadata").get("user_id"), "metadata.user_id")
        if data.get("top_k") is not None:
            _opt_int(data.get("top_k"), "top_k")
            notes.drop("top_k")
        if data.get("mcp_servers"):
            notes.cannot("mcp_servers")
        if data.get("container") is not None:
            notes.cannot("container")
        return Request(
            model=model,
            messages=tuple(messages),
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel,
            max_output_tokens=_opt_int(data.get("max_tokens"), "max_tokens"),
            temperature=_opt_number(data.get("temperature"), "temperature"),
            top_p=_opt_number(data.get("top_p"), "top_p"),
            stop=stop_sequences,
            reasoning=_decode_reasoning(data.get("thinking"), output_config),
            output_format=_decode_output_format(output_config),
            stream=_opt_bool(data.get("stream"), "stream") or False,
            user=user,
            source_family="anthropic",
            untranslatable=tuple(notes.untranslatable),
            droppable=tuple(notes.droppable),
        )

    def encode_request(self, request: Request, target: Target, carried: Carried) -> dict[str, Any]:
        """An Anthropic body for ``request`` (the module docstring has the rules)."""
        if request.previous_response_id:
            raise Uncarriable("previous_response_id (server-side conversation state)")
        system, messages = _encode_conversation(request.messages, carried)
        tools = _encode_tools(request, carried)
        tool_choice = _encode_tool_choice(request) if tools else None
        if request.prompt_cache_key and not _any_cache(request):
            if system:
                system[-1]["cache_control"] = dict(EPHEMERAL)
            if tools:
                tools[-1]["cache_control"] = dict(EPHEMERAL)
        max_tokens = request.max_output_tokens or target.max_output_tokens
        budget = _thinking_budget(request.reasoning) if _model_thinks(target) else None
        if budget is not None and tool_choice is not None and tool_choice["type"] in ("any", "tool"):
            carried.omit("thinking with a forced tool choice")
            budget = None
        if budget is not None and _turn_lacks_thinking(messages):
            carried.omit("thinking (the turn in progress began without Anthropic thinking)")
            budget = None
        body: JSON = {"model": target.model, "max_tokens": max_tokens}
        if system:
            body["system"] = system
        body["messages"] = messages
        if tools:
            body["tools"] = tools
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        if budget is not None:
            if max_tokens <= budget:
                body["max_tokens"] = budget + target.max_output_tokens
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if request.temperature is not None:
                carried.omit("temperature with thinking")
            if request.top_p is not None:
                carried.omit("top_p with thinking")
        else:
            if request.temperature is not None:
                body["temperature"] = request.temperature
            if request.top_p is not None:
                body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if request.output_format is not None and request.output_format.kind != "text":
            carried.omit("response format")
        if request.stream:
            body["stream"] = True
        return body

    def decode_response(self, payload: Mapping[str, Any]) -> Response:
        content = payload.get("content")
        if not isinstance(content, list):
            raise Malformed("a message without a content list")
        parts: list[Text | ToolCall | Reasoning | Refusal] = []
        for raw in content:
            part = _decode_content_block(_m_obj(raw, "a content block"))
            if part is not None:
                parts.append(part)
        reason = payload.get("stop_reason")
        return Response(
            id=_opaque_str(payload.get("id")),
            model=_opaque_str(payload.get("model")),
            parts=tuple(parts),
            finish=_STOP_IN.get(reason, "stop") if isinstance(reason, str) else "stop",
            usage=_decode_usage(payload.get("usage")),
        )

    def encode_response(self, response: Response, ctx: ClientContext) -> dict[str, Any]:
        message_id = _message_id(response.id, ctx)
        content: list[JSON] = []
        tool_emitted = False
        for part in response.parts:
            if isinstance(part, Text | Refusal):
                if part.text:
                    content.append({"type": "text", "text": part.text})
            elif isinstance(part, ToolCall):
                tool_emitted = True
                content.append(
                    {
                        "type": "tool_use",
                        "id": client_call_id("toolu_", part.id, ctx.new_id),
                        "name": part.name,
                        "input": tool_input(part.arguments),
                    }
                )
            elif part.origin == "anthropic" and part.redacted and part.opaque:
                content.append({"type": "redacted_thinking", "data": part.opaque})
            elif part.text or (part.origin == "anthropic" and part.opaque):
                signature = part.opaque if part.origin == "anthropic" and part.opaque else ""
                content.append({"type": "thinking", "thinking": part.text, "signature": signature})
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": content,
            "stop_reason": _stop_reason(response.finish, tool_emitted),
            "stop_sequence": None,
            "usage": _wire_usage(response.usage, ctx),
        }

    def stream_decoder(self) -> StreamDecoder:
        return MessagesStreamDecoder()

    def stream_encoder(self, ctx: ClientContext) -> StreamEncoder:
        return MessagesStreamEncoder(ctx)


CODEC = MessagesCodec()

__all__ = [
    "CODEC",
    "EFFORT_BUDGETS",
    "MessagesCodec",
    "MessagesStreamDecoder",
    "MessagesStreamEncoder",
    "anthropic_id",
    "client_call_id",
    "tool_input",
]
