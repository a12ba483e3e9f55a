"""Success bodies and SSE event sequences for each protocol, plus in-stream error frames.

Everything here is pure: it turns (model, answer deltas, token counts) into bytes. Usage is the
same for a stream and for a whole body: ``input_tokens`` comes from the request's size and
``output_tokens`` is the number of deltas.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import Final

import orjson

from spillgate.fake.conversation import Reply, ToolCall, encrypted_reasoning, thinking_signature
from spillgate.fake.protocol import ANTHROPIC, CHAT, RESPONSES, ApiProtocol, error_json

DEFAULT_TEXT: Final = "Hello from the fake upstream."
DEFAULT_CHUNKS: Final = 5

MALFORMED_FRAME: Final = b'data: {"broken json\n\n'
"""What ``malformed_at_event`` writes: a data line that is not valid JSON."""

_ID_PREFIX: Final = os.urandom(4).hex()
_ids = itertools.count(1)
_WORD = re.compile(r"\s*\S+")


def new_id(prefix: str) -> str:
    """A unique id such as ``chatcmpl-…``, ``resp_…`` or ``msg_…`` (cheap: a counter, not a UUID)."""
    return f"{prefix}{_ID_PREFIX}{next(_ids):012x}"


def input_tokens_for(body: bytes) -> int:
    """The fake's deterministic prompt-token count for a request body."""
    return len(body) // 4 + 1


