"""The OpenAI Chat Completions codec: Chat bodies, answers and chunk streams to and from the
canonical representation.

Clients are openai-SDK apps; upstreams are OpenAI and the local OpenAI-compatible servers
(llama.cpp, llama-cpp-python, vLLM, Ollama, LM Studio). What the encoders do for the latter:

* **One leading system message.** Local chat templates fail on several system messages, or on
  a system message anywhere but first. :meth:`ChatCodec.encode_request` merges the leading run
  of system / developer messages into ONE ``{"role": "system"}`` message (their texts joined by
  a blank line), and sends a system / developer message later in the conversation as a
  ``{"role": "user"}`` message with its text. The same request always gives the same bytes (the
  upstream's prompt cache keeps hitting).
* **No knobs a model does not take.** ``reasoning_effort`` only for a reasoning model (the
  route says so, or an OpenAI ``o1`` / ``o3`` / ``o4`` / ``gpt-5`` name); the output limit as
  ``max_completion_tokens`` for those names, ``max_tokens`` for every other model; no
  ``temperature`` / ``top_p`` for those names (OpenAI refuses them there: recorded as omitted).
* **Arguments as JSON.** A tool call's empty ``arguments`` are sent as ``{}`` (local templates
  parse them as JSON).
* **Usage always.** A streamed request asks for ``stream_options.include_usage`` whatever the
  client asked: the gateway needs the usage chunk.

Decoders read an upstream's bytes as hostile (every field type-checked, :class:`Malformed` on a
shape they cannot use) and repair what local servers are known to get wrong: a tool call with no
id gets a ``call_…`` id, a stream that reuses one tool index for a second call (a new id and name)
gets a second block, and ``finish_reason: "stop"`` after tool calls is read as ``tool_calls``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
    ToolKind,
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
    effort_for_budget,
    random_id,
)

TEXT_JOINER = "\n\n"
"""Joins the texts of one system / user / tool message (and the merged leading system messages)."""

_FINISH_IN: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_FINISH_OUT: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "pause": "stop",
}
_DROPPABLE = (
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "logit_bias",
    "prediction",
    "service_tier",
    "metadata",
    "verbosity",
)
"""Chat parameters other APIs lack that leave the request's meaning whole (left out, recorded)."""
_CHOICE_MODES: dict[str, Literal["auto", "none", "required"]] = {
    "auto": "auto",
    "none": "none",
    "required": "required",
}


# -- reading a client's body ----------------------------------------------------------------------
def _bad(param: str, what: str, value: Any) -> GatewayError:
    return invalid(f"'{param}' must be {what}, got {describe_type(value)}", param=param)


def _str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad(param, "a string", value)
    return value


def _opt_str(value: Any, param: str) -> str | None:
    return None if value is None else _str(value, param)


