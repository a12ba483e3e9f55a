"""Shared pieces of the cross-API translation tests (``test_directions.py``, ``test_properties.py``):
deterministic client contexts, upstream SSE bodies, the translator run end to end, the client
stream read back as events, and the real SDK stream helpers of each client API over an in-process
transport (no network).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2 as httpx
import openai
import orjson
from hypothesis import strategies as st

from spillgate.protocols.adapter import sse
from spillgate.protocols.apis import Api
from spillgate.protocols.events import parse_event, split_events
from spillgate.protocols.translate.canonical import (
    Image,
    Message,
    Part,
    Reasoning,
    Refusal,
    Request,
    Role,
    Text,
    Tool,
    ToolCall,
    ToolResult,
)
from spillgate.protocols.translate.codec import ClientContext
from spillgate.protocols.translate.tools import ToolMap
from spillgate.protocols.translate.translator import (
    ANY_FIT,
    AnswerTranslator,
    Encoded,
    Fit,
    decode_request,
    encode_request,
)

CHAT = Api.OPENAI_CHAT
RESPONSES = Api.OPENAI_RESPONSES
MESSAGES = Api.ANTHROPIC_MESSAGES
SHORT = {CHAT: "chat", RESPONSES: "responses", MESSAGES: "messages"}

UPSTREAM_MODEL = "up-model"
"""The model a route names upstream (not a reasoning-model name: no knob is left out for it)."""
CREATED = 1700000000

JSON = dict[str, Any]
Wire = list[tuple[str | None, Any]]
"""A stream as (SSE event name, decoded data) pairs; ``[DONE]`` as ``(None, "[DONE]")``."""


def counting_ids() -> Callable[[str], str]:
    """``resp_1``, ``msg_1``, ``msg_2``…: one counter per prefix."""
    counts: dict[str, int] = {}

    def new_id(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}{counts[prefix]}"

    return new_id


def client_context(
    model: str = UPSTREAM_MODEL, include_usage: bool = False, estimated_input_tokens: int = 0
) -> ClientContext:
    return ClientContext(
        model=model,
        include_usage=include_usage,
        estimated_input_tokens=estimated_input_tokens,
        new_id=counting_ids(),
        created=CREATED,
    )


# -- requests -------------------------------------------------------------------------------------------
def translate_request(
    client: Api,
    upstream: Api,
    body: Mapping[str, Any],
    model: str = UPSTREAM_MODEL,
    fit: Fit = ANY_FIT,
    prefill: str | None = None,
) -> Encoded:
    """A client's body of ``client`` as the body ``upstream`` is sent (decode, then encode)."""
    return encode_request(decode_request(client, body), upstream, model, fit, prefill)


def upstream_body(encoded: Encoded) -> JSON:
    value = orjson.loads(encoded.body)
    assert isinstance(value, dict)
    return value


def tool_map(client: Api, upstream: Api, body: Mapping[str, Any]) -> ToolMap:
    """The map back to the client's tools for a request (what the answer is translated with)."""
    return translate_request(client, upstream, body).tools


# -- upstream streams ---------------------------------------------------------------------------------
def upstream_sse(api: Api, events: Iterable[Any]) -> bytes:
    """An upstream's SSE body: Chat chunks as ``data:`` lines (a ``str`` as is, for ``[DONE]``),
    Responses and Messages events named by their ``type``."""
    out: list[bytes] = []
    for event in events:
        if isinstance(event, bytes):
            out.append(event)
        elif isinstance(event, str):
            out.append(b"data: " + event.encode() + b"\n\n")
        elif api is CHAT:
            out.append(sse(None, event))
        else:
            out.append(sse(str(event.get("type")), event))
    return b"".join(out)


def translate_stream(
    upstream: Api,
    client: Api,
    body: bytes,
    tools: ToolMap | None = None,
    ctx: ClientContext | None = None,
    piece: int = 0,
) -> bytes:
    """The client's SSE bytes for an upstream's SSE ``body``, fed whole or ``piece`` bytes at a time."""
    translator = AnswerTranslator(upstream, client, ctx or client_context(), tools or ToolMap())
    stream = translator.stream()
    step = piece or len(body) or 1
    out = [stream.feed(body[k : k + step]) for k in range(0, len(body), step)]
    out.append(stream.close())
    return b"".join(out)


def translate_response(
    upstream: Api, client: Api, payload: Mapping[str, Any], tools: ToolMap | None = None
) -> JSON:
    translator = AnswerTranslator(upstream, client, client_context(), tools or ToolMap())
    value = orjson.loads(translator.response(orjson.dumps(payload)))
    assert isinstance(value, dict)
    return value