def split_text(text: str, chunks: int) -> tuple[str, ...]:
    """Split ``text`` into at most ``chunks`` deltas whose concatenation is ``text``.

    Whole words (with their leading spaces) are kept together when there are enough of them;
    otherwise the text is cut into near-equal character runs.
    """
    if not text or chunks <= 0:
        return ()
    words = _WORD.findall(text)
    tail = text[sum(map(len, words)) :]
    if words and tail:
        words[-1] += tail
    elif not words:
        words = [text]
    if len(words) >= chunks:
        n = len(words)
        return tuple("".join(words[i * n // chunks : (i + 1) * n // chunks]) for i in range(chunks))
    count = min(chunks, len(text))
    length = len(text)
    return tuple(text[i * length // count : (i + 1) * length // count] for i in range(count))


@dataclass(frozen=True, slots=True)
class StreamEvents:
    """The complete, healthy SSE body of one streamed answer, one frame per event."""

    protocol: ApiProtocol
    frames: tuple[bytes, ...]
    first_content: int
    """Index of the first content delta (the frames before it are sent at once)."""
    response_id: str
    model: str
    created: int


def _sse(event: str, payload: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _data(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


# -- OpenAI Chat Completions ---------------------------------------------------------------


def chat_completion(model: str, text: str, output_tokens: int, input_tokens: int, created: int) -> bytes:
    return orjson.dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            "system_fingerprint": None,
        }
    )


def _chat_chunk(
    cid: str, created: int, model: str, delta: dict[str, object], finish: str | None, include_usage: bool
) -> bytes:
    payload: dict[str, object] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        payload["usage"] = None
    return _data(payload)


def _chat_usage_chunk(cid: str, created: int, model: str, input_tokens: int, output_tokens: int) -> bytes:
    """The last chunk of a stream asked for ``stream_options.include_usage``: no choices, the usage."""
    return _data(
        {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }
    )


def chat_stream(
    model: str, deltas: tuple[str, ...], input_tokens: int, created: int, include_usage: bool
) -> StreamEvents:
    cid = new_id("chatcmpl-")

    def chunk(delta: dict[str, object], finish: str | None) -> bytes:
        return _chat_chunk(cid, created, model, delta, finish, include_usage)

    frames = [chunk({"role": "assistant", "content": ""}, None)]
    frames.extend(chunk({"content": d}, None) for d in deltas)
    frames.append(chunk({}, "stop"))
    if include_usage:
        frames.append(_chat_usage_chunk(cid, created, model, input_tokens, len(deltas)))
    frames.append(b"data: [DONE]\n\n")
    return StreamEvents(CHAT, tuple(frames), 1, cid, model, created)


# -- OpenAI Responses ----------------------------------------------------------------------


def _responses_usage(input_tokens: int, output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _response_object(
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[object],
    usage: dict[str, object] | None,
    error: dict[str, str] | None = None,
) -> dict[str, object]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": None,
        "model": model,
        "output": output,
        "usage": usage,
    }


def _output_text(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": []}


def _message_item(item_id: str, status: str, content: list[object]) -> dict[str, object]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def responses_object(model: str, text: str, output_tokens: int, input_tokens: int, created: int) -> bytes:
    item = _message_item(new_id("msg_"), "completed", [_output_text(text)])
    return orjson.dumps(
        _response_object(
            new_id("resp_"),
            created,
            model,
            "completed",
            [item],
            _responses_usage(input_tokens, output_tokens),
        )
    )


def responses_stream(model: str, deltas: tuple[str, ...], input_tokens: int, created: int) -> StreamEvents:
    rid = new_id("resp_")
    item_id = new_id("msg_")
    text = "".join(deltas)
    seq = itertools.count()
    frames: list[bytes] = []

    def emit(event: str, **fields: object) -> None:
        frames.append(_sse(event, {"type": event, "sequence_number": next(seq), **fields}))

    pending = _response_object(rid, created, model, "in_progress", [], None)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    emit("response.output_item.added", output_index=0, item=_message_item(item_id, "in_progress", []))
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", **where, part=_output_text(""))
    first = len(frames)
    for delta in deltas:
        emit("response.output_text.delta", **where, delta=delta, logprobs=[])
    emit("response.output_text.done", **where, text=text, logprobs=[])
    emit("response.content_part.done", **where, part=_output_text(text))
    done_item = _message_item(item_id, "completed", [_output_text(text)])
    emit("response.output_item.done", output_index=0, item=done_item)
    usage = _responses_usage(input_tokens, len(deltas))
    emit(
        "response.completed", response=_response_object(rid, created, model, "completed", [done_item], usage)
    )
    return StreamEvents(RESPONSES, tuple(frames), first, rid, model, created)


# -- Anthropic Messages --------------------------------------------------------------------


def anthropic_message(model: str, text: str, output_tokens: int, input_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    )


def anthropic_stream(model: str, deltas: tuple[str, ...], input_tokens: int, created: int) -> StreamEvents:
    mid = new_id("msg_")
    start = {
        "type": "message_start",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": min(1, len(deltas))},
        },
    }
    frames = [
        _sse("message_start", start),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        b'event: ping\ndata: {"type":"ping"}\n\n',
    ]
    frames.extend(
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}},
        )
        for d in deltas
    )
    frames.append(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n')
    frames.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(deltas)},
            },
        )
    )
    frames.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return StreamEvents(ANTHROPIC, tuple(frames), 3, mid, model, created)


# -- dispatch --------------------------------------------------------------------------------


def success_body(
    protocol: ApiProtocol, model: str, text: str, output_tokens: int, input_tokens: int, created: int
) -> bytes:
    """The non-streamed success body for ``protocol``."""
    if protocol == CHAT:
        return chat_completion(model, text, output_tokens, input_tokens, created)
    if protocol == ANTHROPIC:
        return anthropic_message(model, text, output_tokens, input_tokens)
    return responses_object(model, text, output_tokens, input_tokens, created)


def stream_events(
    protocol: ApiProtocol,
    model: str,
    deltas: tuple[str, ...],
    input_tokens: int,
    created: int,
    include_usage: bool,
) -> StreamEvents:
    """The streamed success body for ``protocol`` (``include_usage`` only matters for chat)."""
    if protocol == CHAT:
        return chat_stream(model, deltas, input_tokens, created, include_usage)
    if protocol == ANTHROPIC:
        return anthropic_stream(model, deltas, input_tokens, created)
    return responses_stream(model, deltas, input_tokens, created)


# -- failures ----------------------------------------------------------------------------------


