"""The timeline observer: events land in fixed time buckets per model; memory stays bounded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spillgate.observe.events import Event
from spillgate.observe.timeline import OTHER, Timeline
from tests.clock import FakeClock
from tests.observe.priced import UNPRICED_ATTEMPT as ATTEMPT
from tests.observe.priced import UNPRICED_REQUEST as REQUEST

FAILED = replace(REQUEST, ok=False, status=503, error_class="capacity")
FAILED_ATTEMPT = replace(ATTEMPT, ok=False, status=503, error_class="capacity", scope="account_model")


# (events as (time, event), window, expected per bucket of "coder": (requests, ok, failed, attempts,
#  failed_attempts, retries, failovers))
CASES: list[tuple[str, list[tuple[float, Event]], float, list[tuple[int, int, int, int, int, int, int]]]] = [
    (
        "one ok request in the current bucket",
        [(1005.0, ATTEMPT), (1005.0, REQUEST)],
        30,
        [(0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0), (1, 1, 0, 1, 0, 0, 0)],
    ),
    (
        "a failover recovered the request",
        [
            (1001.0, FAILED_ATTEMPT),
            (1001.0, replace(ATTEMPT, attempt=2, kind="failover")),
            (1002.0, REQUEST),
        ],
        10,
        [(1, 1, 0, 2, 1, 0, 1)],
    ),
    (
        "events split over buckets, an empty one in between",
        [
            (980.0, REQUEST),
            (981.0, FAILED),
            (1009.9, replace(ATTEMPT, kind="retry")),
        ],
        30,
        [(2, 1, 1, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 1, 0, 1, 0)],
    ),
    (
        "a bucket older than the window is not shown",
        [(950.0, REQUEST), (1000.0, FAILED)],
        20,
        [(0, 0, 0, 0, 0, 0, 0), (1, 0, 1, 0, 0, 0, 0)],
    ),
]


@pytest.mark.parametrize(("name", "events", "window", "expected"), CASES, ids=[c[0] for c in CASES])
def test_buckets(
    name: str,
    events: list[tuple[float, Event]],
    window: float,
    expected: list[tuple[int, int, int, int, int, int, int]],
) -> None:
    clock = FakeClock(0.0)
    timeline = Timeline(bucket_seconds=10, buckets=6, clock=clock)
    for at, event in events:
        clock.now = at
        timeline(event)
    clock.now = 1005.0
    view = timeline.view(window)
    series = view.models["coder"]
    got = [
        (b.requests, b.ok, b.failed, b.attempts, b.failed_attempts, b.retries, b.failovers) for b in series
    ]
    assert got == expected
    assert [b.start for b in series] == [1000.0 - 10 * (len(expected) - 1 - i) for i in range(len(expected))]
    assert view.start == series[0].start and view.bucket_seconds == 10
    totals = [(b.requests, b.failed, b.attempts) for b in view.total]
    assert totals == [(r, f, a) for r, _, f, a, *_ in expected]


def test_a_ring_slot_is_reused_for_a_later_bucket() -> None:
    clock = FakeClock(1000.0)
    timeline = Timeline(bucket_seconds=10, buckets=3, clock=clock)
    timeline(FAILED)
    clock.now = 1030.0  # the same slot (index % 3) three buckets later
    timeline(REQUEST)
    series = timeline.view().models["coder"]
    assert [(b.start, b.requests, b.failed) for b in series] == [
        (1010.0, 0, 0),
        (1020.0, 0, 0),
        (1030.0, 1, 0),
    ]


def test_error_classes_latency_and_kinds() -> None:
    clock = FakeClock(1000.0)
    timeline = Timeline(bucket_seconds=10, buckets=6, clock=clock)
    for event in (
        FAILED,
        replace(FAILED, error_class=None, status=502),
        replace(REQUEST, latency=0.2),
        FAILED_ATTEMPT,
        replace(FAILED_ATTEMPT, kind="probe"),
        replace(ATTEMPT, kind="continuation"),
    ):
        timeline(event)
    (bucket,) = timeline.view(10).models["coder"]
    assert bucket.errors == {"capacity": 1, "http_502": 1}
    assert bucket.attempt_errors == {"capacity": 2}
    assert (bucket.probes, bucket.recoveries) == (1, 1)
    assert (bucket.p50_ms, bucket.p95_ms) == (50.0, 250.0)  # bins: 30 ms -> <=50, 200 ms -> <=250


def test_models_past_the_limit_share_one_series() -> None:
    timeline = Timeline(bucket_seconds=10, buckets=6, max_models=2, clock=FakeClock(1000.0))
    for model in ("a", "b", "c", "d"):
        timeline(replace(REQUEST, public_model=model))
    view = timeline.view(10)
    assert sorted(view.models) == [OTHER, "a", "b"]
    assert view.models[OTHER][0].requests == 2
    assert view.total[0].requests == 4


def test_models_without_traffic_in_the_window_are_left_out() -> None:
    clock = FakeClock(1000.0)
    timeline = Timeline(bucket_seconds=10, buckets=60, clock=clock)
    timeline(replace(REQUEST, public_model="old"))
    clock.now = 1100.0
    timeline(REQUEST)
    assert list(timeline.view(30).models) == ["coder"]
    assert list(timeline.view().models) == ["coder", "old"]


def test_window_is_clamped_to_what_is_kept() -> None:
    timeline = Timeline(bucket_seconds=10, buckets=6, clock=FakeClock(1000.0))
    assert len(timeline.view(3600).total) == 6
    assert len(timeline.view(1).total) == 1
    assert timeline.span == 60
    with pytest.raises(ValueError):
        Timeline(bucket_seconds=0)


def test_the_timelines_of_several_workers_merge_bucket_by_bucket() -> None:
    """A worker's dashboard poll shows every worker: counts, error classes and latency histograms
    add up per bucket; a bucket another worker has not rolled over to yet counts only where it is."""
    clock = FakeClock(1000.0)
    mine, theirs = Timeline(clock=clock), Timeline(clock=clock)
    for event in (REQUEST, ATTEMPT, FAILED, FAILED_ATTEMPT):
        mine(event)
    theirs(replace(REQUEST, latency=2.0))
    theirs(FAILED)
    clock.now += 10
    theirs(REQUEST)
    merged = mine.with_others([theirs.export()])
    view = merged.view(20)
    first, second = view.models["coder"]
    assert (first.requests, first.ok, first.failed, first.attempts, first.failed_attempts) == (4, 2, 2, 2, 1)
    assert first.errors == {"capacity": 2}
    assert first.p95_ms == 2500.0  # the other worker's slow request is in the merged histogram
    assert second.requests == 1
    assert mine.view(20).models["coder"][0].requests == 2  # the worker's own timeline is untouched
    # A malformed row from another version is left out, not raised.
    assert mine.with_others([[["coder", "x"]]]).view(20).models["coder"][0].requests == 2
