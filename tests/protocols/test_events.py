"""Reading each API's stream events: preamble, content, ending, failure; and the events we write."""

from __future__ import annotations

import orjson
import pytest

from spillgate.fake.content import stream_events
from spillgate.protocols.apis import Api
from spillgate.protocols.events import Kind, StreamTracker, parse_event, split_events
from spillgate.protocols.synth import in_band_error, stream_end, text_delta

FAKE = {
    Api.OPENAI_CHAT: "openai-chat",
    Api.OPENAI_RESPONSES: "openai-responses",
    Api.ANTHROPIC_MESSAGES: "anthropic-messages",
}


def kinds(api: Api, frames: list[bytes]) -> tuple[StreamTracker, list[Kind]]:
    tracker = StreamTracker(api)
    return tracker, [tracker.observe(parse_event(f)) for f in frames]


@pytest.mark.parametrize("api", list(Api))
def test_a_real_stream_reads_as_preamble_content_terminal(api: Api) -> None:
    events = stream_events(FAKE[api], "m", ("Hel", "lo", "!"), 10, 0, True)  # type: ignore[arg-type]
    tracker, seen = kinds(api, list(events.frames))
    first_content = seen.index(Kind.CONTENT)
    assert set(seen[:first_content]) <= {Kind.PREAMBLE, Kind.META}
    assert Kind.PREAMBLE in seen[:first_content]
    assert seen[-1] is Kind.TERMINAL
    assert tracker.sent_text() == "Hello!"
    assert tracker.finished and tracker.terminal_seen and not tracker.non_text_output


@pytest.mark.parametrize(
    ("api", "frame", "kind"),
    [
        (
            Api.OPENAI_CHAT,
            b'data: {"error": {"message": "overloaded", "code": "server_error"}}\n\n',
            Kind.ERROR,
        ),
        (Api.OPENAI_CHAT, b'data: {"broken\n\n', Kind.MALFORMED),
        (Api.OPENAI_CHAT, b": keep-alive\n\n", Kind.META),
        (
            Api.OPENAI_CHAT,
            b'data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}\n\n',
            Kind.CONTENT,
        ),
        (
            Api.OPENAI_RESPONSES,
            b'event: response.failed\ndata: {"type":"response.failed","response":{}}\n\n',
            Kind.ERROR,
        ),
        (Api.OPENAI_RESPONSES, b'event: error\ndata: {"type":"error","code":"x"}\n\n', Kind.ERROR),
        (
            Api.OPENAI_RESPONSES,
            b'event: response.incomplete\ndata: {"type":"response.incomplete"}\n\n',
            Kind.TERMINAL,
        ),
        (
            Api.OPENAI_RESPONSES,
            b"event: response.reasoning_summary_text.delta\n"
            b'data: {"type":"response.reasoning_summary_text.delta"}\n\n',
            Kind.CONTENT,
        ),
        (
            Api.ANTHROPIC_MESSAGES,
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n',
            Kind.ERROR,
        ),
        (Api.ANTHROPIC_MESSAGES, b'event: ping\ndata: {"type":"ping"}\n\n', Kind.PREAMBLE),
        (
            Api.ANTHROPIC_MESSAGES,
            b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
            b'"content_block":{"type":"tool_use"}}\n\n',
            Kind.CONTENT,
        ),
    ],
)
def test_single_events(api: Api, frame: bytes, kind: Kind) -> None:
    assert StreamTracker(api).observe(parse_event(frame)) is kind


def test_split_and_parse() -> None:
    blob = b"event: a\ndata: 1\n\ndata: 2\ndata: 3\n\n"
    events = split_events(blob)
    assert events == [b"event: a\ndata: 1\n\n", b"data: 2\ndata: 3\n\n"]
    parsed = parse_event(events[1])
    assert parsed.name is None and parsed.data == b"2\n3"


@pytest.mark.parametrize("api", list(Api))
def test_synthesised_events_continue_the_stream(api: Api) -> None:
    events = stream_events(FAKE[api], "m", ("Hel", "lo"), 10, 0, False)  # type: ignore[arg-type]
    tracker = StreamTracker(api)
    for frame in events.frames[:-3]:
        tracker.observe(parse_event(frame))
    seq = tracker.sequence_number
    delta = text_delta(tracker, " more")
    reader = StreamTracker(api)
    reader.response_id, reader.text = tracker.response_id, ["x"]
    assert reader.observe(parse_event(delta)) is Kind.CONTENT
    assert tracker.sent_text().endswith(" more")
    error = in_band_error(tracker, "broke")
    assert StreamTracker(api).observe(parse_event(error)) is Kind.ERROR
    if api is Api.OPENAI_RESPONSES:
        payload = orjson.loads(parse_event(error).data)
        assert payload["sequence_number"] == seq + 2
        assert payload["response"]["error"]["code"] == "server_error"
        assert payload["response"]["id"] == tracker.response_id
        assert stream_end(tracker) == b""
    elif api is Api.ANTHROPIC_MESSAGES:
        assert b"overloaded_error" in error
        assert StreamTracker(api).observe(parse_event(stream_end(tracker))) is Kind.TERMINAL
    else:
        assert stream_end(tracker) == b"data: [DONE]\n\n"