def stream_error_defaults(protocol: ApiProtocol) -> tuple[str, str]:
    """(code, message) of the in-stream failure when a fault does not name them."""
    if protocol == ANTHROPIC:
        return "overloaded_error", "Overloaded"
    return "server_error", "An error occurred while processing your request. Please retry."


def stream_error_frame(events: StreamEvents, sequence_number: int, code: str, message: str) -> bytes:
    """The protocol's in-stream failure event, ending a stream.

    Responses: ``response.failed`` carrying the failed response; Anthropic: ``error``;
    chat: a ``data:`` line holding an OpenAI error object.
    """
    if events.protocol == ANTHROPIC:
        return _sse("error", {"type": "error", "error": {"type": code, "message": message}})
    if events.protocol == CHAT:
        return _data({"error": {"message": message, "type": "server_error", "param": None, "code": code}})
    failed = _response_object(
        events.response_id,
        events.created,
        events.model,
        "failed",
        [],
        None,
        {"code": code, "message": message},
    )
    return _sse(
        "response.failed", {"type": "response.failed", "sequence_number": sequence_number, "response": failed}
    )


def stream_error_json(protocol: ApiProtocol, code: str, message: str) -> tuple[int, bytes]:
    """A stream failure as a whole HTTP error, for a request that did not ask to stream."""
    if protocol == ANTHROPIC:
        status = 529 if code == "overloaded_error" else 500
        return status, error_json(protocol, status, message=message, error_type=code)
    return 500, error_json(protocol, 500, message=message, code=code)


# -- OpenAI Responses: scripted coding turns ---------------------------------------------------


def _reasoning_item(item_id: str, summary: str, done: bool) -> dict[str, object]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": summary}] if done else [],
        "encrypted_content": encrypted_reasoning(item_id, summary),
    }


def _function_call_item(item_id: str, call: ToolCall, arguments: str, status: str) -> dict[str, object]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.call_id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def _reply_items(reply: Reply, chunks: int) -> list[tuple[str, dict[str, object], tuple[str, ...]]]:
    """(kind, completed item, deltas) for each output item of ``reply``."""
    items: list[tuple[str, dict[str, object], tuple[str, ...]]] = []
    if reply.reasoning:
        rid = new_id("rs_")
        items.append(("reasoning", _reasoning_item(rid, reply.reasoning, True), (reply.reasoning,)))
    if reply.call is not None:
        fid = new_id("fc_")
        call = reply.call
        deltas = split_text(call.arguments, chunks)
        items.append(("function_call", _function_call_item(fid, call, call.arguments, "completed"), deltas))
    if reply.text is not None:
        deltas = split_text(reply.text, chunks)
        items.append(
            ("message", _message_item(new_id("msg_"), "completed", [_output_text(reply.text)]), deltas)
        )
    return items


