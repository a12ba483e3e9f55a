"""Money in the timeline: spend and waste per bucket and model (waste on in-band errors apart),
unpriced attempts, and buckets of several workers merged — rows of an older version included."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spillgate.observe.events import Event
from spillgate.observe.timeline import ROW_FIELDS, Timeline
from tests.clock import FakeClock

from .priced import ATTEMPT
from .priced import REQUEST as PRICED_REQUEST

REQUEST = replace(PRICED_REQUEST, client_key=None)
CUT = replace(ATTEMPT, ok=False, error_class="stream_cut", cost_usd=0.5, wasted_usd=0.5)
REPLAY = replace(ATTEMPT, attempt=2, kind="replay", cost_usd=0.75)
REPLAYED = replace(REQUEST, recovered="replay", cost_usd=1.25, wasted_usd=0.5)
IN_BAND = replace(
    REQUEST, recovered="in_band_error", ok=False, error_class="stream_cut", cost_usd=1.0, wasted_usd=1.0
)
UNPRICED = replace(ATTEMPT, cost_usd=None, wasted_usd=None)

# (events as (time, event), expected per bucket of "coder" over the last 30 s:
#  (spend, wasted, wasted on in-band errors, unpriced attempts))
CASES: list[tuple[str, list[tuple[float, Event]], list[tuple[float, float, float, int]]]] = [
    (
        "an answered request: spent, nothing wasted",
        [(1005.0, ATTEMPT), (1005.0, REQUEST)],
        [(0, 0, 0, 0), (0, 0, 0, 0), (0.25, 0, 0, 0)],
    ),
    (
        "a replayed cut stream: its first attempt is wasted, not on an in-band error",
        [(1001.0, CUT), (1002.0, REPLAY), (1002.0, REPLAYED)],
        [(0, 0, 0, 0), (0, 0, 0, 0), (1.25, 0.5, 0, 0)],
    ),
    (
        "an in-band error wastes all it cost, counted as such",
        [(985.0, CUT), (985.0, replace(CUT, attempt=2, kind="replay")), (985.0, IN_BAND)],
        [(1.0, 1.0, 1.0, 0), (0, 0, 0, 0), (0, 0, 0, 0)],
    ),
    (
        "unknown prices are counted apart, never as 0",
        [(1000.0, UNPRICED), (1000.0, replace(REQUEST, cost_usd=None, wasted_usd=None)), (1001.0, ATTEMPT)],
        [(0, 0, 0, 0), (0, 0, 0, 0), (0.25, 0, 0, 1)],
    ),
    (
        "a 503 refusal costs nothing",
        [
            (1003.0, replace(ATTEMPT, ok=False, status=503, cost_usd=0.0)),
            (1003.0, replace(ATTEMPT, kind="failover")),
        ],
        [(0, 0, 0, 0), (0, 0, 0, 0), (0.25, 0, 0, 0)],
    ),
]


@pytest.mark.parametrize(("name", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_spend_buckets(
    name: str, events: list[tuple[float, Event]], expected: list[tuple[float, float, float, int]]
) -> None:
    clock = FakeClock(0.0)
    timeline = Timeline(bucket_seconds=10, buckets=6, clock=clock)
    for at, event in events:
        clock.now = at
        timeline(event)
    clock.now = 1005.0
    view = timeline.view(30)
    got = [(b.spend_usd, b.wasted_usd, b.wasted_in_band_usd, b.unpriced) for b in view.models["coder"]]
    assert got == expected
    assert [(b.spend_usd, b.wasted_usd, b.wasted_in_band_usd, b.unpriced) for b in view.total] == expected


def test_the_total_sums_the_models_money() -> None:
    timeline = Timeline(bucket_seconds=10, buckets=6, clock=FakeClock(1000.0))
    for event in (ATTEMPT, replace(ATTEMPT, public_model="other"), CUT, UNPRICED):
        timeline(event)
    (total,) = timeline.view(10).total
    assert (total.spend_usd, total.wasted_usd, total.unpriced) == (1.0, 0.5, 1)


def test_money_merges_across_workers_and_old_rows_merge_without_it() -> None:
    clock = FakeClock(1000.0)
    mine, theirs = Timeline(clock=clock), Timeline(clock=clock)
    for event in (CUT, REPLAY, REPLAYED):
        mine(event)
    for event in (CUT, replace(CUT, attempt=2), IN_BAND, UNPRICED):
        theirs(event)
    (bucket,) = mine.with_others([theirs.export()]).view(10).models["coder"]
    assert (bucket.spend_usd, bucket.wasted_usd, bucket.wasted_in_band_usd, bucket.unpriced) == (
        2.25,
        1.5,
        1.0,
        1,
    )
    assert (bucket.attempts, bucket.requests) == (5, 2)
    # A worker of the version before money (during a rolling restart): its rows are shorter.
    older = [row[:ROW_FIELDS] for row in theirs.export()]
    (bucket,) = mine.with_others([older]).view(10).models["coder"]
    assert (bucket.spend_usd, bucket.wasted_usd, bucket.unpriced) == (1.25, 0.5, 0)
    assert (bucket.attempts, bucket.requests, bucket.failed) == (5, 2, 1)
