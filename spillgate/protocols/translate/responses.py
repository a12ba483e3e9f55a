"""The OpenAI Responses codec (``/v1/responses``: Codex CLI's API) to and from the canonical form.

Four directions (see ``codec.py`` for the error conventions):

* :meth:`ResponsesCodec.decode_request`: a Codex / SDK body as a :class:`Request`. ``instructions``
  becomes the leading system message; consecutive assistant-side input items (assistant
  messages, ``reasoning``, ``function_call``, ``custom_tool_call``) become one assistant message,
  consecutive tool outputs one ``tool`` message. What only Responses can carry is listed in
  ``untranslatable`` (server state, item references, shell / computer / MCP items, file ids) or
  ``droppable`` (hosted tools' results in the history).
* :meth:`ResponsesCodec.encode_request`: another client's request as a Responses body. System and
  developer messages stay input items in place (no ``instructions``: byte-stable order).
* :meth:`ResponsesCodec.decode_response` / :class:`ResponsesStreamDecoder`: an upstream's answer.
* :meth:`ResponsesCodec.encode_response` / :class:`ResponsesStreamEncoder`: the client's answer,
  in Codex's grammar (the one the openai SDK's stream helpers accumulate).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from spillgate.protocols.adapter import sse
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import GatewayError, invalid
from spillgate.protocols.events import Event
from spillgate.protocols.openai_family import is_openai_reasoning_model
from spillgate.protocols.request import describe_type
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
    Role,
    Start,
    StreamError,
    StreamEvent,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolKind,
    ToolResult,
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
    effort_for_budget,
    random_id,
)

ENCRYPTED_REASONING = "reasoning.encrypted_content"
"""The ``include`` value that asks for reasoning items' ``encrypted_content``."""

_HOSTED_RESULTS = frozenset(
    {"web_search_call", "file_search_call", "image_generation_call", "code_interpreter_call"}
)
"""Input items that are a hosted tool's result: the conversation means the same without them."""

_ASSISTANT_ITEMS = frozenset({"reasoning", "function_call", "custom_tool_call"})
_OUTPUT_ITEMS = {"function_call_output": "function", "custom_tool_call_output": "custom"}
_MESSAGE_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
}
_TOOL_CHOICE_MODES = ("auto", "none", "required")
_FORMAT_KINDS = ("text", "json_object", "json_schema")

MIN_OUTPUT_TOKENS = 16
"""Responses refuses a ``max_output_tokens`` below 16: a smaller limit is raised to it."""


_INCOMPLETE_REASONS: dict[FinishReason, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}
"""The finish reasons a Responses answer reports as ``incomplete``, with their reason."""

_ECHOED = (
    "instructions",
    "metadata",
    "parallel_tool_calls",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
)
"""Response-object fields taken from ``ClientContext.extra`` when the caller kept them."""


# -- reading a client's body (careless: wrong types are a 400 naming the field) ---------------------
def _bad(param: str, expected: str, value: object) -> GatewayError:
    return invalid(f"'{param}' must be {expected}, got {describe_type(value)}", param=param)


