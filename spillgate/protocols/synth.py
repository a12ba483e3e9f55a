"""Events the gateway writes into a client's stream itself, in that stream's own ids.

Each API's events are written by its adapter (``protocols/adapter.py``); these are the entry
points the gateway calls.
"""

from __future__ import annotations

from spillgate.protocols.adapter import adapter_for, next_sequence, sse
from spillgate.protocols.events import StreamTracker


def text_delta(tracker: StreamTracker, text: str) -> bytes:
    """A content event carrying ``text``, continuing the client's stream."""
    return adapter_for(tracker.api).text_delta(tracker, text)


def renumber(tracker: StreamTracker, raw_payload: dict[str, object], name: str | None) -> bytes:
    """An event from another upstream, renumbered to continue the client's sequence (Responses)."""
    if "sequence_number" in raw_payload:
        raw_payload = {**raw_payload, "sequence_number": next_sequence(tracker)}
    return sse(name, raw_payload)


def stream_end(tracker: StreamTracker) -> bytes:
    """The normal terminator for a stream whose answer is complete but whose upstream never sent it
    (``b""`` for Responses: only the upstream's response.completed can end it)."""
    return adapter_for(tracker.api).stream_end(tracker)


def in_band_error(tracker: StreamTracker, message: str) -> bytes:
    """An error the client retries, ending a stream that cannot be completed.

    Responses: ``response.failed`` with code ``server_error`` (Codex retries it; never
    ``server_is_overloaded``, which it treats as fatal). Anthropic: ``event: error`` with
    ``overloaded_error``. Chat: an error chunk (the caller then closes without ``[DONE]``).
    """
    return adapter_for(tracker.api).in_band_error(tracker, message)


def rewrite(tracker: StreamTracker, payload: object, name: str | None, raw: bytes) -> bytes:
    """Another upstream's event in the ids and sequence of the client's stream ``tracker`` follows."""
    return adapter_for(tracker.api).rewrite(tracker, payload, name, raw)
