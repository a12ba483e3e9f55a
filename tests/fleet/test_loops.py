"""The shared loop signal's cost: a session's requests on one instance count, with what they cost,
in the other's report; a message of an older instance (no cost in it) counts as of unknown cost.

The two instances are wired by a stand-in for the Redis channel that carries each message as the
channel would (JSON), so this is about the messages, not about Redis (tests/fleet/test_instances.py)."""

from __future__ import annotations

from typing import Any, cast

import orjson

from spillgate.fleet.link import Handler, RedisLink
from spillgate.fleet.observations import SharedLoops
from spillgate.observe.loops import LoopReport
from tests.clock import FakeClock


class Channel:
    """Delivers what one end publishes to the other end's handlers, through JSON."""

    def __init__(self) -> None:
        self.ends: list[End] = []


class End:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.handlers: dict[str, Handler] = {}
        self.sent: list[dict[str, Any]] = []
        channel.ends.append(self)

    def on(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        self.sent.append(body)
        for end in self.channel.ends:
            if end is not self:
                end.handlers[kind](orjson.loads(orjson.dumps(body)))


def pair(clock: FakeClock) -> tuple[SharedLoops, SharedLoops, End]:
    channel = Channel()
    first, second = End(channel), End(channel)
    loops = SharedLoops(cast(RedisLink, first), clock), SharedLoops(cast(RedisLink, second), clock)
    for detector in loops:
        detector.threshold = 4
    return loops[0], loops[1], first


def test_a_sessions_cost_on_one_instance_counts_on_the_other() -> None:
    clock = FakeClock(1000.0)
    a, b, _ = pair(clock)
    a.observe("s", 42, True, 0.5)
    a.observe("s", 42, True, None)
    b.observe("s", 42, True, 0.25)
    b.observe("s", 42, True, 0.25)
    expected = [LoopReport("s", "repeating", 4, 1.0, 1)]
    assert a.looping() == expected and b.looping() == expected


def test_a_message_without_a_cost_counts_as_unknown() -> None:
    clock = FakeClock(1000.0)
    a, b, first = pair(clock)
    for _ in range(4):
        first.publish("loop", {"s": "old", "f": 7, "ok": False})  # an older instance: no "c"
    assert b.looping() == [LoopReport("old", "failing", 4, 0.0, 4)]
    assert a.looping() == []  # its own publications are not replayed on itself
    a.observe("s", 1, True, 0.125)
    assert first.sent[-1] == {"s": "s", "f": 1, "ok": True, "c": 0.125}