def wire(body: bytes) -> Wire:
    """A client stream as (event name, data) pairs, in order."""
    out: Wire = []
    for raw in split_events(body):
        event = parse_event(raw)
        if event.data == b"[DONE]":
            out.append((event.name, "[DONE]"))
        else:
            out.append((event.name, orjson.loads(event.data)))
    return out


# -- the real SDKs read a client stream --------------------------------------------------------------
def _transport(body: bytes) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _openai(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="x", base_url="http://127.0.0.1:9/v1", max_retries=0, http_client=_transport(body)
    )


def sdk_responses(body: bytes) -> Any:
    """openai ``responses.stream(...)``'s final Response for a Responses client stream (the
    ``response.incomplete`` event's response where the answer ended so: the helper's
    ``get_final_response`` only knows ``response.completed``)."""
    incomplete: Any = None
    with _openai(body).responses.stream(model="client-model", input="hi") as stream:
        for event in stream:
            if event.type == "response.incomplete":
                incomplete = event.response
        return incomplete if incomplete is not None else stream.get_final_response()


def sdk_chat(body: bytes) -> Any:
    """openai ``chat.completions.stream(...)``'s final ChatCompletion for a Chat client stream (the
    helper raises on a ``length`` finish, with the completion it accumulated)."""
    with _openai(body).chat.completions.stream(
        model="client-model",
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
    ) as stream:
        for _ in stream:
            pass
        try:
            return stream.get_final_completion()
        except openai.LengthFinishReasonError as exc:
            return exc.completion


def sdk_messages(body: bytes) -> Any:
    """anthropic ``messages.stream(...)``'s final Message for a Messages client stream."""
    client = anthropic.Anthropic(
        api_key="x", base_url="http://127.0.0.1:9", max_retries=0, http_client=_transport(body)
    )
    with client.messages.stream(
        model="client-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


SDK_FINAL: dict[Api, Callable[[bytes], Any]] = {
    RESPONSES: sdk_responses,
    CHAT: sdk_chat,
    MESSAGES: sdk_messages,
}


def final_text_and_calls(client: Api, final: Any) -> tuple[str, list[tuple[str, str, str]]]:
    """The final object's text and its tool calls as (call id, name, arguments or raw input)."""
    calls: list[tuple[str, str, str]] = []
    if client is RESPONSES:
        for item in final.output:
            if item.type == "function_call":
                calls.append((item.call_id, item.name, item.arguments))
            elif item.type == "custom_tool_call":
                calls.append((item.call_id, item.name, item.input))
        return final.output_text, calls
    if client is CHAT:
        message = final.choices[0].message
        for call in message.tool_calls or []:
            calls.append((call.id, call.function.name, call.function.arguments))
        return message.content or "", calls
    text = ""
    for block in final.content:
        if block.type == "text":
            text += block.text
        elif block.type == "tool_use":
            calls.append((block.id, block.name, orjson.dumps(block.input).decode()))
    return text, calls


# -- upstream streams from a plan -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UpText:
    pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpReasoning:
    pieces: tuple[str, ...]
    opaque: str | None = None
    """Responses ``encrypted_content`` / Anthropic ``signature`` (Chat has none)."""


@dataclass(frozen=True, slots=True)
class UpTool:
    call_id: str
    name: str
    pieces: tuple[str, ...]
    """The argument JSON, in the pieces it streams in."""


UpBlock = UpText | UpReasoning | UpTool


@dataclass(frozen=True, slots=True)
class UpUsage:
    """Usage in OpenAI's convention (``input`` includes ``cached``; ``output`` includes ``reasoning``)."""

    input: int
    output: int
    cached: int = 0
    reasoning: int = 0


@dataclass(frozen=True, slots=True)
class UpPlan:
    """What an upstream says, whatever its API: blocks, why it stopped, its usage."""

    blocks: tuple[UpBlock, ...]
    finish: Literal["stop", "length", "tool_calls"] = "stop"
    usage: UpUsage | None = None
    upstream_id: str = "up_1"
    quirk: int = 0
    """How the upstream's server writes it, beside the API's plain grammar (0). Chat: 1 the usage
    in the finish chunk, 2 no ``[DONE]`` (llama.cpp, vLLM, Ollama do both). Responses: 1 items
    only as their ``output_item.done`` (no deltas), 2 the output only in ``response.completed``.
    Messages: 1 a tool's whole input in its ``content_block_start`` (compatible servers)."""


_CHAT_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
_MESSAGES_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def chat_chunk(
    delta: JSON | None = None, finish: str | None = None, usage: JSON | None = None, model: str = "up-model"
) -> JSON:
    """One upstream Chat chunk (choice 0 with ``delta``; no choices when only ``usage`` is given)."""
    chunk: JSON = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model}
    if delta is None and finish is None and usage is not None:
        chunk["choices"] = []
    else:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def chat_usage(usage: UpUsage) -> JSON:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


