"""Turn a healthy SSE event sequence plus a :class:`Fault` into what is actually written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spillgate.fake.behavior import Fault
from spillgate.fake.content import MALFORMED_FRAME, StreamEvents, stream_error_frame

StreamEnding = Literal["end", "cut", "stall"]
"""After the last frame: finish the chunked body, drop the connection, or go quiet."""


@dataclass(frozen=True, slots=True)
class StreamScript:
    frames: tuple[bytes, ...]
    first_content: int
    """Index of the frame the fault's ``first_content_delay`` is waited before; ``len(frames)``:
    before the ending; -1: never."""
    ending: StreamEnding
    outcome: str
    """``ok``, ``cut``, ``stall``, ``stream_error``, ``malformed`` or ``omit_done``."""


def script_stream(events: StreamEvents, fault: Fault) -> StreamScript:
    """Apply ``fault``'s stream faults to ``events``.

    Indexes count every frame written, a malformed one included. The earliest of
    ``cut_after_events`` / ``stall_after_events`` / ``stream_error_after_events`` that falls
    within the stream wins (on a tie: cut, then stall, then error).
    """
    frames = list(events.frames)
    first = events.first_content
    outcome = "ok"
    if fault.omit_done:
        frames.pop()
        outcome = "omit_done"
    malformed_at = fault.malformed_at_event
    if malformed_at is not None and malformed_at <= len(frames):
        frames.insert(malformed_at, MALFORMED_FRAME)
        if malformed_at <= first:
            first += 1
        outcome = "malformed"
    ending: StreamEnding = "end"
    stop: tuple[int, int, str] | None = None
    for rank, (at, kind) in enumerate(
        (
            (fault.cut_after_events, "cut"),
            (fault.stall_after_events, "stall"),
            (fault.stream_error_after_events, "stream_error"),
        )
    ):
        if at is not None and at <= len(frames) and (stop is None or (at, rank) < stop[:2]):
            stop = (at, rank, kind)
    if stop is not None:
        at, _, kind = stop
        del frames[at:]
        outcome = kind
        if kind == "stream_error":
            sequence = sum(1 for frame in frames if frame is not MALFORMED_FRAME)
            code, message = fault.stream_error(events.protocol)
            frames.append(stream_error_frame(events, sequence, code, message))
        else:
            ending = "cut" if kind == "cut" else "stall"
    if first > len(frames):
        first = -1
    return StreamScript(tuple(frames), first, ending, outcome)
