"""The retry budget: floor, ratio, sliding window, counters; and the bucket ring under it."""

from __future__ import annotations

import pytest

from spillgate.resilience.budget import BudgetSnapshot, RetryBudget, SlidingCounts
from tests.clock import FakeClock


def spend_all(budget: RetryBudget, tries: int = 1000) -> int:
    """How many extra attempts are granted before the first refusal."""
    granted = 0
    while granted < tries and budget.try_spend():
        granted += 1
    return granted


# ratio, floor, client requests in the window -> extra attempts granted
CASES = [
    ("no traffic: the floor", 0.2, 10, 0, 10),
    ("light traffic: still the floor", 0.2, 10, 40, 10),
    ("at the crossover", 0.2, 10, 50, 10),
    ("heavy traffic: the ratio", 0.2, 10, 100, 20),
    ("ratio rounds up to the next whole attempt", 0.2, 0, 12, 3),  # 2 < 2.4 allows a third
    ("zero floor, zero traffic: nothing", 0.2, 0, 0, 0),
    ("zero ratio: only the floor", 0.0, 3, 1000, 3),
    ("ratio of one: an extra attempt per request", 1.0, 0, 7, 7),
]


@pytest.mark.parametrize(("case", "ratio", "floor", "requests", "granted"), CASES, ids=[c[0] for c in CASES])
def test_floor_and_ratio(case: str, ratio: float, floor: int, requests: int, granted: int) -> None:
    budget = RetryBudget(ratio=ratio, floor=floor, window=10.0, clock=FakeClock())
    for _ in range(requests):
        budget.record_request()
    assert spend_all(budget) == granted


def test_window_slides() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, floor=0, window=10.0, clock=clock)
    for _ in range(20):
        budget.record_request()
    assert spend_all(budget) == 10
    clock.now = 5.0
    assert not budget.try_spend()  # everything is still in the window
    for _ in range(4):
        budget.record_request()
    assert spend_all(budget) == 2  # 24 requests allow 12
    clock.now = 10.0
    # the slice of t=0 left the window: 4 requests and 2 extra remain
    assert budget.snapshot().requests_in_window == 4
    assert budget.snapshot().extra_in_window == 2
    assert not budget.try_spend()  # 2 < 0.5 * 4 is false
    clock.now = 15.0
    assert budget.snapshot() == BudgetSnapshot(0, 0, 0.0, 24, 12, 4)  # each spend_all ends on a refusal


def test_floor_refills_after_an_outage() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, floor=10, window=10.0, clock=clock)
    assert spend_all(budget) == 10
    clock.now = 9.9
    assert not budget.try_spend()
    clock.now = 10.0
    assert spend_all(budget) == 10


def test_counters_and_snapshot() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.1, floor=2, window=10.0, clock=clock)
    for _ in range(30):
        budget.record_request()
    results = [budget.try_spend() for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert (budget.requests_total, budget.extra_total, budget.rejected_total) == (30, 3, 2)
    assert budget.snapshot() == BudgetSnapshot(
        requests_in_window=30,
        extra_in_window=3,
        limit=3.0,
        requests_total=30,
        extra_total=3,
        rejected_total=2,
    )
    clock.now = 100.0
    snap = budget.snapshot()
    assert (snap.requests_in_window, snap.extra_in_window, snap.limit) == (0, 0, 2.0)
    assert (snap.requests_total, snap.extra_total, snap.rejected_total) == (30, 3, 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"ratio": float("nan")}, {"floor": -1}, {"window": 0.0}, {"window": float("inf")}],
    ids=str,
)
def test_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


# (time, a, b) additions, then (time, expected totals) with a 10 s window of 10 buckets
RING_CASES = [
    ("one slice", [(0.0, 1, 0), (0.5, 2, 1)], 0.9, (3, 1)),
    ("spread over the window", [(0.0, 1, 0), (5.0, 1, 0), (9.9, 1, 1)], 9.9, (3, 1)),
    ("the oldest slice leaves", [(0.0, 1, 0), (5.0, 1, 0), (9.9, 1, 1)], 10.0, (2, 1)),
    ("a long silence clears all", [(0.0, 5, 5), (3.0, 1, 1)], 100.0, (0, 0)),
    ("a gap just under the window", [(0.0, 1, 0), (9.5, 1, 0)], 9.99, (2, 0)),
    ("the ring wraps around", [(float(t), 1, 0) for t in range(25)], 24.5, (10, 0)),
    ("a clock stepping back counts in the newest slice", [(5.0, 1, 0), (1.0, 1, 0)], 5.0, (2, 0)),
    ("negative times", [(-3.0, 1, 0), (-0.5, 1, 0)], 0.0, (2, 0)),
]


@pytest.mark.parametrize(("case", "adds", "at", "totals"), RING_CASES, ids=[c[0] for c in RING_CASES])
def test_sliding_counts(
    case: str, adds: list[tuple[float, int, int]], at: float, totals: tuple[int, int]
) -> None:
    counts = SlidingCounts(10.0)
    for now, a, b in adds:
        counts.add(now, a, b)
    assert counts.totals(at) == totals


def test_sliding_counts_memory_is_fixed() -> None:
    counts = SlidingCounts(10.0, buckets=10)
    for i in range(100_000):
        counts.add(i * 0.01, 1, 0)
    assert counts.totals(999.99)[0] <= 1000
    assert len(counts._a) == 10


def test_peak_requests_in_flight_are_a_floor_for_a_cold_burst() -> None:
    """A burst of concurrent requests meeting one fresh failure may each go around it once."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, floor=2, window=10.0, clock=clock)
    for n in range(1, 17):
        budget.record_request(in_flight=n)
    assert [budget.try_spend() for _ in range(17)] == [True] * 16 + [False]
    # The peak is forgotten with the window: then max(floor, 0.2 x requests) applies again.
    clock.now += 11
    for _ in range(16):
        budget.record_request(in_flight=1)
    assert [budget.try_spend() for _ in range(5)] == [True] * 4 + [False]