def chat_events(plan: UpPlan) -> list[Any]:
    """An OpenAI Chat stream: the role chunk, deltas, the finish chunk, the usage chunk, ``[DONE]``."""
    events: list[Any] = [chat_chunk({"role": "assistant", "content": ""})]
    tools = 0
    for block in plan.blocks:
        if isinstance(block, UpText):
            events += [chat_chunk({"content": p}) for p in block.pieces]
        elif isinstance(block, UpReasoning):
            events += [chat_chunk({"reasoning_content": p}) for p in block.pieces]
        else:
            first, *rest = block.pieces or ("",)
            head = {"index": tools, "id": block.call_id, "type": "function"}
            events.append(
                chat_chunk({"tool_calls": [{**head, "function": {"name": block.name, "arguments": first}}]})
            )
            events += [
                chat_chunk({"tool_calls": [{"index": tools, "function": {"arguments": p}}]}) for p in rest
            ]
            tools += 1
    usage = None if plan.usage is None else chat_usage(plan.usage)
    if plan.quirk == 1:
        events.append(chat_chunk({}, _CHAT_FINISH[plan.finish], usage))
    else:
        events.append(chat_chunk({}, _CHAT_FINISH[plan.finish]))
        if usage is not None:
            events.append(chat_chunk(usage=usage))
    if plan.quirk != 2:
        events.append("[DONE]")
    return events


def responses_usage(usage: UpUsage) -> JSON:
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.input + usage.output,
    }


def _responses_item(block: UpBlock, k: int, done: bool) -> JSON:
    text = "".join(block.pieces)
    if isinstance(block, UpText):
        content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
        status = "completed" if done else "in_progress"
        return {
            "type": "message",
            "id": f"msg_up{k}",
            "status": status,
            "role": "assistant",
            "content": content,
        }
    if isinstance(block, UpReasoning):
        item: JSON = {"type": "reasoning", "id": f"rs_up{k}", "summary": []}
        if done:
            item["summary"] = [{"type": "summary_text", "text": text}]
            if block.opaque is not None:
                item["encrypted_content"] = block.opaque
        return item
    return {
        "type": "function_call",
        "id": f"fc_up{k}",
        "call_id": block.call_id,
        "name": block.name,
        "arguments": text if done else "",
        "status": "completed" if done else "in_progress",
    }


def _responses_object(plan: UpPlan, status: str, output: list[JSON]) -> JSON:
    incomplete = status == "incomplete"
    return {
        "id": f"resp_{plan.upstream_id}",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "up-model",
        "output": output,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "usage": None if plan.usage is None or status == "in_progress" else responses_usage(plan.usage),
    }


