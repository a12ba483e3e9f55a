"""SSE events of the three APIs: split, parse, and tell content from preamble, ending and failure.

The gateway relays event bytes untouched on the normal path; a :class:`StreamTracker` only
reads them to know where the stream is (has content reached the client? did it end
normally? did it fail in-stream?) and to keep the text sent so far for recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage, from_usage_object

MAX_REPLAY_CHARS = 128 * 1024
"""Output text a stream keeps for a continuation or a replay (``limits.max_replay_text``)."""
_COMPACT_PIECES = 128
"""Pieces of kept text joined into one string at a time: a stream of one-token deltas then costs
about a byte per character, not a string object per token."""


class Kind(Enum):
    PREAMBLE = "preamble"
    """Envelope before any output: response.created, message_start, the chat role chunk."""
    CONTENT = "content"
    """Carries output: text, tool calls, reasoning."""
    META = "meta"
    """Neither: pings, comments, finish and usage chunks, block boundaries."""
    TERMINAL = "terminal"
    """The normal end of the stream: [DONE], response.completed, message_stop."""
    ERROR = "error"
    """An in-stream failure: response.failed, event: error, a chat error chunk."""
    MALFORMED = "malformed"
    """Not a well-formed event of this API: dropped and counted."""


@dataclass(slots=True)
class Event:
    raw: bytes
    name: str | None
    data: bytes
    payload: Any = None
    """The decoded JSON of ``data`` when the tracker needed it."""


def split_events(blob: bytes) -> list[bytes]:
    """Whole events (each with its terminator) from a run of complete events."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in blob else b"\n\n"
    parts = blob.split(sep)
    return [p + sep for p in parts if p]


def parse_event(raw: bytes) -> Event:
    # Fast paths for the shapes upstreams send: "data: X\n\n" and "event: N\ndata: X\n\n".
    end = len(raw) - 2
    first = raw.find(b"\n")
    if raw.startswith(b"data: ") and first == end:
        return Event(raw, None, raw[6:end])
    if (
        raw.startswith(b"event: ")
        and raw.startswith(b"data: ", first + 1)
        and raw.find(b"\n", first + 1) == end
    ):
        return Event(raw, raw[7:first].decode("utf-8", "replace"), raw[first + 7 : end])
    name: str | None = None
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return Event(raw, name, b"\n".join(data))