def _opt_bool(value: Any, param: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _bad(param, "true or false", value)
    return value


def _opt_int(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(param, "a non-negative integer", value)
    return value


def _opt_float(value: Any, param: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(param, "a number", value)
    return float(value)


def _or_empty(value: Any) -> Any:
    return [] if value is None else value


def _dict(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _bad(param, "an object", value)
    return value


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(param, "a list", value)
    return value


@dataclass(slots=True)
class _Notes:
    """What a decoded request cannot carry elsewhere (``untranslatable``) or may leave out
    (``droppable``), in the order first met."""

    untranslatable: list[str]
    droppable: list[str]

    def cannot(self, what: str) -> None:
        if what not in self.untranslatable:
            self.untranslatable.append(what)

    def may_drop(self, what: str) -> None:
        if what not in self.droppable:
            self.droppable.append(what)


def _text_part(part: Mapping[str, Any], param: str) -> Text:
    return Text(_str(part.get("text"), f"{param}.text"))


def _content(
    value: Any, param: str, allowed: frozenset[str], notes: _Notes
) -> tuple[Text | Image | Refusal, ...]:
    """A message's ``content``: a string, a list of parts (``allowed`` types), or null."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (Text(value),)
    parts: list[Text | Image | Refusal] = []
    for j, raw in enumerate(_list(value, param)):
        at = f"{param}[{j}]"
        part = _dict(raw, at)
        kind = _str(part.get("type"), f"{at}.type")
        if kind not in allowed:
            notes.cannot(f"a {kind} content part")
        elif kind == "text":
            parts.append(_text_part(part, at))
        elif kind == "refusal":
            parts.append(Refusal(_str(part.get("refusal"), f"{at}.refusal")))
        else:  # image_url
            parts.append(_image(part.get("image_url"), f"{at}.image_url"))
    return tuple(parts)


def _image(value: Any, param: str) -> Image:
    if isinstance(value, str):  # a bare URL, as some clients send it
        return Image(value)
    image = _dict(value, param)
    return Image(_str(image.get("url"), f"{param}.url"), _opt_str(image.get("detail"), f"{param}.detail"))


_SYSTEM_PARTS = frozenset({"text"})
_USER_PARTS = frozenset({"text", "image_url"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})


def _tool_call(raw: Any, param: str, notes: _Notes) -> ToolCall | None:
    call = _dict(raw, param)
    kind = _opt_str(call.get("type"), f"{param}.type") or "function"
    call_id = _str(call.get("id"), f"{param}.id")
    if not call_id:
        raise invalid(f"'{param}.id' must not be empty", param=f"{param}.id")
    if kind == "function":
        function = _dict(call.get("function"), f"{param}.function")
        name = _str(function.get("name"), f"{param}.function.name")
        arguments = _str(function.get("arguments"), f"{param}.function.arguments")
        return ToolCall(call_id, name, arguments)
    if kind == "custom":
        custom = _dict(call.get("custom"), f"{param}.custom")
        name = _str(custom.get("name"), f"{param}.custom.name")
        return ToolCall(call_id, name, _str(custom.get("input"), f"{param}.custom.input"), kind="custom")
    notes.cannot(f"a {kind} tool call")
    return None


def _assistant(message: Mapping[str, Any], param: str, notes: _Notes) -> tuple[Part, ...]:
    """Parts in the order reasoning, text, refusal, tool calls."""
    parts: list[Part] = []
    for key in ("reasoning_content", "reasoning"):
        reasoning = _opt_str(message.get(key), f"{param}.{key}")
        if reasoning:
            parts.append(Reasoning(reasoning))
            break
    parts.extend(_content(message.get("content"), f"{param}.content", _ASSISTANT_PARTS, notes))
    refusal = _opt_str(message.get("refusal"), f"{param}.refusal")
    if refusal:
        parts.append(Refusal(refusal))
    raw_calls = message.get("tool_calls")
    if raw_calls is not None:
        for k, raw in enumerate(_list(raw_calls, f"{param}.tool_calls")):
            call = _tool_call(raw, f"{param}.tool_calls[{k}]", notes)
            if call is not None:
                parts.append(call)
    if message.get("function_call") is not None:
        notes.cannot("a legacy function_call message")
    if message.get("audio") is not None:
        notes.cannot("an assistant audio reference")
    return tuple(parts)


def _tool_result(message: Mapping[str, Any], param: str, notes: _Notes) -> ToolResult:
    call_id = _str(message.get("tool_call_id"), f"{param}.tool_call_id")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return ToolResult(call_id, content or "")
    parts = _content(content, f"{param}.content", _SYSTEM_PARTS, notes)
    return ToolResult(call_id, tuple(p for p in parts if isinstance(p, Text)))


def _messages(value: Any, notes: _Notes) -> tuple[Message, ...]:
    messages: list[Message] = []
    results: list[Part] = []  # consecutive tool messages, grouped into one
    for i, raw in enumerate(_list(value, "messages")):
        param = f"messages[{i}]"
        message = _dict(raw, param)
        role = _str(message.get("role"), f"{param}.role")
        if role == "tool":
            results.append(_tool_result(message, param, notes))
            continue
        if results:
            messages.append(Message("tool", tuple(results)))
            results = []
        name = _opt_str(message.get("name"), f"{param}.name")
        content = message.get("content")
        if role in ("system", "developer"):
            parts: tuple[Part, ...] = _content(content, f"{param}.content", _SYSTEM_PARTS, notes)
            messages.append(Message("system" if role == "system" else "developer", parts, name))
        elif role == "user":
            parts = _content(content, f"{param}.content", _USER_PARTS, notes)
            messages.append(Message("user", parts, name))
        elif role == "assistant":
            messages.append(Message("assistant", _assistant(message, param, notes), name))
        elif role == "function":
            notes.cannot("a legacy function role message")
        else:
            raise invalid(f"'{param}.role' {role!r} is not a Chat Completions role", param=f"{param}.role")
    if results:
        messages.append(Message("tool", tuple(results)))
    return tuple(messages)


def _tool(raw: Any, param: str) -> Tool:
    tool = _dict(raw, param)
    kind = _str(tool.get("type"), f"{param}.type")
    if kind == "function":
        function = _dict(tool.get("function"), f"{param}.function")
        parameters = function.get("parameters")
        return Tool(
            _str(function.get("name"), f"{param}.function.name"),
            description=_opt_str(function.get("description"), f"{param}.function.description"),
            parameters=None if parameters is None else _dict(parameters, f"{param}.function.parameters"),
            strict=_opt_bool(function.get("strict"), f"{param}.function.strict"),
        )
    if kind == "custom":
        custom = _dict(tool.get("custom"), f"{param}.custom")
        form = custom.get("format")
        return Tool(
            _str(custom.get("name"), f"{param}.custom.name"),
            kind="custom",
            description=_opt_str(custom.get("description"), f"{param}.custom.description"),
            format=None if form is None else _dict(form, f"{param}.custom.format"),
        )
    return Tool(kind, kind="hosted", hosted=tool)


def _tool_choice(value: Any, notes: _Notes) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        mode = _CHOICE_MODES.get(value)
        if mode is not None:
            return ToolChoice(mode)
        raise invalid(f"'tool_choice' {value!r} is not auto, none or required", param="tool_choice")
    choice = _dict(value, "tool_choice")
    kind = _str(choice.get("type"), "tool_choice.type")
    if kind in ("function", "custom"):
        named = _dict(choice.get(kind), f"tool_choice.{kind}")
        return ToolChoice("tool", _str(named.get("name"), f"tool_choice.{kind}.name"))
    if kind == "allowed_tools":
        notes.cannot("tool_choice allowed_tools")
        return None
    return ToolChoice("tool", kind, hosted=True)


def _output_format(value: Any) -> OutputFormat | None:
    if value is None:
        return None
    form = _dict(value, "response_format")
    kind = _str(form.get("type"), "response_format.type")
    if kind == "text":
        return OutputFormat("text")
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind == "json_schema":
        spec = _dict(form.get("json_schema"), "response_format.json_schema")
        schema = spec.get("schema")
        return OutputFormat(
            "json_schema",
            name=_opt_str(spec.get("name"), "response_format.json_schema.name"),
            schema=None if schema is None else _dict(schema, "response_format.json_schema.schema"),
            strict=_opt_bool(spec.get("strict"), "response_format.json_schema.strict"),
        )
    raise invalid(
        f"'response_format.type' {kind!r} is not text, json_object or json_schema", "response_format.type"
    )


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(_str(s, f"stop[{k}]") for k, s in enumerate(_list(value, "stop")))


def _decode_request(data: Mapping[str, Any]) -> Request:
    notes = _Notes([], [])
    model = data.get("model")
    if model is None:
        raise invalid("missing required field 'model'", param="model", code="missing_required_parameter")
    messages = _messages(data.get("messages"), notes)
    tools = tuple(_tool(t, f"tools[{k}]") for k, t in enumerate(_list(_or_empty(data.get("tools")), "tools")))
    if data.get("functions") is not None or data.get("function_call") is not None:
        notes.cannot("legacy functions / function_call")
    n = _opt_int(data.get("n"), "n")
    if n is not None and n > 1:
        notes.cannot("n > 1 choices")
    if _opt_bool(data.get("logprobs"), "logprobs") or data.get("top_logprobs") is not None:
        notes.cannot("logprobs")
    modalities = data.get("modalities")
    if data.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        notes.cannot("audio output")
    if data.get("web_search_options") is not None:
        notes.cannot("web_search_options")
    for key in _DROPPABLE:
        if data.get(key) is not None:
            notes.may_drop(key)
    limit = _opt_int(data.get("max_completion_tokens"), "max_completion_tokens")
    if limit is None:
        limit = _opt_int(data.get("max_tokens"), "max_tokens")
    effort = _opt_str(data.get("reasoning_effort"), "reasoning_effort")
    options = data.get("stream_options")
    include_usage = None if options is None else _dict(options, "stream_options").get("include_usage")
    user = _opt_str(data.get("user"), "user")
    safety = _opt_str(data.get("safety_identifier"), "safety_identifier")
    return Request(
        model=_str(model, "model"),
        messages=messages,
        tools=tools,
        tool_choice=_tool_choice(data.get("tool_choice"), notes),
        parallel_tool_calls=_opt_bool(data.get("parallel_tool_calls"), "parallel_tool_calls"),
        max_output_tokens=limit,
        temperature=_opt_float(data.get("temperature"), "temperature"),
        top_p=_opt_float(data.get("top_p"), "top_p"),
        stop=_stop(data.get("stop")),
        reasoning=None if effort is None else ReasoningConfig(effort=effort),
        output_format=_output_format(data.get("response_format")),
        stream=bool(_opt_bool(data.get("stream"), "stream")),
        include_usage=bool(_opt_bool(include_usage, "stream_options.include_usage")),
        prompt_cache_key=_opt_str(data.get("prompt_cache_key"), "prompt_cache_key"),
        user=user if user is not None else safety,
        store=_opt_bool(data.get("store"), "store"),
        source_family="openai",
        untranslatable=tuple(notes.untranslatable),
        droppable=tuple(notes.droppable),
    )


# -- writing an upstream's body ---------------------------------------------------------------------
def _texts(parts: tuple[Part, ...] | tuple[Text | Image, ...], carried: Carried, where: str) -> str:
    """The text parts of a system / tool message, joined; an image there is left out."""
    texts: list[str] = []
    for part in parts:
        if isinstance(part, Text | Refusal):
            texts.append(part.text)
        else:
            carried.omit(where)
    return TEXT_JOINER.join(texts)


def _with_name(body: dict[str, Any], message: Message) -> dict[str, Any]:
    if message.name is not None:
        body["name"] = message.name
    return body


def _user(parts: list[Text | Image], message: Message) -> dict[str, Any]:
    if all(isinstance(p, Text) for p in parts):
        content: str | list[dict[str, Any]] = TEXT_JOINER.join(p.text for p in parts if isinstance(p, Text))
    else:
        content = []
        for part in parts:
            if isinstance(part, Text):
                content.append({"type": "text", "text": part.text})
            else:
                image: dict[str, Any] = {"url": part.url}
                if part.detail is not None:
                    image["detail"] = part.detail
                content.append({"type": "image_url", "image_url": image})
    return _with_name({"role": "user", "content": content}, message)


def _tool_message(result: ToolResult, carried: Carried) -> dict[str, Any]:
    if isinstance(result.output, str):
        output = result.output
    else:
        output = _texts(result.output, carried, "images in tool results")
    if result.is_error:
        carried.omit("tool results' error flag")
    return {"role": "tool", "tool_call_id": result.call_id, "content": output}


def _assistant_message(message: Message, carried: Carried) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, Text | Refusal):
            texts.append(part.text)
        elif isinstance(part, ToolCall):
            # A local server's template parses the arguments as JSON: "" is not JSON.
            arguments = part.arguments or "{}"
            calls.append(
                {"id": part.id, "type": "function", "function": {"name": part.name, "arguments": arguments}}
            )
        elif isinstance(part, Reasoning):
            carried.omit("reasoning")
        else:
            carried.omit(f"{type(part).__name__} parts in assistant messages")
    # "" rather than null beside tool calls: OpenAI takes either, llama-cpp-python's server
    # refuses null content (500) and some chat templates concatenate it.
    body: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        body["tool_calls"] = calls
    return _with_name(body, message)


def _conversation(messages: tuple[Message, ...], carried: Carried) -> list[dict[str, Any]]:
    """Chat messages: the leading system / developer run merged into one system message, later
    ones as user messages, each tool result its own tool message (see the module docstring)."""
    out: list[dict[str, Any]] = []
    lead = 0
    while lead < len(messages) and messages[lead].role in ("system", "developer"):
        lead += 1
    if lead:
        texts = [_texts(m.parts, carried, "images in system messages") for m in messages[:lead]]
        out.append({"role": "system", "content": TEXT_JOINER.join(t for t in texts if t)})
    for message in messages[lead:]:
        if message.role in ("system", "developer"):
            text = _texts(message.parts, carried, "images in system messages")
            out.append(_with_name({"role": "user", "content": text}, message))
        elif message.role == "assistant":
            out.append(_assistant_message(message, carried))
        else:  # user, tool: tool results as tool messages, the rest as user messages, in order
            pending: list[Text | Image] = []
            for part in message.parts:
                if isinstance(part, ToolResult):
                    if pending:
                        out.append(_user(pending, message))
                        pending = []
                    out.append(_tool_message(part, carried))
                elif isinstance(part, Text | Image):
                    pending.append(part)
                elif isinstance(part, Refusal):
                    pending.append(Text(part.text))
                else:
                    carried.omit(f"{type(part).__name__} parts in {message.role} messages")
            if pending or not any(isinstance(p, ToolResult) for p in message.parts):
                out.append(_user(pending, message))
    return _alternating(out)


def _alternating(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive plain-text user messages merged into one (their texts joined as a message's
    parts are): local chat templates that require user / assistant turns to alternate refuse two
    user messages in a row, which a system message among the turns (Claude Code sends them)
    would otherwise make. Deterministic, so the prompt stays byte-stable."""
    out: list[dict[str, Any]] = []
    for message in messages:
        last = out[-1] if out else None
        if (
            last is not None
            and message.get("role") == last.get("role") == "user"
            and isinstance(message.get("content"), str)
            and isinstance(last.get("content"), str)
            and "name" not in message
            and "name" not in last
        ):
            texts = [t for t in (last["content"], message["content"]) if t]
            out[-1] = {**last, "content": TEXT_JOINER.join(texts)}
            continue
        out.append(message)
    return out


def _tools(request: Request, carried: Carried) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for tool in request.tools:
        if tool.kind == "hosted":
            carried.omit(f"hosted tool {tool.name}")
            continue
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        # A schema is required by local servers' templates: a tool without one takes no arguments.
        parameters = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        function["parameters"] = dict(parameters)
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice_body(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode != "tool":
        return choice.mode
    if choice.hosted:
        raise Uncarriable(f"a required hosted tool ({choice.name})")
    if choice.name is None:
        raise Uncarriable("a required tool without a name")
    return {"type": "function", "function": {"name": choice.name}}


def _effort(request: Request, target: Target, carried: Carried) -> str | None:
    config = request.reasoning
    if config is None or not config.enabled:
        return None
    effort = config.effort
    if effort is None and config.budget_tokens is not None:
        effort = effort_for_budget(config.budget_tokens)
    if effort is None:
        return None
    reasons = target.reasoning if target.reasoning is not None else is_openai_reasoning_model(target.model)
    if not reasons:
        carried.omit("reasoning effort")
        return None
    return effort


def _response_format(form: OutputFormat) -> dict[str, Any]:
    if form.kind != "json_schema":
        return {"type": form.kind}
    spec: dict[str, Any] = {"name": form.name or "response"}
    if form.schema is not None:
        spec["schema"] = dict(form.schema)
    if form.strict is not None:
        spec["strict"] = form.strict
    return {"type": "json_schema", "json_schema": spec}


def _encode_request(request: Request, target: Target, carried: Carried) -> dict[str, Any]:
    if request.previous_response_id is not None:
        raise Uncarriable("previous_response_id (server-side conversation state)")
    reasoning_name = is_openai_reasoning_model(target.model)
    body: dict[str, Any] = {"model": target.model, "messages": _conversation(request.messages, carried)}
    tools = _tools(request, carried)
    if tools:
        body["tools"] = tools
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice_body(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.max_output_tokens is not None:
        body["max_completion_tokens" if reasoning_name else "max_tokens"] = request.max_output_tokens
    effort = _effort(request, target, carried)
    if effort is not None:
        body["reasoning_effort"] = effort
    for key, value in (("temperature", request.temperature), ("top_p", request.top_p)):
        if value is None:
            continue
        if reasoning_name:
            carried.omit(key)
        else:
            body[key] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.output_format is not None:
        body["response_format"] = _response_format(request.output_format)
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.prompt_cache_key is not None:
        body["prompt_cache_key"] = request.prompt_cache_key
    if request.user is not None:
        body["user"] = request.user
    return body


# -- reading an upstream's answer -------------------------------------------------------------------
def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(value: Any) -> Usage | None:
    """A Chat ``usage`` object (``None`` when absent or not an object: usage is not the answer)."""
    if not isinstance(value, dict) or not value:
        return None
    prompt = value.get("prompt_tokens_details")
    completion = value.get("completion_tokens_details")
    return Usage(
        input_tokens=_count(value.get("prompt_tokens")),
        output_tokens=_count(value.get("completion_tokens")),
        cached_tokens=_count(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        reasoning_tokens=_count(completion.get("reasoning_tokens")) if isinstance(completion, dict) else 0,
    )


def _finish(value: Any, tool_calls: bool) -> FinishReason | None:
    """A ``finish_reason`` (``None``: not finished); ``stop`` after tool calls is ``tool_calls``
    (local servers say ``stop``; a client loops on ``tool_calls``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Malformed(f"finish_reason is {describe_type(value)}")
    reason = _FINISH_IN.get(value, "stop")
    return "tool_calls" if reason == "stop" and tool_calls else reason


def _upstream_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{what} is {describe_type(value)}")
    return value


def _arguments(value: Any, what: str) -> str:
    """A tool call's arguments: JSON text (an object, as some servers send it, re-encoded)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if not isinstance(value, str):
        raise Malformed(f"{what} is {describe_type(value)}")
    return value


def _reasoning(message: Mapping[str, Any]) -> str | None:
    """``reasoning_content`` (DeepSeek, vLLM, llama.cpp), else ``reasoning`` when it is text
    (OpenRouter, newer vLLM; servers give that name other shapes too, which are ignored)."""
    text = _upstream_str(message.get("reasoning_content"), "reasoning_content")
    if text:
        return text
    other = message.get("reasoning")
    return other if isinstance(other, str) and other else None


def _response_calls(value: Any) -> list[ToolCall]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed("message.tool_calls is not a list")
    calls: list[ToolCall] = []
    for k, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise Malformed(f"tool_calls[{k}] is not an object")
        call_id = _upstream_str(raw.get("id"), f"tool_calls[{k}].id") or random_id("call_")
        kind = _upstream_str(raw.get("type"), f"tool_calls[{k}].type") or "function"
        inner = raw.get(kind)
        if kind not in ("function", "custom") or not isinstance(inner, dict):
            raise Malformed(f"tool_calls[{k}] is not a function or custom call")
        name = _upstream_str(inner.get("name"), f"tool_calls[{k}].{kind}.name")
        if not name:
            raise Malformed(f"tool_calls[{k}] has no name")
        if kind == "custom":
            text = _upstream_str(inner.get("input"), f"tool_calls[{k}].custom.input") or ""
            calls.append(ToolCall(call_id, name, text, kind="custom"))
        else:
            calls.append(ToolCall(call_id, name, _arguments(inner.get("arguments"), f"tool_calls[{k}]")))
    return calls


def _response_content(value: Any) -> list[Text]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [Text(value)]
    if not isinstance(value, list):
        raise Malformed(f"message.content is {describe_type(value)}")
    return [Text(p["text"]) for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _decode_response(payload: Mapping[str, Any]) -> Response:
    if not isinstance(payload, dict):
        raise Malformed("the answer is not an object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Malformed("the answer has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise Malformed("choices[0].message is not an object")
    parts: list[Text | ToolCall | Reasoning | Refusal] = []
    reasoning = _reasoning(message)
    if reasoning:
        parts.append(Reasoning(reasoning))
    parts.extend(_response_content(message.get("content")))
    refusal = _upstream_str(message.get("refusal"), "refusal")
    if refusal:
        parts.append(Refusal(refusal))
    calls = _response_calls(message.get("tool_calls"))
    parts.extend(calls)
    created = payload.get("created")
    return Response(
        id=_upstream_str(payload.get("id"), "id") or None,
        model=_upstream_str(payload.get("model"), "model") or None,
        parts=tuple(parts),
        finish=_finish(choices[0].get("finish_reason"), bool(calls)) or ("tool_calls" if calls else "stop"),
        usage=_usage(payload.get("usage")),
        created=created if isinstance(created, int) and not isinstance(created, bool) else None,
    )


# -- writing the client's answer -----------------------------------------------------------------------
def _usage_body(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _finish_out(reason: FinishReason, tool_calls: bool) -> str:
    out = _FINISH_OUT[reason]
    return "tool_calls" if out == "stop" and tool_calls and reason == "stop" else out


@dataclass(slots=True)
class _CallIds:
    """Client ``call_…`` ids for one answer: converted from the upstream's, never empty, never
    the same for two calls."""

    new_id: Callable[[str], str]
    used: set[str]

    def issue(self, upstream_id: str | None) -> str:
        call_id = client_call_id("call_", upstream_id, self.new_id)
        while call_id in self.used:
            call_id = self.new_id("call_")
        self.used.add(call_id)
        return call_id


def _call_body(call_id: str, kind: ToolKind, name: str, arguments: str) -> dict[str, Any]:
    if kind == "custom":
        return {"id": call_id, "type": "custom", "custom": {"name": name, "input": arguments}}
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _encode_response(response: Response, ctx: ClientContext) -> dict[str, Any]:
    answer_id = ctx.new_id("chatcmpl-")
    ids = _CallIds(ctx.new_id, set())
    texts = [p.text for p in response.parts if isinstance(p, Text)]
    refusals = [p.text for p in response.parts if isinstance(p, Refusal)]
    reasoning = "".join(p.text for p in response.parts if isinstance(p, Reasoning))
    calls = [
        _call_body(ids.issue(p.id), p.kind, p.name, p.arguments)
        for p in response.parts
        if isinstance(p, ToolCall)
    ]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": answer_id,
        "object": "chat.completion",
        "created": ctx.created if ctx.created is not None else int(time.time()),
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_out(response.finish, bool(calls)),
                "logprobs": None,
            }
        ],
        "usage": _usage_body(response.usage),
    }


# -- streams --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _ToolSlot:
    block: int
    upstream_id: str | None


@dataclass(frozen=True, slots=True)
class _HeldCall:
    call_id: str
    name: str
    arguments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _ToolDelta:
    index: int | None
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One Chat chunk's choice 0, its types checked."""

    reasoning: str | None
    content: str | None
    refusal: str | None
    tools: tuple[_ToolDelta, ...]
    finish: str | None


def _tool_deltas(value: Any) -> tuple[_ToolDelta, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Malformed("delta.tool_calls is not a list")
    deltas: list[_ToolDelta] = []
    for k, raw in enumerate(value):
        if not isinstance(raw, dict):
            raise Malformed(f"delta.tool_calls[{k}] is not an object")
        index = raw.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise Malformed(f"delta.tool_calls[{k}].index is not a non-negative integer")
        function = raw.get("function")
        if function is None:
            function = {}
        if not isinstance(function, dict):
            raise Malformed(f"delta.tool_calls[{k}].function is not an object")
        where = f"delta.tool_calls[{k}].function"
        deltas.append(
            _ToolDelta(
                index=index,
                id=_upstream_str(raw.get("id"), f"delta.tool_calls[{k}].id") or None,
                name=_upstream_str(function.get("name"), f"{where}.name") or None,
                arguments=_arguments(function.get("arguments"), f"{where}.arguments"),
            )
        )
    return tuple(deltas)


def _chunk(choices: list[Any]) -> _Chunk | None:
    """Choice 0 of a chunk (``None`` when it has none: other choices are ignored)."""
    for raw in choices:
        if not isinstance(raw, dict):
            raise Malformed("a choice is not an object")
        if raw.get("index", 0) != 0:
            continue
        delta = raw.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, dict):
            raise Malformed("choices[0].delta is not an object")
        reasoning = _reasoning(delta)
        finish = raw.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise Malformed(f"finish_reason is {describe_type(finish)}")
        return _Chunk(
            reasoning=reasoning,
            content=_upstream_str(delta.get("content"), "delta.content"),
            refusal=_upstream_str(delta.get("refusal"), "delta.refusal"),
            tools=_tool_deltas(delta.get("tool_calls")),
            finish=finish or None,
        )
    return None


def _stream_error(error: Any) -> StreamError:
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type")
        code = error.get("code")
        return StreamError(
            message if isinstance(message, str) else orjson.dumps(error).decode(),
            kind if isinstance(kind, str) else None,
            str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        )
    return StreamError(error if isinstance(error, str) else orjson.dumps(error).decode())


@dataclass(slots=True)
class _DecoderState:
    started: bool = False
    open: int | None = None
    """The open block's index."""
    open_kind: BlockKind | None = None
    open_tool: int | None = None
    """The upstream tool index of the open tool block."""
    next_block: int = 0
    tools: dict[int, _ToolSlot] = field(default_factory=dict)
    """Upstream tool index -> its (latest) block."""
    any_tool: bool = False
    finished: bool = False
    held: dict[int, _HeldCall] = field(default_factory=dict)
    """Upstream tool index -> a call that began while another tool call was open: held whole
    until the answer finishes, so that calls streamed interleaved lose no argument."""

    def copy(self) -> _DecoderState:
        return _DecoderState(
            self.started,
            self.open,
            self.open_kind,
            self.open_tool,
            self.next_block,
            dict(self.tools),
            self.any_tool,
            self.finished,
            dict(self.held),
        )


_PLAIN_DELTA_KEYS = frozenset({"content", "role"})
"""The keys of a chunk's delta that carry nothing but its text (with ``null`` for the others)."""


class ChatStreamDecoder(StreamDecoder):
    """A Chat chunk stream as canonical events: one block per run of one kind (reasoning, text,
    refusal) or per tool call, in the order they arrive; a chunk's reasoning before its text.
    A chunk that raises :class:`Malformed` changes nothing (the caller may drop it and go on)."""

    def __init__(self) -> None:
        self._s = _DecoderState()
        self._done = False

    def feed(self, event: Event) -> list[StreamEvent]:
        if self._done:
            return []
        if event.data.strip() == b"[DONE]":
            self._done = True
            return [*self._stop(self._s), *self._release(self._s), End()]
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise Malformed("a chunk that is not JSON") from None
        if not isinstance(payload, dict):
            raise Malformed("a chunk that is not an object")
        if payload.get("error") is not None:
            return [_stream_error(payload["error"])]
        choices = payload.get("choices")
        fast = self._text_delta(payload, choices)
        if fast is not None:
            return fast
        if choices is not None and not isinstance(choices, list):
            raise Malformed("choices is not a list")
        usage = _usage(payload.get("usage"))
        if usage is not None and not choices and self._s.started:
            return [UsageReport(usage)]  # the usage chunk (choices []): nothing else changes
        chunk = _chunk(choices or [])
        if chunk is None and usage is None:
            return []
        state = self._s.copy()
        out = self._apply(state, payload, chunk, usage)
        self._s = state
        return out

    def _text_delta(self, payload: dict[str, Any], choices: Any) -> list[StreamEvent] | None:
        """The common chunk, more text of the open text block, without the general path's
        copy of the state (``None``: not that chunk, take the general path)."""
        s = self._s
        if s.open_kind != "text" and s.started:
            return None
        if s.finished or payload.get("usage") is not None:
            return None
        if type(choices) is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("index", 0) != 0:
            return None
        delta = choice.get("delta")
        if type(delta) is not dict:
            return None
        content = delta.get("content")
        if type(content) is not str or (not content and s.started):
            return None
        for key in delta:
            if key not in _PLAIN_DELTA_KEYS and delta[key] is not None:
                return None  # reasoning, refusal or tool calls beside the text
        if not s.started:
            if content:
                return None  # the first chunk already carries text: the general path
            # The role chunk (``content: ""``): the answer starts, no block yet.
            start = Start(
                _upstream_str(payload.get("id"), "id") or None,
                _upstream_str(payload.get("model"), "model") or None,
            )
            s.started = True
            return [start]
        assert s.open is not None
        return [BlockDelta(s.open, content)]

    def close(self) -> list[StreamEvent]:
        if self._s.finished and not self._done:
            self._done = True
            return [*self._stop(self._s), *self._release(self._s), End()]
        return []

    def _apply(
        self, s: _DecoderState, payload: dict[str, Any], chunk: _Chunk | None, usage: Usage | None
    ) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not s.started:
            s.started = True
            out.append(
                Start(
                    _upstream_str(payload.get("id"), "id") or None,
                    _upstream_str(payload.get("model"), "model") or None,
                )
            )
        if chunk is not None:
            if chunk.reasoning:
                out += self._text(s, "reasoning", chunk.reasoning)
            if chunk.content:
                out += self._text(s, "text", chunk.content)
            if chunk.refusal:
                out += self._text(s, "refusal", chunk.refusal)
            for delta in chunk.tools:
                out += self._tool(s, delta)
            if chunk.finish is not None and not s.finished:
                out += self._stop(s)
                out += self._release(s)
                s.finished = True
                out.append(Finish(_finish(chunk.finish, s.any_tool) or "stop"))
        if usage is not None:
            out.append(UsageReport(usage))
        return out

    @staticmethod
    def _release(s: _DecoderState) -> list[StreamEvent]:
        """The held calls, each a whole block, in the upstream's index order."""
        out: list[StreamEvent] = []
        for upstream_index in sorted(s.held):
            call = s.held[upstream_index]
            index = s.next_block
            s.next_block += 1
            out.append(BlockStart(index, "tool", call_id=call.call_id, name=call.name))
            if call.arguments:
                out.append(BlockDelta(index, "".join(call.arguments)))
            out.append(BlockStop(index))
        s.held.clear()
        return out

    @staticmethod
    def _stop(s: _DecoderState) -> list[StreamEvent]:
        if s.open is None:
            return []
        index = s.open
        s.open = s.open_kind = s.open_tool = None
        return [BlockStop(index)]

    def _begin(
        self, s: _DecoderState, kind: BlockKind, call_id: str | None = None, name: str | None = None
    ) -> tuple[list[StreamEvent], int]:
        if s.finished:
            raise Malformed("output after finish_reason")
        out = self._stop(s)
        index = s.open = s.next_block
        s.open_kind = kind
        s.next_block += 1
        out.append(BlockStart(index, kind, call_id=call_id, name=name))
        return out, index

    def _text(self, s: _DecoderState, kind: BlockKind, text: str) -> list[StreamEvent]:
        if s.open is not None and s.open_kind == kind:
            return [BlockDelta(s.open, text)]
        out, index = self._begin(s, kind)
        out.append(BlockDelta(index, text))
        return out

    def _tool(self, s: _DecoderState, delta: _ToolDelta) -> list[StreamEvent]:
        index = delta.index
        if index is None:  # servers that leave the index out: a new id is a new call
            open_id = None if s.open_tool is None else s.tools[s.open_tool].upstream_id
            fresh = s.open_tool is None or (delta.id is not None and delta.id != open_id)
            index = max(s.tools, default=-1) + 1 if fresh or s.open_tool is None else s.open_tool
        slot = s.tools.get(index)
        # A server that numbers every call 0: a new id with a name is a new call.
        new_call = slot is None or (
            delta.id is not None
            and delta.name is not None
            and slot.upstream_id is not None
            and delta.id != slot.upstream_id
        )
        out: list[StreamEvent] = []
        held = s.held.get(index)
        if held is not None and delta.id in (None, held.call_id):
            if delta.arguments:
                s.held[index] = _HeldCall(held.call_id, held.name, (*held.arguments, delta.arguments))
            return out
        if new_call and ((s.open_tool is not None and s.open_kind == "tool") or s.held):
            # Another call is streaming: this one is held whole until the answer finishes.
            if delta.name is None:
                raise Malformed(f"tool call {index} starts without a name")
            if s.finished:
                raise Malformed("output after finish_reason")
            arguments = (delta.arguments,) if delta.arguments else ()
            s.held[index] = _HeldCall(delta.id or random_id("call_"), delta.name, arguments)
            s.any_tool = True
            return out
        if new_call:
            if delta.name is None:
                raise Malformed(f"tool call {index} starts without a name")
            out, block = self._begin(s, "tool", delta.id or random_id("call_"), delta.name)
            s.tools[index] = _ToolSlot(block, delta.id)
            s.open_tool = index
            s.any_tool = True
        elif slot is None or slot.block != s.open:
            raise Malformed(f"tool call {index} continues after its block stopped")
        else:
            block = slot.block
        if delta.arguments:
            out.append(BlockDelta(block, delta.arguments))
        return out


class ChatStreamEncoder(StreamEncoder):
    """Canonical events as ``chat.completion.chunk`` SSE (``data: {json}``, no ``event:`` lines),
    the grammar the openai SDK's stream helpers accumulate: a role chunk, content / reasoning /
    refusal / tool-call deltas (tool calls numbered 0.. among tool blocks), a finish chunk, the
    usage chunk when the client asked for it, ``data: [DONE]``."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._id = ctx.new_id("chatcmpl-")
        self._created = ctx.created if ctx.created is not None else int(time.time())
        self._ids = _CallIds(ctx.new_id, set())
        self._kinds: dict[int, BlockKind] = {}
        self._tools: dict[int, tuple[int, ToolKind]] = {}
        """Canonical block index -> (Chat tool index, tool kind)."""
        self._usage: Usage | None = None
        self._started = False
        self._finished = False
        self._ended = False

    def encode(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, StreamError):
            self._ended = True
            return sse(None, {"error": {"message": event.message, "type": event.type, "code": event.code}})
        if isinstance(event, UsageReport):
            self._usage = merge_usage(self._usage, event.usage)
            return b""
        if isinstance(event, Start) and event.usage is not None:
            self._usage = merge_usage(self._usage, event.usage)  # Anthropic: input counts up front
        out = self._start()
        if isinstance(event, BlockStart):
            self._kinds[event.index] = event.kind
            if event.kind == "tool":
                out += self._tool_start(event)
        elif isinstance(event, BlockDelta):
            out += self._delta(event)
        elif isinstance(event, Finish):
            out += self._finish(event.reason)
        elif isinstance(event, End):
            out += self._finish("stop")
            if self._ctx.include_usage:
                out += self._sse({"choices": [], "usage": _usage_body(self._usage)})
            self._ended = True
            out += b"data: [DONE]\n\n"
        # Start (done above), BlockStop, BlockOpaque (Chat has no opaque reasoning): nothing more.
        return out

    def _sse(self, body: dict[str, Any]) -> bytes:
        chunk = {"id": self._id, "object": "chat.completion.chunk", "created": self._created}
        chunk["model"] = self._ctx.model
        return sse(None, {**chunk, **body})

    def _choice(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._sse(
            {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        )

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._choice({"role": "assistant", "content": ""})

    def _tool_start(self, event: BlockStart) -> bytes:
        k = len(self._tools)
        kind = event.tool_kind
        self._tools[event.index] = (k, kind)
        call = _call_body(self._ids.issue(event.call_id), kind, event.name or "", "")
        return self._choice({"tool_calls": [{"index": k, **call}]})

    def _delta(self, event: BlockDelta) -> bytes:
        if not event.text:
            return b""
        kind = self._kinds.get(event.index, "text")
        if kind == "tool" and event.index in self._tools:
            k, tool_kind = self._tools[event.index]
            inner = (
                {"custom": {"input": event.text}}
                if tool_kind == "custom"
                else {"function": {"arguments": event.text}}
            )
            return self._choice({"tool_calls": [{"index": k, **inner}]})
        key = {"reasoning": "reasoning_content", "refusal": "refusal"}.get(kind, "content")
        return self._choice({key: event.text})

    def _finish(self, reason: FinishReason) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        return self._choice({}, _finish_out(reason, bool(self._tools)))


class ChatCodec(Codec):
    """OpenAI Chat Completions (``/v1/chat/completions``)."""

    api = Api.OPENAI_CHAT

    def decode_request(self, data: Mapping[str, Any]) -> Request:
        """A Chat body as a :class:`Request`. Consecutive ``tool`` messages become one tool
        message; an assistant message's parts are in the order reasoning (``reasoning_content``),
        text, refusal, tool calls. Legacy ``functions`` / ``function`` messages, ``n`` > 1,
        logprobs, audio and non-text input parts are ``untranslatable``."""
        return _decode_request(data)

    def encode_request(self, request: Request, target: Target, carried: Carried) -> dict[str, Any]:
        """A Chat body for OpenAI or a local server: see the module docstring for how system
        messages, reasoning and the output limit are written."""
        return _encode_request(request, target, carried)

    def decode_response(self, payload: Mapping[str, Any]) -> Response:
        return _decode_response(payload)

    def encode_response(self, response: Response, ctx: ClientContext) -> dict[str, Any]:
        return _encode_response(response, ctx)

    def stream_decoder(self) -> StreamDecoder:
        return ChatStreamDecoder()

    def stream_encoder(self, ctx: ClientContext) -> StreamEncoder:
        return ChatStreamEncoder(ctx)


CODEC = ChatCodec()