def responses_events(plan: UpPlan) -> list[JSON]:
    """An OpenAI Responses stream, every event the API sends for each item, numbered."""
    events: list[JSON] = [
        {"type": "response.created", "response": _responses_object(plan, "in_progress", [])},
        {"type": "response.in_progress", "response": _responses_object(plan, "in_progress", [])},
    ]
    output: list[JSON] = []
    for k, block in enumerate(plan.blocks):
        at: JSON = {"output_index": k}
        if plan.quirk:
            output.append(_responses_item(block, k, True))
            if plan.quirk == 1:
                events.append({"type": "response.output_item.done", **at, "item": output[-1]})
            continue
        events.append({"type": "response.output_item.added", **at, "item": _responses_item(block, k, False)})
        item_id = _responses_item(block, k, False)["id"]
        text = "".join(block.pieces)
        where = {"item_id": item_id, **at}
        if isinstance(block, UpText):
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append({"type": "response.content_part.added", **where, "content_index": 0, "part": part})
            for p in block.pieces:
                events.append({"type": "response.output_text.delta", **where, "content_index": 0, "delta": p})
            events.append({"type": "response.output_text.done", **where, "content_index": 0, "text": text})
            done_part = {**part, "text": text}
            events.append(
                {"type": "response.content_part.done", **where, "content_index": 0, "part": done_part}
            )
        elif isinstance(block, UpReasoning):
            part = {"type": "summary_text", "text": ""}
            events.append(
                {"type": "response.reasoning_summary_part.added", **where, "summary_index": 0, "part": part}
            )
            for p in block.pieces:
                events.append(
                    {"type": "response.reasoning_summary_text.delta", **where, "summary_index": 0, "delta": p}
                )
            events.append(
                {"type": "response.reasoning_summary_text.done", **where, "summary_index": 0, "text": text}
            )
            done_part = {**part, "text": text}
            events.append(
                {
                    "type": "response.reasoning_summary_part.done",
                    **where,
                    "summary_index": 0,
                    "part": done_part,
                }
            )
        else:
            for p in block.pieces:
                events.append({"type": "response.function_call_arguments.delta", **where, "delta": p})
            events.append({"type": "response.function_call_arguments.done", **where, "arguments": text})
        item = _responses_item(block, k, True)
        output.append(item)
        events.append({"type": "response.output_item.done", **at, "item": item})
    status = "incomplete" if plan.finish == "length" else "completed"
    events.append({"type": f"response.{status}", "response": _responses_object(plan, status, output)})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def messages_events(plan: UpPlan) -> list[JSON]:
    """An Anthropic Messages stream: ``message_start`` with the input usage (cache reads apart), a
    ping, the content blocks, ``message_delta`` with the stop reason and output usage, ``message_stop``."""
    usage = plan.usage
    start_usage: JSON = {"input_tokens": 0, "output_tokens": 0}
    if usage is not None:
        start_usage = {
            "input_tokens": usage.input - usage.cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached,
            "output_tokens": 1,
        }
    message: JSON = {
        "id": f"msg_{plan.upstream_id}",
        "type": "message",
        "role": "assistant",
        "model": "up-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[JSON] = [{"type": "message_start", "message": message}, {"type": "ping"}]
    for k, block in enumerate(plan.blocks):
        if isinstance(block, UpText):
            start: JSON = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in block.pieces]
        elif isinstance(block, UpReasoning):
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in block.pieces]
            if block.opaque is not None:
                deltas.append({"type": "signature_delta", "signature": block.opaque})
        elif plan.quirk == 1:
            whole = orjson.loads("".join(block.pieces) or "{}")
            start = {"type": "tool_use", "id": block.call_id, "name": block.name, "input": whole}
            deltas = []
        else:
            start = {"type": "tool_use", "id": block.call_id, "name": block.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in block.pieces]
        events.append({"type": "content_block_start", "index": k, "content_block": start})
        events += [{"type": "content_block_delta", "index": k, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": k})
    end_usage = {"output_tokens": usage.output if usage is not None else 0}
    delta = {"stop_reason": _MESSAGES_STOP[plan.finish], "stop_sequence": None}
    events.append({"type": "message_delta", "delta": delta, "usage": end_usage})
    events.append({"type": "message_stop"})
    return events


UPSTREAM_EVENTS: dict[Api, Callable[[UpPlan], list[Any]]] = {
    CHAT: chat_events,
    RESPONSES: responses_events,
    MESSAGES: messages_events,
}


def upstream_stream(api: Api, plan: UpPlan) -> bytes:
    return upstream_sse(api, UPSTREAM_EVENTS[api](plan))


# -- the SDKs' final objects, field by field -----------------------------------------------------------
def _responses_item_fields(item: Any) -> JSON:
    if item.type == "reasoning":
        summary = [s.text for s in item.summary]
        return {"type": "reasoning", "id": item.id, "summary": summary, "encrypted": item.encrypted_content}
    if item.type == "message":
        texts = [c.text if c.type == "output_text" else f"refusal:{c.refusal}" for c in item.content]
        return {"type": "message", "id": item.id, "texts": texts}
    if item.type == "function_call":
        return {
            "type": "function_call",
            "id": item.id,
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "namespace": getattr(item, "namespace", None),
        }
    if item.type == "custom_tool_call":
        return {
            "type": "custom_tool_call",
            "id": item.id,
            "call_id": item.call_id,
            "name": item.name,
            "input": item.input,
        }
    return {"type": item.type}


def final_fields(client: Api, final: Any) -> JSON:
    """What a client reads from the SDK's final object: ids, text, reasoning, calls, finish, usage."""
    if client is RESPONSES:
        usage = final.usage
        details = final.incomplete_details
        return {
            "id": final.id,
            "status": final.status,
            "incomplete": details.reason if details is not None else None,
            "model": final.model,
            "output": [_responses_item_fields(item) for item in final.output],
            "usage": None
            if usage is None
            else {
                "input": usage.input_tokens,
                "cached": usage.input_tokens_details.cached_tokens,
                "output": usage.output_tokens,
                "reasoning": usage.output_tokens_details.reasoning_tokens,
                "total": usage.total_tokens,
            },
        }
    if client is CHAT:
        (choice,) = final.choices
        message = choice.message
        usage = final.usage
        return {
            "id": final.id,
            "model": final.model,
            "finish_reason": choice.finish_reason,
            "content": message.content,
            "reasoning_content": getattr(message, "reasoning_content", None),
            "tool_calls": [
                (c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls or []
            ],
            "usage": None
            if usage is None
            else {
                "input": usage.prompt_tokens,
                "cached": usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None,
                "output": usage.completion_tokens,
                "reasoning": usage.completion_tokens_details.reasoning_tokens
                if usage.completion_tokens_details
                else None,
                "total": usage.total_tokens,
            },
        }
    blocks: list[Any] = []
    for block in final.content:
        if block.type == "text":
            blocks.append(("text", block.text))
        elif block.type == "thinking":
            blocks.append(("thinking", block.thinking, block.signature))
        elif block.type == "redacted_thinking":
            blocks.append(("redacted_thinking", block.data))
        elif block.type == "tool_use":
            blocks.append(("tool_use", block.id, block.name, block.input))
        else:
            blocks.append((block.type,))
    usage = final.usage
    return {
        "id": final.id,
        "model": final.model,
        "stop_reason": final.stop_reason,
        "content": blocks,
        "usage": {
            "input": usage.input_tokens,
            "cache_read": usage.cache_read_input_tokens,
            "cache_write": usage.cache_creation_input_tokens,
            "output": usage.output_tokens,
        },
    }


# -- tool calls and results in a body ------------------------------------------------------------------
def history(api: Api, body: Mapping[str, Any]) -> list[Any]:
    """A body's messages (Responses: its input items)."""
    value = body.get("input" if api is RESPONSES else "messages")
    return list(value) if isinstance(value, list) else []


def tool_links(api: Api, body: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """A body's tool calls and results in order, as ("call" / "result", id, position): the
    position counts the body's messages (Responses: its input items)."""
    links: list[tuple[str, str, int]] = []
    for turn, item in enumerate(history(api, body)):
        if api is RESPONSES:
            if item.get("type") in ("function_call", "custom_tool_call"):
                links.append(("call", item["call_id"], turn))
            elif item.get("type") in ("function_call_output", "custom_tool_call_output"):
                links.append(("result", item["call_id"], turn))
        elif api is CHAT:
            links += [("call", call["id"], turn) for call in item.get("tool_calls") or []]
            if item["role"] == "tool":
                links.append(("result", item["tool_call_id"], turn))
        elif isinstance(item["content"], list):
            for block in item["content"]:
                if block["type"] == "tool_use":
                    links.append(("call", block["id"], turn))
                elif block["type"] == "tool_result":
                    links.append(("result", block["tool_use_id"], turn))
    return links


def unpaired(api: Api, body: Mapping[str, Any]) -> list[str]:
    """What breaks the pairing of calls and results in a body (``[]``: every id non-empty and, for
    Anthropic, of the characters it takes; every result answers a call made before it, Anthropic's
    in the message right after the call's; every call answered once)."""
    problems: list[str] = []
    calls: dict[str, int] = {}
    answered: set[str] = set()
    for kind, call_id, turn in tool_links(api, body):
        if not call_id:
            problems.append(f"an empty id at {turn}")
        if api is MESSAGES and not re.fullmatch(r"[a-zA-Z0-9_-]+", call_id):
            problems.append(f"id {call_id!r} at {turn} is not one Anthropic takes")
        if kind == "call":
            if call_id in calls:
                problems.append(f"call id {call_id!r} used twice")
            calls[call_id] = turn
        elif call_id not in calls:
            problems.append(f"result {call_id!r} at {turn} answers no call before it")
        elif call_id in answered:
            problems.append(f"call {call_id!r} answered twice")
        else:
            answered.add(call_id)
            if api is MESSAGES and turn != calls[call_id] + 1:
                problems.append(
                    f"result {call_id!r} at {turn} is not right after its call at {calls[call_id]}"
                )
    problems += [f"call {c!r} never answered" for c in calls if c not in answered]
    return problems


def client_call_id(prefix: str, upstream_id: str) -> str:
    """The client's id for an upstream's call id (the rule every client-facing encoder keeps): kept
    when it starts with ``prefix``, else a leading ``call_`` / ``toolu_`` / ``fc_`` swapped for it."""
    if upstream_id.startswith(prefix) and len(upstream_id) > len(prefix):
        return upstream_id
    for known in ("call_", "toolu_", "fc_"):
        if upstream_id.startswith(known):
            return prefix + upstream_id[len(known) :]
    return prefix + upstream_id


CLIENT_CALL_PREFIX = {RESPONSES: "call_", CHAT: "call_", MESSAGES: "toolu_"}


# -- Hypothesis: canonical conversations ---------------------------------------------------------------
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,:;!?'\"\\/{}[]()<>#*_=+-éß中🙂"
_SEPARATORS = (" ", " ", " ", "\n", "\n\n", "  ", "\t")


@st.composite
def prose(draw: st.DrawFn, max_words: int = 6) -> str:
    """Words (JSON-hostile characters, non-ASCII, emoji) between runs of whitespace, no whitespace at
    either end."""
    words = draw(st.lists(st.text(_LETTERS, min_size=1, max_size=7), min_size=1, max_size=max_words))
    out = words[0]
    for word in words[1:]:
        out += draw(st.sampled_from(_SEPARATORS)) + word
    return out


TOOL_NAMES = ("exec_command", "read_file", "Bash", "web-fetch", "t1")
IMAGE_URLS = (
    "https://example.com/a.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:image/jpeg;base64,/9j/4AAQSkZJRg==",
)
_JSON_LEAF = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(_LETTERS, max_size=8)
JSON_VALUES = st.recursive(
    _JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
ARGUMENTS = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), JSON_VALUES, max_size=4)
"""A tool call's arguments: a JSON object."""


def _sanitised(call_id: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", call_id)


CALL_IDS = st.from_regex(r"(call_|toolu_|fc_|)[A-Za-z0-9]{1,8}([.:|][0-9])?", fullmatch=True)
"""Tool-call ids as the APIs and local servers make them (some with characters Anthropic refuses)."""


SYSTEM_ROLES: st.SearchStrategy[Role] = st.sampled_from(("system", "developer"))


@st.composite
def _later_system(draw: st.DrawFn) -> Message:
    return Message(draw(SYSTEM_ROLES), (Text(draw(prose())),))


@st.composite
def conversations(draw: st.DrawFn, rich: bool = False) -> Request:
    """A canonical request every API can carry: leading system / developer messages, rounds of a user
    message (text, images), maybe a later system message, an assistant turn (reasoning, text or a
    refusal, up to three tool calls with JSON-object arguments) and the tool results answering its
    calls, paired by id. ``rich``: what Chat cannot carry too (only Responses <-> Messages): text
    after an assistant's tool calls, images in tool results."""
    ids = draw(st.lists(CALL_IDS, min_size=9, max_size=9, unique_by=lambda i: _sanitised(i).lower()))
    messages: list[Message] = []
    for _ in range(draw(st.integers(0, 2))):
        texts = draw(st.lists(prose(), min_size=1, max_size=2))
        messages.append(Message(draw(SYSTEM_ROLES), tuple(Text(t) for t in texts)))
    used = 0
    for _ in range(draw(st.integers(1, 3))):
        parts: list[Text | Image] = [Text(t) for t in draw(st.lists(prose(), min_size=1, max_size=2))]
        if draw(st.booleans()):
            image = Image(draw(st.sampled_from(IMAGE_URLS)), draw(st.sampled_from((None, "low", "high"))))
            parts.insert(draw(st.integers(0, len(parts))), image)
        messages.append(Message("user", tuple(parts)))
        if draw(st.integers(0, 4)) == 0:
            messages.append(draw(_later_system()))
        answer: list[Part] = []
        if draw(st.booleans()):
            answer.append(Reasoning(draw(prose())))
        count = draw(st.integers(0, 3))
        calls = [
            ToolCall(call_id, draw(st.sampled_from(TOOL_NAMES)), orjson.dumps(draw(ARGUMENTS)).decode())
            for call_id in ids[used : used + count]
        ]
        used += count
        if not calls or draw(st.booleans()):
            answer.append(draw(st.sampled_from((Text, Text, Text, Refusal)))(draw(prose())))
        answer += calls
        if rich and calls and draw(st.booleans()):
            answer.append(Text(draw(prose())))
        messages.append(Message("assistant", tuple(answer)))
        if calls:
            results: list[Part] = []
            for call in calls:
                if draw(st.booleans()):
                    output: str | tuple[Text | Image, ...] = draw(prose())
                else:
                    pieces: list[Text | Image] = [
                        Text(t) for t in draw(st.lists(prose(), min_size=1, max_size=2))
                    ]
                    if rich and draw(st.booleans()):
                        pieces.insert(
                            draw(st.integers(0, len(pieces))), Image(draw(st.sampled_from(IMAGE_URLS)))
                        )
                    output = tuple(pieces)
                results.append(ToolResult(call.id, output))
            messages.append(Message("tool", tuple(results)))
            if draw(st.integers(0, 4)) == 0:
                messages.append(draw(_later_system()))
    names = sorted({p.name for m in messages for p in m.parts if isinstance(p, ToolCall)})
    tools = tuple(
        Tool(name, description=draw(st.sampled_from((None, "Does it."))), parameters=OBJECT_SCHEMA)
        for name in names
    )
    cache_key = draw(st.sampled_from((None, "thread-1")))
    return Request(model="client-model", messages=tuple(messages), tools=tools, prompt_cache_key=cache_key)


OBJECT_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}


# -- the meaning of a conversation ---------------------------------------------------------------------
Item = tuple[Any, ...]
Turn = tuple[str, tuple[Item, ...]]


def _items(parts: Iterable[Part]) -> list[Item]:
    items: list[Item] = []
    for part in parts:
        if isinstance(part, Text | Refusal):
            items.append(("text", squeeze(part.text)))
        elif isinstance(part, Image):
            items.append(("image", part.url))
    return items


def _merged(items: list[Item]) -> list[Item]:
    """Consecutive texts as one, empty ones left out."""
    merged: list[Item] = []
    for item in items:
        if item[0] == "text" and not item[1]:
            continue
        if item[0] == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + item[1])
        else:
            merged.append(item)
    return merged


def squeeze(text: str) -> str:
    """Text with its whitespace taken out: the APIs join a turn's text parts with different
    separators (Chat: a blank line for user and tool text, nothing for assistant text; Responses and
    Messages: a newline for a tool result's parts)."""
    return "".join(text.split())


def meaning(request: Request) -> tuple[tuple[Turn, ...], tuple[tuple[str, str | None, Any], ...]]:
    """What a conversation says, less what the APIs are documented to change:

    * the leading run of system / developer messages is one system text (Chat merges it, Messages
      makes it ``system``); a later one is a user turn (Chat and Messages send it as a user message);
    * reasoning is left out (never carried to another provider, nor by Chat's request encoder);
    * images are their URL (Messages has no ``detail``), refusals are text (only Responses has them
      in a request);
    * a turn's consecutive text parts are one text, whitespace aside (see :func:`squeeze`), and
      consecutive turns of one role are one turn (Messages alternates roles); empty texts and turns
      are left out;
    * tool-call ids are compared by pairing: each id as the number of the call it names, in order
      (Messages replaces the characters it refuses in both the call and its result);
    * a tool with no schema takes no arguments (``{"type": "object", "properties": {}}``)."""
    lead = 0
    while lead < len(request.messages) and request.messages[lead].role in ("system", "developer"):
        lead += 1
    aliases: dict[str, int] = {}
    turns: list[tuple[str, list[Item]]] = []
    system = squeeze("".join(p.text for m in request.messages[:lead] for p in m.parts if isinstance(p, Text)))
    if system:
        turns.append(("system", [("text", system)]))
    for message in request.messages[lead:]:
        role = "user" if message.role in ("system", "developer") else message.role
        items: list[Item] = []
        for part in message.parts:
            if isinstance(part, Text | Refusal):
                items.append(("text", squeeze(part.text)))
            elif isinstance(part, Image):
                items.append(("image", part.url))
            elif isinstance(part, ToolCall):
                alias = aliases.setdefault(part.id, len(aliases))
                items.append(("call", alias, part.name, orjson.loads(part.arguments or "{}")))
            elif isinstance(part, ToolResult):
                pieces = (Text(part.output),) if isinstance(part.output, str) else part.output
                result = tuple(_merged(_items(pieces)))
                items.append(("result", aliases.get(part.call_id, part.call_id), result))
        merged = _merged(items)
        if not merged:
            continue
        if turns and turns[-1][0] == role:
            previous = turns[-1][1]
            if merged[0][0] == "text" and previous[-1][0] == "text":
                previous[-1] = ("text", previous[-1][1] + merged.pop(0)[1])
            previous.extend(merged)
        else:
            turns.append((role, merged))
    empty = {"type": "object", "properties": {}}
    tools = tuple(
        (t.name, t.description or None, dict(t.parameters) if t.parameters is not None else empty)
        for t in request.tools
    )
    return tuple((role, tuple(items)) for role, items in turns), tools


# -- Hypothesis: upstream streams -------------------------------------------------------------------------
@st.composite
def up_plans(draw: st.DrawFn, upstream: Api) -> UpPlan:
    """An upstream answer: text, reasoning and tool-call blocks in any order, pieces of any size (an
    empty one now and then), a finish reason that fits, usage or none."""
    prefix = "toolu_" if upstream is MESSAGES else "call_"
    quirk = draw(st.integers(0, {CHAT: 2, RESPONSES: 2, MESSAGES: 1}[upstream]))
    suffixes = draw(
        st.lists(st.text("abcdefXYZ0123456789", min_size=1, max_size=6), min_size=4, max_size=4, unique=True)
    )
    blocks: list[UpBlock] = []
    tools = 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(("text", "reasoning", "tool")))
        if kind == "tool" and tools < len(suffixes):
            # now and then a call without arguments: no argument JSON at all (Claude, local servers)
            arguments = "" if draw(st.integers(0, 5)) == 0 else orjson.dumps(draw(ARGUMENTS)).decode()
            cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=3)))
            pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
            blocks.append(UpTool(prefix + suffixes[tools], draw(st.sampled_from(TOOL_NAMES)), tuple(pieces)))
            tools += 1
        elif kind == "reasoning":
            pieces = draw(st.lists(prose(3), min_size=1, max_size=3))
            opaque = draw(st.sampled_from((None, "sig-or-encrypted"))) if upstream is not CHAT else None
            blocks.append(UpReasoning(tuple(pieces), opaque))
        else:
            pieces = draw(st.lists(st.sampled_from(("",)) | prose(3), min_size=1, max_size=4))
            blocks.append(UpText(tuple(pieces)))
    finishes = ("tool_calls", "stop", "length") if tools else ("stop", "length")
    usage = None
    if draw(st.booleans()):
        total = draw(st.integers(1, 50000))
        output = draw(st.integers(1, 4000))
        usage = UpUsage(
            total,
            output,
            draw(st.integers(0, total)),
            draw(st.integers(0, output)) if upstream is not MESSAGES else 0,
        )
    return UpPlan(tuple(blocks), draw(st.sampled_from(finishes)), usage, quirk=quirk)