def _opt_str(obj: Mapping[str, Any], key: str, param: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _bad(param, "a string", value)


def _req_str(obj: Mapping[str, Any], key: str, param: str) -> str:
    value = obj.get(key)
    if isinstance(value, str):
        return value
    if value is None:
        raise invalid(f"missing required field '{param}'", param=param, code="missing_required_parameter")
    raise _bad(param, "a string", value)


def _opt_bool(obj: Mapping[str, Any], key: str, param: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _bad(param, "a boolean", value)


def _opt_int(obj: Mapping[str, Any], key: str, param: str) -> int | None:
    value = obj.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _bad(param, "an integer", value)


def _opt_num(obj: Mapping[str, Any], key: str, param: str) -> float | None:
    value = obj.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise _bad(param, "a number", value)


def _opt_dict(obj: Mapping[str, Any], key: str, param: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise _bad(param, "an object", value)


def _opt_list(obj: Mapping[str, Any], key: str, param: str) -> list[Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return value
    raise _bad(param, "an array", value)


def _item(value: object, param: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _bad(param, "an object", value)


@dataclass(slots=True)
class _History:
    """The input items as messages: assistant-side items and tool outputs grouped while consecutive."""

    messages: list[Message] = field(default_factory=list)
    untranslatable: list[str] = field(default_factory=list)
    droppable: list[str] = field(default_factory=list)
    _role: Role | None = None
    _parts: list[Part] = field(default_factory=list)

    def group(self, role: Role, parts: list[Part]) -> None:
        """``parts`` join the open group of ``role`` (or start one)."""
        if self._role != role:
            self.flush()
            self._role = role
        self._parts.extend(parts)

    def single(self, role: Role, parts: list[Part]) -> None:
        self.flush()
        self.messages.append(Message(role, tuple(parts)))

    def flush(self) -> None:
        if self._role is not None:
            self.messages.append(Message(self._role, tuple(self._parts)))
            self._role = None
            self._parts = []

    def cannot(self, what: str) -> None:
        if what not in self.untranslatable:
            self.untranslatable.append(what)

    def drop(self, what: str) -> None:
        if what not in self.droppable:
            self.droppable.append(what)


def _image_part(part: Mapping[str, Any], param: str, history: _History) -> Image | None:
    url = _opt_str(part, "image_url", f"{param}.image_url")
    detail = _opt_str(part, "detail", f"{param}.detail")
    if url:
        return Image(url, detail)
    if _opt_str(part, "file_id", f"{param}.file_id"):
        history.cannot("an input_image given by file_id")
        return None
    raise invalid(f"'{param}' needs an image_url or a file_id", param=f"{param}.image_url")


def _content_part(part: Mapping[str, Any], param: str, history: _History) -> Text | Image | Refusal | None:
    kind = _req_str(part, "type", f"{param}.type")
    if kind in ("input_text", "output_text"):
        return Text(_req_str(part, "text", f"{param}.text"))
    if kind == "input_image":
        return _image_part(part, param, history)
    if kind == "refusal":
        return Refusal(_req_str(part, "refusal", f"{param}.refusal"))
    history.cannot(f"content part '{kind}'")
    return None


def _message_parts(content: object, param: str, history: _History) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise _bad(param, "a string or an array of content parts", content)
    parts: list[Part] = []
    for j, raw in enumerate(content):
        part = _content_part(_item(raw, f"{param}[{j}]"), f"{param}[{j}]", history)
        if part is not None:
            parts.append(part)
    return parts


def _output_parts(output: object, param: str, history: _History) -> str | tuple[Text | Image, ...]:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise _bad(param, "a string or an array of content parts", output)
    parts: list[Text | Image] = []
    for j, raw in enumerate(output):
        part = _content_part(_item(raw, f"{param}[{j}]"), f"{param}[{j}]", history)
        if isinstance(part, Text | Image):
            parts.append(part)
        elif isinstance(part, Refusal):
            parts.append(Text(part.text))
    return tuple(parts)


def _joined_texts(values: object, param: str) -> str:
    """``summary`` / ``content`` parts of a reasoning item: their texts joined by a blank line."""
    if values is None:
        return ""
    if not isinstance(values, list):
        raise _bad(param, "an array", values)
    texts = [
        _req_str(_item(raw, f"{param}[{j}]"), "text", f"{param}[{j}].text") for j, raw in enumerate(values)
    ]
    return "\n\n".join(texts)


def _reasoning_input(item: Mapping[str, Any], param: str) -> Reasoning:
    """A reasoning item: its summary (else its raw ``content`` text) and its encrypted content."""
    text = _joined_texts(item.get("summary"), f"{param}.summary") or _joined_texts(
        item.get("content"), f"{param}.content"
    )
    return Reasoning(
        text,
        opaque=_opt_str(item, "encrypted_content", f"{param}.encrypted_content"),
        origin="openai",
        item_id=_opt_str(item, "id", f"{param}.id"),
    )


def _call_input(item: Mapping[str, Any], kind: str, param: str) -> ToolCall:
    call_id = _req_str(item, "call_id", f"{param}.call_id")
    if not call_id:
        raise invalid(f"'{param}.call_id' must not be empty", param=f"{param}.call_id")
    custom = kind == "custom_tool_call"
    return ToolCall(
        call_id,
        _req_str(item, "name", f"{param}.name"),
        _req_str(item, "input" if custom else "arguments", f"{param}.{'input' if custom else 'arguments'}"),
        kind="custom" if custom else "function",
        namespace=_opt_str(item, "namespace", f"{param}.namespace"),
        item_id=_opt_str(item, "id", f"{param}.id"),
    )


def _input_item(raw: object, param: str, history: _History) -> None:
    item = _item(raw, param)
    kind = _opt_str(item, "type", f"{param}.type")
    if kind is None and "role" in item:
        kind = "message"
    if kind == "message":
        role_name = _req_str(item, "role", f"{param}.role")
        role = _MESSAGE_ROLES.get(role_name)
        if role is None:
            raise invalid(f"'{param}.role' must be one of {sorted(_MESSAGE_ROLES)}", param=f"{param}.role")
        parts = _message_parts(item.get("content"), f"{param}.content", history)
        if role == "assistant":
            history.group("assistant", parts)
        else:
            history.single(role, parts)
    elif kind == "reasoning":
        history.group("assistant", [_reasoning_input(item, param)])
    elif kind in ("function_call", "custom_tool_call"):
        history.group("assistant", [_call_input(item, kind, param)])
    elif kind in _OUTPUT_ITEMS:
        call_id = _req_str(item, "call_id", f"{param}.call_id")
        output = _output_parts(item.get("output"), f"{param}.output", history)
        result_kind: ToolKind = "custom" if _OUTPUT_ITEMS[kind] == "custom" else "function"
        history.group("tool", [ToolResult(call_id, output, kind=result_kind)])
    elif kind in _HOSTED_RESULTS:
        history.drop(f"{kind} in the history")
    else:
        history.cannot(f"input item '{kind}'")


def _inner_tool(raw: object, param: str, namespace: str | None, space_description: str | None) -> Tool:
    tool = _item(raw, param)
    kind = _req_str(tool, "type", f"{param}.type")
    name = _req_str(tool, "name", f"{param}.name")
    description = _opt_str(tool, "description", f"{param}.description")
    if kind == "function":
        return Tool(
            name,
            "function",
            description,
            parameters=_opt_dict(tool, "parameters", f"{param}.parameters"),
            strict=_opt_bool(tool, "strict", f"{param}.strict"),
            namespace=namespace,
            namespace_description=space_description,
        )
    if kind == "custom":
        return Tool(
            name,
            "custom",
            description,
            namespace=namespace,
            namespace_description=space_description,
            format=_opt_dict(tool, "format", f"{param}.format"),
        )
    raise invalid(f"'{param}.type' must be 'function' or 'custom' inside a namespace", param=f"{param}.type")


def _tools(data: Mapping[str, Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for i, raw in enumerate(_opt_list(data, "tools", "tools") or ()):
        param = f"tools[{i}]"
        tool = _item(raw, param)
        kind = _req_str(tool, "type", f"{param}.type")
        if kind in ("function", "custom"):
            tools.append(_inner_tool(tool, param, None, None))
        elif kind == "namespace":
            space = _req_str(tool, "name", f"{param}.name")
            space_description = _opt_str(tool, "description", f"{param}.description")
            inner = _opt_list(tool, "tools", f"{param}.tools") or []
            tools.extend(
                _inner_tool(t, f"{param}.tools[{j}]", space, space_description) for j, t in enumerate(inner)
            )
        else:
            tools.append(Tool(kind, "hosted", hosted=tool))
    return tuple(tools)


def _tool_choice(data: Mapping[str, Any]) -> ToolChoice | None:
    value = data.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _TOOL_CHOICE_MODES:
            raise invalid(f"'tool_choice' must be one of {list(_TOOL_CHOICE_MODES)}", param="tool_choice")
        return ToolChoice(value)  # type: ignore[arg-type]  # checked just above
    choice = _item(value, "tool_choice")
    kind = _req_str(choice, "type", "tool_choice.type")
    if kind in ("function", "custom"):
        return ToolChoice("tool", _req_str(choice, "name", "tool_choice.name"))
    if kind == "allowed_tools":
        return ToolChoice("auto")
    return ToolChoice("tool", kind, hosted=True)


def _reasoning_config(data: Mapping[str, Any]) -> ReasoningConfig | None:
    config = _opt_dict(data, "reasoning", "reasoning")
    if config is None:
        return None
    summary = _opt_str(config, "summary", "reasoning.summary")
    return ReasoningConfig(
        effort=_opt_str(config, "effort", "reasoning.effort"),
        summary=summary is not None and summary != "none",
    )


def _output_format(data: Mapping[str, Any]) -> OutputFormat | None:
    text = _opt_dict(data, "text", "text")
    fmt = _opt_dict(text, "format", "text.format") if text is not None else None
    if fmt is None:
        return None
    kind = _req_str(fmt, "type", "text.format.type")
    if kind not in _FORMAT_KINDS:
        raise invalid(f"'text.format.type' must be one of {list(_FORMAT_KINDS)}", param="text.format.type")
    return OutputFormat(
        kind,  # type: ignore[arg-type]  # checked just above
        name=_opt_str(fmt, "name", "text.format.name"),
        schema=_opt_dict(fmt, "schema", "text.format.schema"),
        strict=_opt_bool(fmt, "strict", "text.format.strict"),
    )


def _includes(data: Mapping[str, Any]) -> list[str]:
    values = _opt_list(data, "include", "include") or []
    for j, value in enumerate(values):
        if not isinstance(value, str):
            raise _bad(f"include[{j}]", "a string", value)
    return values


def _decode_request(data: Mapping[str, Any]) -> Request:
    model = _req_str(data, "model", "model")
    history = _History()
    instructions = _opt_str(data, "instructions", "instructions")
    if instructions:
        history.single("system", [Text(instructions)])
    value = data.get("input")
    if isinstance(value, str):
        history.single("user", [Text(value)])
    elif isinstance(value, list):
        for i, raw in enumerate(value):
            _input_item(raw, f"input[{i}]", history)
    elif value is not None:
        raise _bad("input", "a string or an array of input items", value)
    history.flush()
    previous = _opt_str(data, "previous_response_id", "previous_response_id")
    if previous:
        history.cannot("previous_response_id")
    if data.get("conversation") is not None:
        history.cannot("conversation")
    if data.get("prompt") is not None:
        history.cannot("prompt")
    user = _opt_str(data, "user", "user")
    safety = _opt_str(data, "safety_identifier", "safety_identifier")
    return Request(
        model=model,
        messages=tuple(history.messages),
        tools=_tools(data),
        tool_choice=_tool_choice(data),
        parallel_tool_calls=_opt_bool(data, "parallel_tool_calls", "parallel_tool_calls"),
        max_output_tokens=_opt_int(data, "max_output_tokens", "max_output_tokens"),
        temperature=_opt_num(data, "temperature", "temperature"),
        top_p=_opt_num(data, "top_p", "top_p"),
        reasoning=_reasoning_config(data),
        output_format=_output_format(data),
        stream=bool(_opt_bool(data, "stream", "stream")),
        prompt_cache_key=_opt_str(data, "prompt_cache_key", "prompt_cache_key"),
        user=user if user is not None else safety,
        previous_response_id=previous or None,
        store=_opt_bool(data, "store", "store"),
        include_encrypted_reasoning=ENCRYPTED_REASONING in _includes(data),
        source_family="openai",
        untranslatable=tuple(history.untranslatable),
        droppable=tuple(history.droppable),
    )


# -- writing an upstream request ------------------------------------------------------------------
def _reasons(target: Target) -> bool:
    """Whether the target model reasons: the route says so, else its name does."""
    if target.reasoning is not None:
        return target.reasoning
    return is_openai_reasoning_model(target.model)


def _image_item(image: Image) -> dict[str, Any]:
    return {"type": "input_image", "image_url": image.url, "detail": image.detail or "auto"}


def _tool_output(output: str | tuple[Text | Image, ...]) -> str | list[dict[str, Any]]:
    """A tool result's output: a string, or input parts when it has images (text joined by newlines)."""
    if isinstance(output, str):
        return output
    if not any(isinstance(part, Image) for part in output):
        return "\n".join(part.text for part in output if isinstance(part, Text))
    return [
        {"type": "input_text", "text": part.text} if isinstance(part, Text) else _image_item(part)
        for part in output
    ]


def _call_item(call: ToolCall) -> dict[str, Any]:
    if call.kind == "custom":
        item = {"type": "custom_tool_call", "call_id": call.id, "name": call.name, "input": call.arguments}
    else:
        item = {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}
    if call.namespace is not None:
        item["namespace"] = call.namespace
    return item


def _reasoning_item(reasoning: Reasoning, carried: Carried) -> dict[str, Any] | None:
    """OpenAI's own reasoning goes back as it came (id and encrypted content); any other is dropped
    (with store off, a reasoning item without its encrypted content is refused)."""
    if reasoning.origin != "openai":
        carried.omit("reasoning from another provider")
        return None
    if not reasoning.opaque or not reasoning.item_id:
        carried.omit("reasoning without its encrypted content")
        return None
    summary = [{"type": "summary_text", "text": reasoning.text}] if reasoning.text else []
    return {
        "type": "reasoning",
        "id": reasoning.item_id,
        "summary": summary,
        "encrypted_content": reasoning.opaque,
    }


def _message_items(message: Message, carried: Carried) -> list[dict[str, Any]]:
    """One message as input items, in order: runs of text / images / refusals become one message
    item with the message's role, tool calls, results and reasoning items of their own."""
    assistant = message.role == "assistant"
    role = "user" if message.role == "tool" else message.role
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []

    def flush() -> None:
        if content:
            items.append({"type": "message", "role": role, "content": list(content)})
            content.clear()

    for part in message.parts:
        if isinstance(part, Text):
            content.append({"type": "output_text" if assistant else "input_text", "text": part.text})
        elif isinstance(part, Refusal):
            content.append(
                {"type": "refusal", "refusal": part.text}
                if assistant
                else {"type": "input_text", "text": part.text}
            )
        elif isinstance(part, Image):
            if assistant:
                carried.omit("images in assistant messages")
            else:
                content.append(_image_item(part))
        else:
            flush()
            if isinstance(part, ToolCall):
                items.append(_call_item(part))
            elif isinstance(part, ToolResult):
                if part.is_error:
                    carried.omit("the error flag of tool results")
                kind = "custom_tool_call_output" if part.kind == "custom" else "function_call_output"
                items.append({"type": kind, "call_id": part.call_id, "output": _tool_output(part.output)})
            else:
                reasoning = _reasoning_item(part, carried)
                if reasoning is not None:
                    items.append(reasoning)
    flush()
    if message.name is not None:
        carried.omit("message names")
    return items


def _tool_definition(tool: Tool) -> dict[str, Any]:
    if tool.kind == "custom":
        custom: dict[str, Any] = {"type": "custom", "name": tool.name}
        if tool.description is not None:
            custom["description"] = tool.description
        if tool.format is not None:
            custom["format"] = dict(tool.format)
        return custom
    function: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = (
        dict(tool.parameters) if tool.parameters is not None else {"type": "object", "properties": {}}
    )
    # Left out, Responses may validate strictly; the APIs other clients speak never do.
    function["strict"] = bool(tool.strict)
    return function


def _encode_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """The tools in order; namespaced ones regrouped into their namespace (at its first tool)."""
    out: list[dict[str, Any]] = []
    spaces: dict[str, list[dict[str, Any]]] = {}
    for tool in tools:
        if tool.kind == "hosted":
            out.append(dict(tool.hosted) if tool.hosted is not None else {"type": tool.name})
            continue
        definition = _tool_definition(tool)
        if tool.namespace is None:
            out.append(definition)
            continue
        inner = spaces.get(tool.namespace)
        if inner is None:
            inner = spaces[tool.namespace] = []
            out.append(
                {
                    "type": "namespace",
                    "name": tool.namespace,
                    "description": tool.namespace_description or "",
                    "tools": inner,
                }
            )
        inner.append(definition)
    return out


def _encode_tool_choice(choice: ToolChoice, tools: tuple[Tool, ...]) -> str | dict[str, Any]:
    if choice.mode != "tool":
        return choice.mode
    if choice.hosted:
        return {"type": choice.name}
    custom = any(t.kind == "custom" and t.name == choice.name for t in tools)
    return {"type": "custom" if custom else "function", "name": choice.name}


def _encode_format(fmt: OutputFormat) -> dict[str, Any]:
    if fmt.kind != "json_schema":
        return {"type": fmt.kind}
    out: dict[str, Any] = {"type": "json_schema", "name": fmt.name or "output"}
    out["schema"] = dict(fmt.schema) if fmt.schema is not None else {"type": "object"}
    if fmt.strict is not None:
        out["strict"] = fmt.strict
    return out


def _encode_request(request: Request, target: Target, carried: Carried) -> dict[str, Any]:
    """The Responses body for ``request``. Messages become input items in order (no
    ``instructions``). ``store`` is false unless the client asked for it (no server-side copy of a
    translated conversation). A reasoning model gets ``reasoning`` and the encrypted-reasoning
    ``include`` but not ``temperature`` / ``top_p``, which it refuses; a model that does not
    reason gets the reverse. ``max_output_tokens`` is at least :data:`MIN_OUTPUT_TOKENS`."""
    reasons = _reasons(target)
    body: dict[str, Any] = {"model": target.model}
    body["input"] = [item for message in request.messages for item in _message_items(message, carried)]
    if request.tools:
        body["tools"] = _encode_tools(request.tools)
    if request.tool_choice is not None:
        body["tool_choice"] = _encode_tool_choice(request.tool_choice, request.tools)
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    config = request.reasoning
    wants_reasoning = config is not None and config.enabled
    if config is not None and wants_reasoning:
        if reasons:
            effort = config.effort
            if effort is None and config.budget_tokens is not None:
                effort = effort_for_budget(config.budget_tokens)
            settings: dict[str, Any] = {}
            if effort is not None:
                settings["effort"] = effort
            if config.summary:
                settings["summary"] = "auto"
            if settings:
                body["reasoning"] = settings
        else:
            carried.omit("reasoning settings (the model does not reason)")
    if reasons and (wants_reasoning or request.include_encrypted_reasoning):
        body["include"] = [ENCRYPTED_REASONING]
    body["store"] = request.store if request.store is not None else False
    if request.max_output_tokens is not None:
        body["max_output_tokens"] = max(request.max_output_tokens, MIN_OUTPUT_TOKENS)
    if request.temperature is not None or request.top_p is not None:
        if reasons:
            carried.omit("temperature and top_p (the model reasons)")
        else:
            if request.temperature is not None:
                body["temperature"] = request.temperature
            if request.top_p is not None:
                body["top_p"] = request.top_p
    if request.stop:
        carried.omit("stop sequences")
    if request.output_format is not None:
        body["text"] = {"format": _encode_format(request.output_format)}
    body["stream"] = request.stream
    if request.prompt_cache_key is not None:
        body["prompt_cache_key"] = request.prompt_cache_key
    if request.user is not None:
        body["user"] = request.user
    if request.previous_response_id is not None:
        body["previous_response_id"] = request.previous_response_id
    return body


# -- reading an upstream's answer (hostile: a shape we cannot use is Malformed) ----------------------
def _u_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise Malformed(f"{where}.{key} is {describe_type(value)}, not a string")


def _u_need_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _u_str(obj, key, where)
    if value is None:
        raise Malformed(f"{where} has no {key}")
    return value


def _u_dict(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise Malformed(f"{where}.{key} is {describe_type(value)}, not an object")


def _u_list(obj: Mapping[str, Any], key: str, where: str) -> list[Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return value
    raise Malformed(f"{where}.{key} is {describe_type(value)}, not an array")


def _u_count(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise Malformed(f"{where}.{key} is not a count")


def _u_obj(value: object, where: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise Malformed(f"{where} is {describe_type(value)}, not an object")


def _decode_usage(value: object) -> Usage | None:
    if value is None:
        return None
    usage = _u_obj(value, "usage")
    inputs = _u_dict(usage, "input_tokens_details", "usage") or {}
    outputs = _u_dict(usage, "output_tokens_details", "usage") or {}
    return Usage(
        input_tokens=_u_count(usage, "input_tokens", "usage") or 0,
        output_tokens=_u_count(usage, "output_tokens", "usage") or 0,
        cached_tokens=_u_count(inputs, "cached_tokens", "usage.input_tokens_details") or 0,
        cache_write_tokens=_u_count(inputs, "cache_write_tokens", "usage.input_tokens_details") or 0,
        reasoning_tokens=_u_count(outputs, "reasoning_tokens", "usage.output_tokens_details") or 0,
    )


def _finish(response: Mapping[str, Any], tool_calls: bool, incomplete: bool = False) -> FinishReason:
    """``incomplete`` is ``length`` (``content_filter`` when that is the reason); else tool calls or stop."""
    if incomplete or response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if tool_calls else "stop"


@dataclass(frozen=True, slots=True)
class _ItemParts:
    """An upstream output item, read: what it says in canonical parts (a message may hold several)."""

    kind: Literal["message", "reasoning", "tool", "other"]
    contents: tuple[tuple[BlockKind, str], ...] = ()
    """``message``: its content parts in order (``text`` / ``refusal``, with their text)."""
    text: str = ""
    """``reasoning``: summary (else raw content) text; ``tool``: the arguments / input."""
    opaque: str | None = None
    item_id: str | None = None
    call_id: str = ""
    name: str = ""
    tool_kind: ToolKind = "function"
    namespace: str | None = None


def _u_joined(item: Mapping[str, Any], key: str, where: str) -> str:
    """A reasoning item's ``summary`` / ``content`` texts joined by a blank line."""
    texts = []
    for j, raw in enumerate(_u_list(item, key, where) or ()):
        texts.append(_u_need_str(_u_obj(raw, f"{where}.{key}[{j}]"), "text", f"{where}.{key}[{j}]"))
    return "\n\n".join(texts)


def _read_item(item: Mapping[str, Any], where: str) -> _ItemParts:
    kind = _u_str(item, "type", where)
    item_id = _u_str(item, "id", where)
    if kind == "message":
        contents: list[tuple[BlockKind, str]] = []
        for j, raw in enumerate(_u_list(item, "content", where) or ()):
            part = _u_obj(raw, f"{where}.content[{j}]")
            part_kind = _u_str(part, "type", f"{where}.content[{j}]")
            if part_kind == "output_text":
                contents.append(("text", _u_need_str(part, "text", f"{where}.content[{j}]")))
            elif part_kind == "refusal":
                contents.append(("refusal", _u_need_str(part, "refusal", f"{where}.content[{j}]")))
        return _ItemParts("message", tuple(contents), item_id=item_id)
    if kind == "reasoning":
        text = _u_joined(item, "summary", where) or _u_joined(item, "content", where)
        return _ItemParts(
            "reasoning",
            text=text,
            opaque=_u_str(item, "encrypted_content", where),
            item_id=item_id,
        )
    if kind in ("function_call", "custom_tool_call"):
        custom = kind == "custom_tool_call"
        name = _u_str(item, "name", where)
        if not name:
            raise Malformed(f"{where} has no name")
        return _ItemParts(
            "tool",
            text=_u_str(item, "input" if custom else "arguments", where) or "",
            item_id=item_id,
            call_id=_u_str(item, "call_id", where) or item_id or random_id("call_"),
            name=name,
            tool_kind="custom" if custom else "function",
            namespace=_u_str(item, "namespace", where),
        )
    return _ItemParts("other", item_id=item_id)


def _item_parts(read: _ItemParts) -> list[Text | ToolCall | Reasoning | Refusal]:
    if read.kind == "message":
        return [Text(text) if kind == "text" else Refusal(text) for kind, text in read.contents]
    if read.kind == "reasoning":
        return [Reasoning(read.text, opaque=read.opaque, origin="openai", item_id=read.item_id)]
    if read.kind == "tool":
        call = ToolCall(
            read.call_id,
            read.name,
            read.text,
            kind=read.tool_kind,
            namespace=read.namespace,
            item_id=read.item_id,
        )
        return [call]
    return []


def _decode_response(payload: Mapping[str, Any]) -> Response:
    response = _u_obj(payload, "response")
    if response.get("status") == "failed":
        error = _u_dict(response, "error", "response") or {}
        raise Malformed(f"the response failed: {error.get('message') or 'no message'}")
    parts: list[Text | ToolCall | Reasoning | Refusal] = []
    for i, raw in enumerate(_u_list(response, "output", "response") or ()):
        parts.extend(_item_parts(_read_item(_u_obj(raw, f"output[{i}]"), f"output[{i}]")))
    created = response.get("created_at")
    return Response(
        id=_u_str(response, "id", "response"),
        model=_u_str(response, "model", "response"),
        parts=tuple(parts),
        finish=_finish(response, any(isinstance(p, ToolCall) for p in parts)),
        usage=_decode_usage(response.get("usage")),
        created=int(created) if isinstance(created, int | float) and not isinstance(created, bool) else None,
    )


# -- writing the client's answer ------------------------------------------------------------------
def _usage_object(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.input_tokens,
        # ``cache_write_tokens``: the openai SDK's schema requires it (Codex ignores it).
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _response_object(
    ctx: ClientContext,
    response_id: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish: FinishReason | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Responses ``Response`` object: ``status`` ``incomplete`` (with its reason) where ``finish``
    is one the API reports so; the request fields the caller kept in ``ctx.extra`` echoed."""
    reason = _INCOMPLETE_REASONS.get(finish) if finish is not None else None
    obj: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "incomplete" if reason is not None and status == "completed" else status,
        "error": error,
        "incomplete_details": {"reason": reason} if reason is not None else None,
        "instructions": None,
        "metadata": {},
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }
    for key in _ECHOED:
        if key in ctx.extra:
            obj[key] = ctx.extra[key]
    return obj


def _created(ctx: ClientContext) -> int:
    return ctx.created if ctx.created is not None else int(time.time())


def _text_content(kind: BlockKind, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": []}


def _message_item(item_id: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _tool_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    kind: ToolKind,
    namespace: str | None,
    status: str = "completed",
) -> dict[str, Any]:
    if kind == "custom":
        item = {
            "type": "custom_tool_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "input": arguments,
        }
    else:
        item = {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _reasoning_output(item_id: str, text: str, opaque: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if opaque is not None:
        item["encrypted_content"] = opaque
    return item


def _encode_response(response: Response, ctx: ClientContext) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []

    def flush() -> None:
        if content:
            output.append(_message_item(ctx.new_id("msg_"), list(content)))
            content.clear()

    for part in response.parts:
        if isinstance(part, Text):
            content.append(_text_content("text", part.text))
        elif isinstance(part, Refusal):
            content.append(_text_content("refusal", part.text))
        elif isinstance(part, ToolCall):
            flush()
            prefix = "ctc_" if part.kind == "custom" else "fc_"
            call_id = client_call_id("call_", part.id, ctx.new_id)
            output.append(
                _tool_item(ctx.new_id(prefix), call_id, part.name, part.arguments, part.kind, part.namespace)
            )
        else:
            flush()
            own = part.origin == "openai" and part.opaque is not None
            # OpenAI's encrypted content stays with the id it came under.
            keep_id = own and part.item_id is not None and part.item_id.startswith("rs_")
            item_id = part.item_id if keep_id and part.item_id is not None else ctx.new_id("rs_")
            output.append(_reasoning_output(item_id, part.text, part.opaque if own else None))
    flush()
    return _response_object(
        ctx,
        ctx.new_id("resp_"),
        response.created if response.created is not None else _created(ctx),
        "completed",
        output,
        _usage_object(response.usage),
        response.finish,
    )


# -- reading an upstream stream -------------------------------------------------------------------
_Key = tuple[int, str, int]
"""A block's place upstream: (output index, lane — text / refusal / tool / reasoning, content index)."""


@dataclass(slots=True)
class _OpenBlock:
    index: int
    key: _Key
    pieces: list[str] = field(default_factory=list)
    length: int = 0
    part: tuple[str, int] | None = None
    """``reasoning``: the summary / content part the last delta belonged to (a new one: "\\n\\n")."""

    def sent(self) -> str:
        return "".join(self.pieces)


def _event_payload(event: Event) -> tuple[dict[str, Any], str]:
    payload = event.payload
    if payload is None:
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise Malformed("an event that is not JSON") from None
    if not isinstance(payload, dict):
        raise Malformed(f"an event that is {describe_type(payload)}, not an object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        if kind is not None and kind != "":
            raise Malformed("an event whose type is not a string")
        kind = event.name or ""
    return payload, kind


class ResponsesStreamDecoder(StreamDecoder):
    """An upstream Responses stream as canonical events. Blocks are numbered in start order; a
    message's content parts are one block each, started at their first delta (or at the item's
    ``output_item.done`` for an upstream that sends no deltas); a reasoning item's summary parts
    are one block, joined by blank lines. Deltas for a block already stopped are Malformed."""

    def __init__(self) -> None:
        self._started = False
        self._over = False
        self._next = 0
        self._open: _OpenBlock | None = None
        self._closed: set[_Key] = set()
        self._seen: set[int] = set()
        self._current = 0
        self._tool_calls = False

    # -- the canonical events, in grammar order --
    def _begin(self, out: list[StreamEvent], response: Mapping[str, Any] | None = None) -> None:
        if not self._started:
            self._started = True
            resp = response or {}
            model = resp.get("model")
            rid = resp.get("id")
            out.append(
                Start(
                    id=rid if isinstance(rid, str) else None, model=model if isinstance(model, str) else None
                )
            )

    def _stop(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open.index))
            self._closed.add(self._open.key)
            self._open = None

    def _start_block(
        self,
        out: list[StreamEvent],
        key: _Key,
        kind: BlockKind,
        call_id: str | None = None,
        name: str | None = None,
        tool_kind: ToolKind = "function",
        namespace: str | None = None,
    ) -> _OpenBlock:
        self._stop(out)
        block = _OpenBlock(self._next, key)
        self._next += 1
        self._open = block
        self._seen.add(key[0])
        if kind == "tool":
            self._tool_calls = True
        out.append(BlockStart(block.index, kind, call_id, name, tool_kind, namespace))
        return block

    def _deliver(self, out: list[StreamEvent], block: _OpenBlock, text: str) -> None:
        if text:
            block.pieces.append(text)
            block.length += len(text)
            out.append(BlockDelta(block.index, text))

    def _remainder(self, out: list[StreamEvent], block: _OpenBlock, full: str) -> None:
        """What ``full`` (a done event's whole text) has beyond what the deltas delivered."""
        if len(full) > block.length:
            sent = block.sent()
            if full.startswith(sent):
                self._deliver(out, block, full[len(sent) :])

    def _index(self, payload: Mapping[str, Any], key: str = "output_index") -> int:
        value = _u_count(payload, key, "event")
        return value if value is not None else (self._current if key == "output_index" else 0)

    # -- events --
    def feed(self, event: Event) -> list[StreamEvent]:
        if self._over:
            return []
        payload, kind = _event_payload(event)
        out: list[StreamEvent] = []
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._begin(out, _u_dict(payload, "response", kind))
        elif kind == "response.output_item.added":
            self._added(payload, out)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self._text_delta(payload, "text" if kind == "response.output_text.delta" else "refusal", out)
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            self._tool_delta(payload, out)
        elif kind == "response.reasoning_summary_text.delta":
            self._reasoning_delta(payload, "summary", "summary_index", out)
        elif kind == "response.reasoning_text.delta":
            self._reasoning_delta(payload, "content", "content_index", out)
        elif kind == "response.output_item.done":
            self._done(payload, out)
        elif kind in ("response.completed", "response.incomplete"):
            self._completed(payload, kind, out)
        elif kind == "response.failed":
            response = _u_dict(payload, "response", kind) or {}
            error = _u_dict(response, "error", "response") or {}
            self._fail(error, out)
        elif kind == "error":
            nested = _u_dict(payload, "error", kind)  # {"type": "error", "error": {...}} or flat
            self._fail(nested if nested is not None else {**payload, "type": None}, out)
        return out

    def _added(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        item = _u_obj(payload.get("item"), "output_item.added item")
        index = self._index(payload)
        read = _read_item(item, "item") if item.get("type") != "message" else _ItemParts("message")
        self._begin(out)
        self._stop(out)
        self._current = index
        self._seen.add(index)
        if read.kind == "reasoning":
            self._start_block(out, (index, "reasoning", 0), "reasoning")
        elif read.kind == "tool":
            self._start_block(
                out, (index, "tool", 0), "tool", read.call_id, read.name, read.tool_kind, read.namespace
            )

    def _text_delta(self, payload: Mapping[str, Any], lane: BlockKind, out: list[StreamEvent]) -> None:
        delta = _u_need_str(payload, "delta", "event")
        key = (self._index(payload), lane, self._index(payload, "content_index"))
        if not delta:
            return
        self._begin(out)
        block = self._open
        if block is None or block.key != key:
            if key in self._closed:
                raise Malformed("a delta for a block already stopped")
            block = self._start_block(out, key, lane)
        self._deliver(out, block, delta)

    def _tool_delta(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        delta = _u_need_str(payload, "delta", "event")
        key = (self._index(payload), "tool", 0)
        block = self._open
        if block is None or block.key != key:
            raise Malformed("tool call arguments for an item not open")
        self._deliver(out, block, delta)

    def _reasoning_delta(
        self, payload: Mapping[str, Any], lane: str, part_key: str, out: list[StreamEvent]
    ) -> None:
        delta = _u_need_str(payload, "delta", "event")
        key = (self._index(payload), "reasoning", 0)
        part = (lane, self._index(payload, part_key))
        if not delta:
            return
        self._begin(out)
        block = self._open
        if block is None or block.key != key:
            if key in self._closed:
                raise Malformed("reasoning for a block already stopped")
            block = self._start_block(out, key, "reasoning")
        if block.part is not None and block.part != part and block.length:
            self._deliver(out, block, "\n\n")
        block.part = part
        self._deliver(out, block, delta)

    def _done(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        item = _u_obj(payload.get("item"), "output_item.done item")
        index = self._index(payload)
        read = _read_item(item, "item")
        self._begin(out)
        self._finish_item(read, index, out)

    def _finish_item(self, read: _ItemParts, index: int, out: list[StreamEvent]) -> None:
        """An item complete: what its deltas left out delivered, its blocks stopped."""
        self._seen.add(index)
        if read.kind == "message":
            for position, (lane, text) in enumerate(read.contents):
                if self._whole(out, (index, lane, position), lane, text) is not None:
                    self._stop(out)
        elif read.kind == "reasoning":
            block = self._whole(out, (index, "reasoning", 0), "reasoning", read.text)
            if block is not None and read.opaque:
                out.append(BlockOpaque(block.index, read.opaque, "openai"))
        elif read.kind == "tool":
            self._whole(
                out,
                (index, "tool", 0),
                "tool",
                read.text,
                read.call_id,
                read.name,
                read.tool_kind,
                read.namespace,
            )
        if self._open is not None and self._open.key[0] == index:
            self._stop(out)

    def _whole(
        self,
        out: list[StreamEvent],
        key: _Key,
        kind: BlockKind,
        text: str,
        call_id: str | None = None,
        name: str | None = None,
        tool_kind: ToolKind = "function",
        namespace: str | None = None,
    ) -> _OpenBlock | None:
        """The block at ``key`` brought up to ``text``: the open one topped up, a new one for a
        block never started (skipped when it would be an empty text block); ``None`` if stopped."""
        block = self._open
        if block is not None and block.key == key:
            self._remainder(out, block, text)
            return block
        if key in self._closed or (kind in ("text", "refusal") and not text):
            return None
        block = self._start_block(out, key, kind, call_id, name, tool_kind, namespace)
        self._deliver(out, block, text)
        return block

    def _completed(self, payload: Mapping[str, Any], kind: str, out: list[StreamEvent]) -> None:
        response = _u_obj(payload.get("response"), f"{kind} response")
        usage = _decode_usage(response.get("usage"))
        unseen: list[tuple[int, _ItemParts]] = []
        for i, raw in enumerate(_u_list(response, "output", "response") or ()):
            if i not in self._seen:
                unseen.append((i, _read_item(_u_obj(raw, f"output[{i}]"), f"output[{i}]")))
        self._begin(out, response)
        self._stop(out)
        for i, read in unseen:  # an upstream that sent the items only in its final response
            self._finish_item(read, i, out)
        out.append(Finish(_finish(response, self._tool_calls, kind == "response.incomplete")))
        if usage is not None:
            out.append(UsageReport(usage))
        out.append(End())
        self._over = True

    def _fail(self, error: Mapping[str, Any], out: list[StreamEvent]) -> None:
        message = error.get("message")
        code = error.get("code")
        kind = error.get("type")
        out.append(
            StreamError(
                message if isinstance(message, str) and message else "the upstream response failed",
                kind if isinstance(kind, str) else None,
                code if isinstance(code, str) else None,
            )
        )
        self._over = True

    def close(self) -> list[StreamEvent]:
        """``[]``: ``response.completed`` / ``incomplete`` carries both the finish and the end (the
        decoder ends the answer there), so a body that ends without one was cut."""
        return []


# -- writing the client's stream ------------------------------------------------------------------
@dataclass(slots=True)
class _Block:
    """A block being written: its output item and what it has said so far."""

    index: int
    kind: BlockKind
    output_index: int
    item_id: str
    call_id: str = ""
    name: str = ""
    tool_kind: ToolKind = "function"
    namespace: str | None = None
    pieces: list[str] = field(default_factory=list)
    opaque: str | None = None
    summary_open: bool = False
    delta_frame: tuple[bytes, bytes] | None = None
    """A text block's ``response.output_text.delta`` event around its sequence number and its
    delta, pre-serialised (the hot path: one per streamed token)."""

    def text(self) -> str:
        return "".join(self.pieces)


_TEXT_DELTA = "response.output_text.delta"


def _text_delta_frame(item_id: str, output_index: int) -> tuple[bytes, bytes]:
    """The bytes before a text delta event's sequence number and between it and its delta: with
    the number and ``orjson.dumps(delta)`` between them and ``_TEXT_DELTA_TAIL`` after, exactly
    what :func:`sse` makes of the event's payload (the same keys in the same order)."""
    head = (
        b"event: "
        + _TEXT_DELTA.encode()
        + b'\ndata: {"type":"'
        + _TEXT_DELTA.encode()
        + b'","sequence_number":'
    )
    middle = (
        b',"item_id":'
        + orjson.dumps(item_id)
        + b',"output_index":'
        + str(output_index).encode()
        + b',"content_index":0,"delta":'
    )
    return head, middle


_TEXT_DELTA_TAIL = b',"logprobs":[]}\n\n'


class ResponsesStreamEncoder(StreamEncoder):
    """Canonical events as a Codex-grade Responses SSE stream: ``response.created`` and
    ``response.in_progress``, each block as its own output item with its added / delta / done
    events, then ``response.completed`` (``response.incomplete`` for a ``length`` or
    ``content_filter`` finish) with the whole output and usage, or ``response.failed``."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._seq = 0
        self._id = ""
        self._created = 0
        self._started = False
        self._over = False
        self._output: list[dict[str, Any]] = []
        self._block: _Block | None = None
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse(kind, payload)

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        usage = _usage_object(self._usage) if status != "in_progress" else None
        finish = self._finish if status == "completed" else None
        return _response_object(
            self._ctx, self._id, self._created, status, list(self._output), usage, finish, error
        )

    def encode(self, event: StreamEvent) -> bytes:
        if self._over:
            return b""
        block = self._block
        if (
            block is not None
            and (frame := block.delta_frame) is not None
            and type(event) is BlockDelta
            and block.index == event.index
            and event.text
        ):
            # The hot path: more text of the open message (see _text_delta_frame).
            block.pieces.append(event.text)
            seq = self._seq
            self._seq = seq + 1
            return frame[0] + str(seq).encode() + frame[1] + orjson.dumps(event.text) + _TEXT_DELTA_TAIL
        out: list[bytes] = []
        if isinstance(event, Start):
            self._start(out)
            if event.usage is not None:
                self._usage = merge_usage(self._usage, event.usage)
        elif isinstance(event, BlockStart):
            self._start(out)
            self._stop(out)
            self._open(event, out)
        elif isinstance(event, BlockDelta):
            self._start(out)
            self._delta(event, out)
        elif isinstance(event, BlockOpaque):
            block = self._block
            if block is not None and block.index == event.index and event.origin == "openai":
                block.opaque = event.opaque
        elif isinstance(event, BlockStop):
            if self._block is not None and self._block.index == event.index:
                self._stop(out)
        elif isinstance(event, Finish):
            self._finish = event.reason
        elif isinstance(event, UsageReport):
            self._usage = merge_usage(self._usage, event.usage)
        elif isinstance(event, End):
            self._start(out)
            self._stop(out)
            status = self._response("completed")
            kind = "response.incomplete" if status["status"] == "incomplete" else "response.completed"
            out.append(self._event(kind, response=status))
            self._over = True
        else:
            self._start(out)
            error = {"code": event.code or "server_error", "message": event.message}
            out.append(self._event("response.failed", response=self._response("failed", error)))
            self._over = True
        return b"".join(out)

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        self._id = self._ctx.new_id("resp_")
        self._created = _created(self._ctx)
        response = self._response("in_progress")  # the same object in both events
        out.append(self._event("response.created", response=response))
        out.append(self._event("response.in_progress", response=response))

    def _open(self, start: BlockStart, out: list[bytes]) -> None:
        output_index = len(self._output)
        new_id = self._ctx.new_id
        if start.kind == "tool":
            custom = start.tool_kind == "custom"
            block = _Block(
                start.index,
                "tool",
                output_index,
                new_id("ctc_" if custom else "fc_"),
                client_call_id("call_", start.call_id, new_id),
                start.name or "",
                start.tool_kind,
                start.namespace,
            )
            item = _tool_item(
                block.item_id, block.call_id, block.name, "", block.tool_kind, block.namespace, "in_progress"
            )
        elif start.kind == "reasoning":
            block = _Block(start.index, "reasoning", output_index, new_id("rs_"))
            item = _reasoning_output(block.item_id, "", None)
        else:
            block = _Block(start.index, start.kind, output_index, new_id("msg_"))
            item = _message_item(block.item_id, [], "in_progress")
            if start.kind == "text":
                block.delta_frame = _text_delta_frame(block.item_id, output_index)
        self._block = block
        out.append(self._event("response.output_item.added", output_index=output_index, item=item))
        if start.kind in ("text", "refusal"):
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=block.item_id,
                    output_index=output_index,
                    content_index=0,
                    part=_text_content(start.kind, ""),
                )
            )

    def _delta(self, delta: BlockDelta, out: list[bytes]) -> None:
        block = self._block
        if block is None or block.index != delta.index or not delta.text:
            return
        block.pieces.append(delta.text)
        where = {"item_id": block.item_id, "output_index": block.output_index}
        if block.kind == "text":
            out.append(
                self._event(
                    "response.output_text.delta", **where, content_index=0, delta=delta.text, logprobs=[]
                )
            )
        elif block.kind == "refusal":
            out.append(self._event("response.refusal.delta", **where, content_index=0, delta=delta.text))
        elif block.kind == "tool":
            kind = (
                "response.custom_tool_call_input.delta"
                if block.tool_kind == "custom"
                else "response.function_call_arguments.delta"
            )
            out.append(self._event(kind, **where, delta=delta.text))
        else:
            if not block.summary_open:
                block.summary_open = True
                out.append(
                    self._event(
                        "response.reasoning_summary_part.added",
                        **where,
                        summary_index=0,
                        part={"type": "summary_text", "text": ""},
                    )
                )
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta", **where, summary_index=0, delta=delta.text
                )
            )

    def _stop(self, out: list[bytes]) -> None:
        block = self._block
        if block is None:
            return
        self._block = None
        text = block.text()
        where = {"item_id": block.item_id, "output_index": block.output_index}
        if block.kind in ("text", "refusal"):
            part = _text_content(block.kind, text)
            if block.kind == "text":
                out.append(
                    self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
                )
            else:
                out.append(self._event("response.refusal.done", **where, content_index=0, refusal=text))
            out.append(self._event("response.content_part.done", **where, content_index=0, part=part))
            item = _message_item(block.item_id, [part])
        elif block.kind == "tool":
            if block.tool_kind == "custom":
                out.append(self._event("response.custom_tool_call_input.done", **where, input=text))
            else:
                out.append(self._event("response.function_call_arguments.done", **where, arguments=text))
            item = _tool_item(
                block.item_id, block.call_id, block.name, text, block.tool_kind, block.namespace
            )
        else:
            if block.summary_open:
                out.append(
                    self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
                )
                out.append(
                    self._event(
                        "response.reasoning_summary_part.done",
                        **where,
                        summary_index=0,
                        part={"type": "summary_text", "text": text},
                    )
                )
            item = _reasoning_output(block.item_id, text, block.opaque)
        self._output.append(item)
        out.append(self._event("response.output_item.done", output_index=block.output_index, item=item))


class ResponsesCodec(Codec):
    api = Api.OPENAI_RESPONSES

    def decode_request(self, data: Mapping[str, Any]) -> Request:
        return _decode_request(data)

    def encode_request(self, request: Request, target: Target, carried: Carried) -> dict[str, Any]:
        return _encode_request(request, target, carried)

    def decode_response(self, payload: Mapping[str, Any]) -> Response:
        return _decode_response(payload)

    def encode_response(self, response: Response, ctx: ClientContext) -> dict[str, Any]:
        return _encode_response(response, ctx)

    def stream_decoder(self) -> StreamDecoder:
        return ResponsesStreamDecoder()

    def stream_encoder(self, ctx: ClientContext) -> StreamEncoder:
        return ResponsesStreamEncoder(ctx)


CODEC = ResponsesCodec()
