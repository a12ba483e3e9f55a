"""What the fake upstream answers with: the healthy bodies and streams, the headers per API, and
what a faulted request that does not stream ends as."""

from __future__ import annotations

from spillgate.fake.behavior import Fault
from spillgate.fake.content import (
    StreamEvents,
    chat_reply_object,
    chat_reply_stream,
    messages_reply_object,
    messages_reply_stream,
    responses_reply_object,
    responses_reply_stream,
    stream_events,
    success_body,
)
from spillgate.fake.protocol import ANTHROPIC, CHAT, ApiProtocol

JSON = ("content-type", "application/json")
SSE = ("content-type", "text/event-stream")
NO_CACHE = ("cache-control", "no-cache")
MALFORMED_BODY = b'{"broken json'


def plain_outcome(fault: Fault) -> str:
    """What a faulted, non-streamed request ends as (status/reset/never_answer come first)."""
    if fault.cut_after_events is not None:
        return "cut"
    if fault.stall_after_events is not None:
        return "stall"
    if fault.stream_error_after_events is not None:
        return "stream_error"
    if fault.malformed_at_event is not None:
        return "malformed"
    return "ok"


def stream_answer(
    protocol: ApiProtocol,
    model: str,
    fault: Fault,
    payload: dict[str, object],
    input_tokens: int,
    created: int,
) -> StreamEvents:
    """The healthy streamed answer (faults are applied to it afterwards)."""
    conversation = fault.conversation
    if conversation is not None:
        reply = conversation.reply(payload, protocol)
        if protocol == CHAT:
            return chat_reply_stream(
                model, reply, fault.chunks, input_tokens, created, _include_usage(payload)
            )
        if protocol == ANTHROPIC:
            return messages_reply_stream(model, reply, fault.chunks, input_tokens, created)
        return responses_reply_stream(model, reply, fault.chunks, input_tokens, created)
    return stream_events(protocol, model, fault.deltas, input_tokens, created, _include_usage(payload))


def whole_answer(
    protocol: ApiProtocol,
    model: str,
    fault: Fault,
    payload: dict[str, object],
    input_tokens: int,
    created: int,
) -> bytes:
    """The healthy non-streamed answer."""
    conversation = fault.conversation
    if conversation is not None:
        reply = conversation.reply(payload, protocol)
        if protocol == CHAT:
            return chat_reply_object(model, reply, fault.chunks, input_tokens, created)
        if protocol == ANTHROPIC:
            return messages_reply_object(model, reply, fault.chunks, input_tokens)
        return responses_reply_object(model, reply, fault.chunks, input_tokens, created)
    return success_body(protocol, model, fault.text, len(fault.deltas), input_tokens, created)


def _include_usage(payload: dict[str, object]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def json_headers(protocol: ApiProtocol, request_id: str) -> list[tuple[str, str]]:
    if protocol == ANTHROPIC:
        return [JSON, ("x-request-id", request_id), ("request-id", request_id)]
    return [JSON, ("x-request-id", request_id)]


def stream_headers(protocol: ApiProtocol, request_id: str) -> list[tuple[str, str]]:
    if protocol == ANTHROPIC:
        return [SSE, NO_CACHE, ("x-request-id", request_id), ("request-id", request_id)]
    return [SSE, NO_CACHE, ("x-request-id", request_id)]


def prefill_of(payload: dict[str, object]) -> str | None:
    """The assistant text a request asks to be continued (a final assistant message), if any."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "assistant" and isinstance(last.get("content"), str):
        return str(last["content"])
    return None