JUNK: dict[Api, tuple[Any, ...]] = {
    CHAT: (
        b": keep-alive\n\n",
        b"data: not json\n\n",
        {"id": "chatcmpl-up", "choices": "x"},
        {"id": "chatcmpl-up", "choices": [{"index": 1, "delta": {"content": "ANOTHER CHOICE"}}]},
        {"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": []},
        {"id": "chatcmpl-up", "choices": [{"index": 0, "delta": {"content": 5}}]},
        [1, 2],
    ),
    RESPONSES: (
        b": keep-alive\n\n",
        b"event: response.output_text.delta\ndata: not json\n\n",
        {"type": "keepalive"},
        {"type": "rate_limits.updated", "rate_limits": []},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": 5},
        {"type": "response.output_text.annotation.added", "output_index": 0, "annotation": {}},
        {"type": 7},
    ),
    MESSAGES: (
        {"type": "ping"},
        b"event: content_block_delta\ndata: not json\n\n",
        {"type": "content_block_delta", "index": 99, "delta": {"type": "text_delta", "text": "GHOST"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}},
        {"type": "future_event"},
        {"type": "content_block_stop", "index": 42},
        [1, 2],
    ),
}
"""Hostile events an upstream may mix in: none of them says anything the answer holds."""


@st.composite
def hostile_streams(draw: st.DrawFn, upstream: Api) -> tuple[UpPlan, bytes]:
    """A plan and its upstream SSE body with junk events mixed in anywhere."""
    plan = draw(up_plans(upstream))
    events: list[Any] = list(UPSTREAM_EVENTS[upstream](plan))
    for _ in range(draw(st.integers(0, 4))):
        junk = draw(st.sampled_from(JUNK[upstream]))
        events.insert(draw(st.integers(0, len(events))), junk)
    body = b"".join(
        item
        if isinstance(item, bytes)
        else upstream_sse(upstream, [item])
        if isinstance(item, dict | str)
        else b"data: " + orjson.dumps(item) + b"\n\n"
        for item in events
    )
    return plan, body