def frame(data: object, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


# Events whose fields have the wrong types (issue 10, item 4): malformed, never an exception.
WRONG_TYPES = [
    (Api.OPENAI_RESPONSES, frame({"type": True})),
    (Api.OPENAI_RESPONSES, frame({"type": 7, "delta": "x"})),
    (Api.OPENAI_RESPONSES, frame({"type": ["response.output_text.delta"]})),
    (Api.OPENAI_RESPONSES, frame({"type": "response.output_text.delta", "delta": 5})),
    (Api.ANTHROPIC_MESSAGES, frame({"type": {"a": 1}})),
    (Api.ANTHROPIC_MESSAGES, frame({"type": False}, "message_start")),
    (Api.OPENAI_CHAT, frame({"choices": "many"})),
    (Api.OPENAI_CHAT, frame([1, 2, 3])),
    (Api.OPENAI_CHAT, b"data: not json\n\n"),
]


@pytest.mark.parametrize(
    ("api", "raw"), WRONG_TYPES, ids=[f"{a.value}-{i}" for i, (a, _) in enumerate(WRONG_TYPES)]
)
def test_events_of_the_wrong_shape_are_malformed(api: Api, raw: bytes) -> None:
    tracker = StreamTracker(api)
    assert tracker.observe(parse_event(raw)) is Kind.MALFORMED
    assert tracker.malformed == 1 and tracker.text == []


# Fields of the wrong type in an otherwise usable event: ignored, the tracker keeps what it knew.
IGNORED_FIELDS = [
    (
        Api.OPENAI_RESPONSES,
        frame({"type": "response.created", "response": {"id": 5, "model": None}}),
        Kind.PREAMBLE,
    ),
    (
        Api.OPENAI_RESPONSES,
        frame({"type": "response.output_item.added", "output_index": "0", "item": "x"}),
        Kind.PREAMBLE,
    ),
    (
        Api.OPENAI_RESPONSES,
        frame({"type": "response.content_part.added", "content_index": -3}),
        Kind.PREAMBLE,
    ),
    (
        Api.OPENAI_RESPONSES,
        frame({"type": "response.completed", "response": {"usage": "lots"}}),
        Kind.TERMINAL,
    ),
    (
        Api.ANTHROPIC_MESSAGES,
        frame({"type": "content_block_start", "index": "x", "content_block": 3}),
        Kind.PREAMBLE,
    ),
    (
        Api.ANTHROPIC_MESSAGES,
        frame({"type": "content_block_delta", "index": None, "delta": []}),
        Kind.CONTENT,
    ),
    (
        Api.ANTHROPIC_MESSAGES,
        frame({"type": "message_delta", "delta": 1, "usage": {"output_tokens": "9"}}),
        Kind.META,
    ),
    (
        Api.OPENAI_CHAT,
        frame({"id": 1, "created": "now", "model": [], "choices": [{"delta": "hi"}]}),
        Kind.PREAMBLE,
    ),
]


@pytest.mark.parametrize(
    ("api", "raw", "kind"),
    IGNORED_FIELDS,
    ids=[f"{a.value}-{i}" for i, (a, _, _) in enumerate(IGNORED_FIELDS)],
)
def test_wrongly_typed_fields_are_ignored(api: Api, raw: bytes, kind: Kind) -> None:
    tracker = StreamTracker(api)
    assert tracker.observe(parse_event(raw)) is kind
    assert tracker.response_id is None and tracker.chunk_id is None and tracker.model is None
    assert (tracker.output_index, tracker.content_index, tracker.block_index, tracker.created) == (0, 0, 0, 0)
    # What the gateway would write next in this stream's ids still renders.
    assert text_delta(tracker, "more").startswith((b"data:", b"event:"))


@pytest.mark.parametrize("api", list(Api))
def test_the_text_kept_for_replay_is_bounded(api: Api) -> None:
    """Issue 10, item 3: an endless stream no longer grows the gateway; past the limit the
    stream is simply no longer replayable."""
    deltas = tuple(["x" * 100] * 50)  # 5,000 characters
    events = stream_events(FAKE[api], "m", deltas, 10, 0, True)  # type: ignore[arg-type]
    tracker = StreamTracker(api, replay_limit=1000)
    seen = [tracker.observe(parse_event(f)) for f in events.frames]
    assert seen[-1] is Kind.TERMINAL and Kind.CONTENT in seen
    assert tracker.replay_lost and tracker.text == [] and tracker.text_chars == 5000
    assert tracker.last_text == ""  # the terminal event carries no text
    short = StreamTracker(api, replay_limit=10_000)
    for f in events.frames:
        short.observe(parse_event(f))
    assert not short.replay_lost and short.sent_text() == "x" * 5000


def test_many_small_deltas_are_kept_compactly_and_in_order() -> None:
    """A stream of one-token deltas is kept as a few long strings, not one object per token, and
    reads back exactly."""
    tracker = StreamTracker(Api.OPENAI_CHAT, replay_limit=1_000_000)
    pieces = [f"t{i} " for i in range(10_000)]
    for piece in pieces:
        tracker.keep_text(piece)
    assert tracker.sent_text() == "".join(pieces)
    assert len(tracker.text) < 10_000 // 100
    assert tracker.text_chars == len("".join(pieces)) and not tracker.replay_lost
    for cut in (1, 127, 128, 129, 5000):
        partial = StreamTracker(Api.OPENAI_CHAT)
        for piece in pieces[:cut]:
            partial.keep_text(piece)
        assert partial.sent_text() == "".join(pieces[:cut])
