"""The SSE splitter: whole events, bytes preserved, however the stream is chunked; linear and
bounded (issue 10, item 3)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spillgate.protocols.sse import EventTooLarge, SseSplitter

event_text = st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=20)


@st.composite
def stream_and_cuts(draw: st.DrawFn) -> tuple[bytes, bytes, list[int]]:
    sep = draw(st.sampled_from([b"\n\n", b"\r\n\r\n"]))
    line = sep[: len(sep) // 2]
    events = [
        line.join(b"data: " + t.encode() for t in draw(st.lists(event_text, min_size=1, max_size=3))) + sep
        for _ in range(draw(st.integers(0, 6)))
    ]
    tail = draw(st.sampled_from([b"", b"data: unfinished", b"data: x" + line]))
    stream = b"".join(events) + tail
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return stream, sep, cuts


@settings(max_examples=300, deadline=None, database=None)
@given(stream_and_cuts())
def test_any_chunking_gives_the_same_whole_events(case: tuple[bytes, bytes, list[int]]) -> None:
    stream, sep, cuts = case
    splitter = SseSplitter()
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got = splitter.feed(stream[start:end])
        assert got == b"" or got.endswith(sep)
        out.append(got)
    whole = SseSplitter()
    assert b"".join(out) == whole.feed(stream)
    assert b"".join(out) + splitter.tail() == stream


def _feed_one_line(pieces: int) -> float:
    piece = b"x" * 65536
    splitter = SseSplitter(max_event=1 << 40)
    # CPU time of this process: a busy machine makes it wait, not work (wall time made it flaky).
    started = time.process_time()
    splitter.feed(b"data: ")
    for _ in range(pieces):
        assert splitter.feed(piece) == b""
    assert splitter.feed(b"\n\n").endswith(b"x\n\n")
    return time.process_time() - started


def test_one_huge_line_costs_linear_time() -> None:
    """64 MiB in 64 KiB pieces without a line end: linear splitting costs tens of milliseconds of
    CPU; the old splitter copied the whole buffer for every piece (~32 GB of copying here, 29 s
    for one 200 MiB line). The bound is far from both, so a busy machine cannot flip it."""
    assert _feed_one_line(1024) < 2.0


def test_an_event_past_the_limit_is_refused() -> None:
    bounded = SseSplitter(max_event=1024 * 1024)
    with pytest.raises(EventTooLarge):
        for _ in range(17):
            bounded.feed(b"x" * 65536)
