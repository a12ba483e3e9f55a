"""Events the gateway writes into a client's stream itself, in that stream's own ids."""

from __future__ import annotations

import time

import orjson

from spillgate.protocols.apis import Api
from spillgate.protocols.events import StreamTracker


def _sse(name: str | None, payload: object) -> bytes:
    data = orjson.dumps(payload)
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _next_seq(tracker: StreamTracker) -> int:
    tracker.sequence_number += 1
    return tracker.sequence_number


def text_delta(tracker: StreamTracker, text: str) -> bytes:
    """A content event carrying ``text``, continuing the client's stream."""
    tracker.keep_text(text)
    if tracker.api is Api.OPENAI_CHAT:
        return _sse(
            None,
            {
                "id": tracker.chunk_id or "chatcmpl-spillgate",
                "object": "chat.completion.chunk",
                "created": tracker.created or int(time.time()),
                "model": tracker.model or "",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            },
        )
    if tracker.api is Api.OPENAI_RESPONSES:
        return _sse(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "item_id": tracker.item_id or "msg_spillgate",
                "output_index": tracker.output_index,
                "content_index": tracker.content_index,
                "delta": text,
                "sequence_number": _next_seq(tracker),
            },
        )
    return _sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": tracker.block_index,
            "delta": {"type": "text_delta", "text": text},
        },
    )


def renumber(tracker: StreamTracker, raw_payload: dict[str, object], name: str | None) -> bytes:
    """A Responses event from another upstream, renumbered to continue the client's sequence."""
    if "sequence_number" in raw_payload:
        raw_payload = {**raw_payload, "sequence_number": _next_seq(tracker)}
    return _sse(name, raw_payload)


def stream_end(tracker: StreamTracker) -> bytes:
    """The normal terminator for a stream whose answer is complete but whose upstream never sent it."""
    if tracker.api is Api.OPENAI_CHAT:
        return b"data: [DONE]\n\n"
    if tracker.api is Api.ANTHROPIC_MESSAGES:
        return _sse("message_stop", {"type": "message_stop"})
    return b""  # Responses: only the upstream's response.completed can end it


def in_band_error(tracker: StreamTracker, message: str) -> bytes:
    """An error the client retries, ending a stream that cannot be completed.

    Responses: ``response.failed`` with code ``server_error`` (Codex retries it; never
    ``server_is_overloaded``, which it treats as fatal). Anthropic: ``event: error`` with
    ``overloaded_error``. Chat: an error chunk (the caller then closes without ``[DONE]``).
    """
    if tracker.api is Api.OPENAI_RESPONSES:
        return _sse(
            "response.failed",
            {
                "type": "response.failed",
                "sequence_number": _next_seq(tracker),
                "response": {
                    "id": tracker.response_id or "resp_spillgate",
                    "object": "response",
                    "status": "failed",
                    "model": tracker.model,
                    "output": [],
                    "error": {"code": "server_error", "message": message},
                },
            },
        )
    if tracker.api is Api.ANTHROPIC_MESSAGES:
        return _sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})
    return _sse(
        None, {"error": {"message": message, "type": "server_error", "param": None, "code": "server_error"}}
    )