def responses_reply_stream(
    model: str, reply: Reply, chunks: int, input_tokens: int, created: int
) -> StreamEvents:
    """The streamed Responses answer of a scripted turn: its reasoning item (summary and
    ``encrypted_content``), then its function call or its message, then ``response.completed``.
    ``first_content`` is the first delta of any kind."""
    rid = new_id("resp_")
    seq = itertools.count()
    frames: list[bytes] = []
    first = -1

    def emit(event: str, **fields: object) -> None:
        frames.append(_sse(event, {"type": event, "sequence_number": next(seq), **fields}))

    def emit_delta(event: str, **fields: object) -> None:
        nonlocal first
        if first < 0:
            first = len(frames)
        emit(event, **fields)

    pending = _response_object(rid, created, model, "in_progress", [], None)
    emit("response.created", response=pending)
    emit("response.in_progress", response=pending)
    done_items: list[object] = []
    output_tokens = 0
    for index, (kind, item, deltas) in enumerate(_reply_items(reply, chunks)):
        item_id = item["id"]
        output_tokens += len(deltas)
        if kind == "reasoning":
            summary = str(reply.reasoning)
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            where: dict[str, object] = {"item_id": item_id, "output_index": index, "summary_index": 0}
            emit("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
            for delta in deltas:
                emit_delta("response.reasoning_summary_text.delta", **where, delta=delta)
            emit("response.reasoning_summary_text.done", **where, text=summary)
            emit(
                "response.reasoning_summary_part.done",
                **where,
                part={"type": "summary_text", "text": summary},
            )
        elif kind == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            where = {"item_id": item_id, "output_index": index}
            for delta in deltas:
                emit_delta("response.function_call_arguments.delta", **where, delta=delta)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        else:
            text = "".join(deltas)
            emit(
                "response.output_item.added",
                output_index=index,
                item=_message_item(str(item_id), "in_progress", []),
            )
            where = {"item_id": item_id, "output_index": index, "content_index": 0}
            emit("response.content_part.added", **where, part=_output_text(""))
            for delta in deltas:
                emit_delta("response.output_text.delta", **where, delta=delta, logprobs=[])
            emit("response.output_text.done", **where, text=text, logprobs=[])
            emit("response.content_part.done", **where, part=_output_text(text))
        emit("response.output_item.done", output_index=index, item=item)
        done_items.append(item)
    usage = _responses_usage(input_tokens, output_tokens)
    emit("response.completed", response=_response_object(rid, created, model, "completed", done_items, usage))
    if first < 0:
        first = len(frames) - 1
    return StreamEvents(RESPONSES, tuple(frames), first, rid, model, created)


def responses_reply_object(model: str, reply: Reply, chunks: int, input_tokens: int, created: int) -> bytes:
    """The non-streamed Responses answer of a scripted turn (the same output items)."""
    items = _reply_items(reply, chunks)
    usage = _responses_usage(input_tokens, sum(len(deltas) for _, _, deltas in items))
    output: list[object] = [item for _, item, _ in items]
    return orjson.dumps(_response_object(new_id("resp_"), created, model, "completed", output, usage))


# -- scripted coding turns in the other two APIs -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _ReplyParts:
    """A scripted reply cut into the deltas a stream sends (the whole answer counts the same
    deltas as its output tokens)."""

    reasoning: tuple[str, ...]
    arguments: tuple[str, ...]
    text: tuple[str, ...]

    @property
    def output_tokens(self) -> int:
        return len(self.reasoning) + len(self.arguments) + len(self.text)


def _reply_parts(reply: Reply, chunks: int) -> _ReplyParts:
    return _ReplyParts(
        split_text(reply.reasoning, chunks),
        split_text(reply.call.arguments, chunks) if reply.call is not None else (),
        split_text(reply.text, chunks) if reply.text is not None else (),
    )


def chat_reply_object(model: str, reply: Reply, chunks: int, input_tokens: int, created: int) -> bytes:
    """The non-streamed Chat Completions answer of a scripted turn: the reasoning as
    ``reasoning_content`` (as llama.cpp and DeepSeek send it), then one ``tool_calls`` call
    (``finish_reason: tool_calls``) or the final text (``stop``)."""
    output_tokens = _reply_parts(reply, chunks).output_tokens
    message: dict[str, object] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    call = reply.call
    if call is not None:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        ]
    return orjson.dumps(
        {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if call is not None else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            "system_fingerprint": None,
        }
    )


def chat_reply_stream(
    model: str, reply: Reply, chunks: int, input_tokens: int, created: int, include_usage: bool
) -> StreamEvents:
    """The streamed Chat Completions answer of a scripted turn: a role chunk, the
    ``reasoning_content`` deltas, then the tool call (index 0: id, type and name with empty
    arguments first, then the arguments in pieces) or the content deltas, the finish chunk, the
    usage chunk (with ``include_usage``) and ``[DONE]``. ``first_content`` is the first delta."""
    cid = new_id("chatcmpl-")
    parts = _reply_parts(reply, chunks)
    call = reply.call

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return _chat_chunk(cid, created, model, delta, finish, include_usage)

    frames = [chunk({"role": "assistant", "content": "" if call is None else None})]
    first = len(frames)
    frames.extend(chunk({"reasoning_content": d}) for d in parts.reasoning)
    if call is not None:
        function = {"name": call.name, "arguments": ""}
        frames.append(
            chunk(
                {"tool_calls": [{"index": 0, "id": call.call_id, "type": "function", "function": function}]}
            )
        )
        if not parts.reasoning:
            first = len(frames)
        frames.extend(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": d}}]}) for d in parts.arguments
        )
    else:
        frames.extend(chunk({"content": d}) for d in parts.text)
    frames.append(chunk({}, "tool_calls" if call is not None else "stop"))
    if include_usage:
        frames.append(_chat_usage_chunk(cid, created, model, input_tokens, parts.output_tokens))
    frames.append(b"data: [DONE]\n\n")
    return StreamEvents(CHAT, tuple(frames), first, cid, model, created)