@dataclass(slots=True)
class StreamTracker:
    """Reads one upstream stream's events in order; knows what the client has been sent."""

    api: Api
    text: list[str] = field(default_factory=list)
    """Output text in order (what a continuation or a replay must reproduce), up to
    ``replay_limit`` characters; past it, dropped and ``replay_lost`` set. Runs of pieces are
    joined as they accumulate: read it whole with :meth:`sent_text`."""
    replay_limit: int = MAX_REPLAY_CHARS
    text_chars: int = 0
    """Characters of output text seen in all (kept or not)."""
    replay_lost: bool = False
    """More text than ``replay_limit`` went by: a continuation or a replay can no longer be
    checked against it, so the stream is not recovered mid-way (memory stays bounded)."""
    last_text: str = ""
    """The output text of the last event observed ("" when it carried none)."""
    non_text_output: bool = False
    """Output other than answer text was emitted (tool calls, reasoning): a continuation or a
    replay cannot reproduce it exactly, so such a stream is not recovered mid-way."""
    finished: bool = False
    """The answer is complete (finish_reason / stop_reason seen) even if the terminator is missing."""
    usage_seen: bool = False
    usage: Usage | None = None
    """Token usage as the stream reported it (the usage chunk, response.completed, message_start/delta)."""
    terminal_seen: bool = False
    error: dict[str, Any] | None = None
    malformed: int = 0
    # Envelope facts for synthesising events in this stream's own ids.
    response_id: str | None = None
    item_id: str | None = None
    output_index: int = 0
    content_index: int = 0
    block_index: int = 0
    chunk_id: str | None = None
    model: str | None = None
    created: int = 0
    sequence_number: int = -1
    _loose: int = 0
    """Pieces at the end of :attr:`text` not joined into a run yet."""

    def sent_text(self) -> str:
        return "".join(self.text)

    def keep_text(self, piece: str) -> None:
        """Record output text (an upstream's, or text the gateway wrote itself)."""
        self.last_text += piece
        self.text_chars += len(piece)
        if self.replay_lost:
            return
        if self.text_chars > self.replay_limit:
            self.text.clear()
            self._loose = 0
            self.replay_lost = True
            return
        text = self.text
        text.append(piece)
        self._loose += 1
        if self._loose >= _COMPACT_PIECES:
            # Join the newest pieces into one run; older runs stay (each character copied once).
            run = "".join(text[-_COMPACT_PIECES:])
            del text[-_COMPACT_PIECES:]
            text.append(run)
            self._loose = 0

    def observe(self, event: Event) -> Kind:
        """What ``event`` is. Whatever an upstream sends, this never raises: an event that is not
        JSON, or whose fields have the wrong types, is :attr:`Kind.MALFORMED` (dropped and
        counted by the caller) and changes nothing the tracker knows."""
        self.last_text = ""
        if not event.data:
            return Kind.META  # comments, keep-alives, bare event lines
        try:
            if self.api is Api.OPENAI_CHAT:
                return self._chat(event)
            if self.api is Api.OPENAI_RESPONSES:
                return self._responses(event)
            return self._anthropic(event)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # A shape no check below foresaw (the checks are the rule; this is the last line).
            self.malformed += 1
            return Kind.MALFORMED

    # -- OpenAI Chat Completions --------------------------------------------------------
    def _chat(self, event: Event) -> Kind:
        if event.data == b"[DONE]":
            self.terminal_seen = True
            return Kind.TERMINAL
        payload = _loads(event)
        if not isinstance(payload, dict):
            self.malformed += 1
            return Kind.MALFORMED
        if "error" in payload:
            self.error = payload
            return Kind.ERROR
        self.chunk_id = _text(payload, "id", self.chunk_id)
        self.model = _text(payload, "model", self.model)
        self.created = _count(payload, "created", self.created)
        if payload.get("usage"):
            self.usage_seen = True
            self.usage = from_usage_object(Api.OPENAI_CHAT, payload["usage"])
        choices = payload.get("choices")
        if not isinstance(choices, list):
            self.malformed += 1
            return Kind.MALFORMED
        kind: Kind | None = None
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                self.keep_text(content)
                kind = Kind.CONTENT
            if isinstance(delta, dict):
                if delta.get("tool_calls") or delta.get("function_call"):
                    self.non_text_output = True
                    kind = Kind.CONTENT
                if delta.get("reasoning_content") or delta.get("reasoning") or delta.get("refusal"):
                    self.non_text_output = True
                    kind = Kind.CONTENT
            if choice.get("finish_reason"):
                self.finished = True
                kind = Kind.CONTENT  # an empty answer is still an answer
        if kind is not None:
            return kind
        # A role-only chunk, a usage chunk, an empty delta.
        return Kind.PREAMBLE if not self.text_chars and not self.finished else Kind.META

    # -- OpenAI Responses ---------------------------------------------------------------
    def _responses(self, event: Event) -> Kind:
        payload = _loads(event)
        if not isinstance(payload, dict):
            self.malformed += 1
            return Kind.MALFORMED
        kind_name = _event_type(payload, event)
        if kind_name is None:
            self.malformed += 1
            return Kind.MALFORMED
        self.sequence_number = _count(payload, "sequence_number", self.sequence_number)
        if kind_name in ("response.created", "response.in_progress", "response.queued"):
            response = payload.get("response")
            if isinstance(response, dict):
                self.response_id = _text(response, "id", self.response_id)
                self.model = _text(response, "model", self.model)
            return Kind.PREAMBLE
        if kind_name == "response.output_item.added":
            item = payload.get("item")
            self.output_index = _count(payload, "output_index", self.output_index)
            if isinstance(item, dict):
                self.item_id = _text(item, "id", self.item_id)
                if item.get("type") not in (None, "message", "reasoning"):
                    self.non_text_output = True
                    return Kind.CONTENT
            return Kind.PREAMBLE if not self.text_chars else Kind.META
        if kind_name == "response.content_part.added":
            self.content_index = _count(payload, "content_index", self.content_index)
            return Kind.PREAMBLE if not self.text_chars else Kind.META
        if kind_name == "response.output_text.delta":
            delta = payload.get("delta")
            if not isinstance(delta, str):
                self.malformed += 1
                return Kind.MALFORMED
            self.keep_text(delta)
            self.item_id = _text(payload, "item_id", self.item_id)
            return Kind.CONTENT
        if kind_name.endswith(".delta"):
            self.non_text_output = True  # reasoning, tool call arguments, audio...
            return Kind.CONTENT
        if kind_name == "response.output_item.done":
            item = payload.get("item")
            if isinstance(item, dict) and item.get("type") not in (None, "message"):
                self.non_text_output = True
            return Kind.CONTENT
        if kind_name in ("response.completed", "response.incomplete"):
            self.terminal_seen = self.finished = self.usage_seen = True
            response = payload.get("response")
            if isinstance(response, dict):
                self.usage = from_usage_object(Api.OPENAI_RESPONSES, response.get("usage"))
            return Kind.TERMINAL
        if kind_name in ("response.failed", "error"):
            self.error = payload
            return Kind.ERROR
        return Kind.META

    # -- Anthropic Messages -------------------------------------------------------------
    def _anthropic(self, event: Event) -> Kind:
        payload = _loads(event)
        if not isinstance(payload, dict):
            self.malformed += 1
            return Kind.MALFORMED
        kind_name = _event_type(payload, event)
        if kind_name is None:
            self.malformed += 1
            return Kind.MALFORMED
        if kind_name == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self.response_id = _text(message, "id", self.response_id)
                self.model = _text(message, "model", self.model)
                self.usage = from_usage_object(Api.ANTHROPIC_MESSAGES, message.get("usage"))
            return Kind.PREAMBLE
        if kind_name == "content_block_start":
            self.block_index = _count(payload, "index", self.block_index)
            block = payload.get("content_block")
            if isinstance(block, dict) and block.get("type") not in (None, "text", "thinking"):
                self.non_text_output = True
                return Kind.CONTENT
            return Kind.PREAMBLE if not self.text_chars else Kind.META
        if kind_name == "content_block_delta":
            delta = payload.get("delta")
            self.block_index = _count(payload, "index", self.block_index)
            if isinstance(delta, dict):
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    self.keep_text(delta["text"])
                else:  # input_json_delta, thinking_delta, signature_delta...
                    self.non_text_output = True
            return Kind.CONTENT
        if kind_name == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.finished = True
            self.usage_seen = True
            later = from_usage_object(Api.ANTHROPIC_MESSAGES, payload.get("usage"))
            if later is not None:
                self.usage = later if self.usage is None else self.usage.merge(later)
            return Kind.CONTENT if self.finished else Kind.META
        if kind_name == "message_stop":
            self.terminal_seen = True
            return Kind.TERMINAL
        if kind_name == "error":
            self.error = payload
            return Kind.ERROR
        if kind_name == "ping":
            return Kind.META if self.text_chars else Kind.PREAMBLE
        return Kind.META


def _event_type(payload: dict[str, Any], event: Event) -> str | None:
    """The event's type (its JSON ``type``, else the SSE ``event:`` name); ``None`` when the
    payload's ``type`` is not text."""
    kind = payload.get("type")
    if kind is None or kind == "":
        return event.name or ""
    return kind if isinstance(kind, str) else None


def _text(payload: dict[str, Any], key: str, default: str | None) -> str | None:
    """A string field, else ``default`` (an upstream's id of another type is ignored)."""
    value = payload.get(key)
    return value if isinstance(value, str) else default


def _count(payload: dict[str, Any], key: str, default: int) -> int:
    """A non-negative integer field, else ``default``."""
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _loads(event: Event) -> Any:
    try:
        event.payload = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return event.payload
