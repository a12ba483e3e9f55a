"""A recovered primary serves again within 30 s of recovering, however long its outage lasted.

A discrete-event run on an injected clock, with the health settings a gateway gets from the
default configuration: requests arrive every quarter second; each one the primary's health
admits is an attempt that fails while the primary is down (at once, or after the try bound for
a silent primary) and succeeds once it is up again.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest

from spillgate.config.schema import Settings
from spillgate.gateway.runtime import health_config
from spillgate.resilience.health import HealthBoard
from spillgate.resilience.types import ErrorClass
from tests.clock import FakeClock

KEY = "account:k|primary"
ARRIVALS = 0.25
"""Seconds between requests."""
DEFAULTS = Settings()


@dataclass(frozen=True)
class Failure:
    error_class: ErrorClass
    takes: float
    """Seconds an attempt on the down primary runs before it fails."""


FAILURES = {
    "capacity (503)": Failure(ErrorClass.CAPACITY, 0.01),
    "overloaded (529)": Failure(ErrorClass.OVERLOADED, 0.01),
    "server error (500, the breaker)": Failure(ErrorClass.UPSTREAM_ERROR, 0.01),
    "silent (no headers until the try bound)": Failure(ErrorClass.TIMEOUT, DEFAULTS.resilience.try_timeout),
}


def run_outage(failure: Failure, down_for: float) -> tuple[float, int]:
    """Seconds from the primary's recovery to its first answer, and how many attempts it failed."""
    clock = FakeClock()
    board = HealthBoard(health_config(DEFAULTS), clock)
    events: list[tuple[float, int, str, bool]] = []  # (time, seq, what, failed)
    seq = 0
    t = 0.0
    while t < down_for + 120:
        events.append((t, seq, "arrive", False))
        seq += 1
        t += ARRIVALS
    heapq.heapify(events)
    failed = 0
    while events:
        at, _, what, failing = heapq.heappop(events)
        clock.now = at
        if what == "arrive":
            if not board.admit(KEY).allowed:
                continue  # the request went to the fallback
            down = at < down_for
            done = at + (failure.takes if down else 0.01)
            heapq.heappush(events, (done, seq, "done", down))
            seq += 1
        elif failing:
            failed += 1
            board.record_failure(KEY, failure.error_class)
        else:
            board.record_success(KEY)
            if at >= down_for:
                return at - down_for, failed
    raise AssertionError("the primary never served again")


OFFSETS = [i * 0.5 for i in range(41)]
"""Recovery moments spread over a whole capped period: the worst phase against the probes counts."""


@pytest.mark.parametrize("down_for", [60.0, 300.0, 1800.0], ids=["60s", "5min", "30min"])
@pytest.mark.parametrize("name", list(FAILURES))
def test_a_recovered_primary_serves_again_within_30s(name: str, down_for: float) -> None:
    failure = FAILURES[name]
    runs = [(offset, *run_outage(failure, down_for + offset)) for offset in OFFSETS]
    offset, recovered_after, _ = max(runs, key=lambda run: run[1])
    assert recovered_after <= 30.0, (
        f"{name}: down {down_for + offset:g}s, served {recovered_after:.1f}s later"
    )
    # ...while the outage cost about one probe per capped period, not a request every quarter second
    # (a silent primary takes every request of its first try bound before the first one fails).
    worst = max(failed for _, _, failed in runs)
    bound = (down_for + 20) / 20.0 + 8 + (failure.takes / ARRIVALS if failure.takes > 1 else 0)
    assert worst <= bound, f"{name}: {worst} failed attempts in {down_for:g}s"


def test_the_default_caps_meet_the_30s_promise() -> None:
    res = DEFAULTS.resilience
    assert res.cooldowns.capacity_max <= 25 and res.cooldowns.overloaded_max <= 25
    assert res.breaker.cooldown_max <= 25