def _tool_input(call: ToolCall) -> object:
    return orjson.loads(call.arguments)


def messages_reply_object(model: str, reply: Reply, chunks: int, input_tokens: int) -> bytes:
    """The non-streamed Anthropic Messages answer of a scripted turn: a ``thinking`` block (with
    its ``signature``), then a ``tool_use`` block (``stop_reason: tool_use``) or a ``text`` block
    (``end_turn``)."""
    content: list[object] = []
    if reply.reasoning:
        content.append(
            {
                "type": "thinking",
                "thinking": reply.reasoning,
                "signature": thinking_signature(reply.reasoning),
            }
        )
    call = reply.call
    if call is not None:
        content.append(
            {"type": "tool_use", "id": call.call_id, "name": call.name, "input": _tool_input(call)}
        )
    elif reply.text is not None:
        content.append({"type": "text", "text": reply.text})
    return orjson.dumps(
        {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if call is not None else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": _reply_parts(reply, chunks).output_tokens,
            },
        }
    )


def messages_reply_stream(
    model: str, reply: Reply, chunks: int, input_tokens: int, created: int
) -> StreamEvents:
    """The streamed Anthropic Messages answer of a scripted turn, in the API's grammar:
    ``message_start``; per block ``content_block_start`` / ``content_block_delta``s /
    ``content_block_stop`` (``thinking_delta``s then one ``signature_delta``; ``input_json_delta``s;
    ``text_delta``s), a ``ping`` after the first block's start; ``message_delta`` with the
    stop reason and usage; ``message_stop``. ``first_content`` is the first delta."""
    mid = new_id("msg_")
    parts = _reply_parts(reply, chunks)
    call = reply.call
    start = {
        "type": "message_start",
        "message": {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": min(1, parts.output_tokens)},
        },
    }
    frames = [_sse("message_start", start)]
    first = -1
    blocks: list[tuple[dict[str, object], list[dict[str, object]]]] = []
    if reply.reasoning:
        signature: dict[str, object] = {
            "type": "signature_delta",
            "signature": thinking_signature(reply.reasoning),
        }
        thinking: list[dict[str, object]] = [
            {"type": "thinking_delta", "thinking": d} for d in parts.reasoning
        ]
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, [*thinking, signature]))
    if call is not None:
        json_deltas: list[dict[str, object]] = [
            {"type": "input_json_delta", "partial_json": d} for d in parts.arguments
        ]
        blocks.append(({"type": "tool_use", "id": call.call_id, "name": call.name, "input": {}}, json_deltas))
    elif reply.text is not None:
        text: list[dict[str, object]] = [{"type": "text_delta", "text": d} for d in parts.text]
        blocks.append(({"type": "text", "text": ""}, text))
    for index, (block, deltas) in enumerate(blocks):
        frames.append(
            _sse(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        if index == 0:
            frames.append(b'event: ping\ndata: {"type":"ping"}\n\n')
        for delta in deltas:
            if first < 0:
                first = len(frames)
            frames.append(
                _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        frames.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    frames.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if call is not None else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": parts.output_tokens},
            },
        )
    )
    frames.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    if first < 0:
        first = len(frames) - 1
    return StreamEvents(ANTHROPIC, tuple(frames), first, mid, model, created)
