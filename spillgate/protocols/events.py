"""SSE events of the wire APIs: split, parse, and tell content from preamble, ending and failure.

The gateway relays event bytes untouched on the normal path; a :class:`StreamTracker` only
reads them to know where the stream is (has content reached the client? did it end
normally? did it fail in-stream?) and to keep the text sent so far for recovery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from spillgate.protocols.adapter import adapter_for
from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage

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
    _observe: Callable[[StreamTracker, Event], Kind] = field(init=False, repr=False, compare=False)
    """The API's own reader (its adapter's ``observe``), bound once per stream."""

    def __post_init__(self) -> None:
        self._observe = adapter_for(self.api).observe

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
            return self._observe(self, event)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # A shape no check of the adapter foresaw (the checks are the rule; this is the last line).
            self.malformed += 1
            return Kind.MALFORMED


def event_type(payload: dict[str, Any], event: Event) -> str | None:
    """The event's type (its JSON ``type``, else the SSE ``event:`` name); ``None`` when the
    payload's ``type`` is not text."""
    kind = payload.get("type")
    if kind is None or kind == "":
        return event.name or ""
    return kind if isinstance(kind, str) else None


def typed_payload(tracker: StreamTracker, event: Event) -> tuple[dict[str, Any], str] | None:
    """An event's JSON object and its type (Responses and Messages events are typed); ``None``,
    counted as malformed on ``tracker``, when it is not an object or its type is not text."""
    payload = load_payload(event)
    if isinstance(payload, dict):
        kind_name = event_type(payload, event)
        if kind_name is not None:
            return payload, kind_name
    tracker.malformed += 1
    return None


def text_field(payload: dict[str, Any], key: str, default: str | None) -> str | None:
    """A string field, else ``default`` (an upstream's id of another type is ignored)."""
    value = payload.get(key)
    return value if isinstance(value, str) else default


def count_field(payload: dict[str, Any], key: str, default: int) -> int:
    """A non-negative integer field, else ``default``."""
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def load_payload(event: Event) -> Any:
    try:
        event.payload = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return event.payload
