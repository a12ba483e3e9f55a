"""Client-key limits: the token bucket, budget periods and the limiter's decisions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spillgate.config.schema import ClientKey, KeyLimits
from spillgate.limits import KeyLimiter
from spillgate.limits.bucket import TokenBucket
from spillgate.limits.periods import period_bounds
from spillgate.observe.events import RequestFinished


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("capacity", "taken", "elapsed", "amount", "wait"),
    [
        (60, 0, 0.0, 1, 0.0),  # full bucket
        (60, 60, 0.0, 1, 1.0),  # empty: one per second comes back
        (60, 60, 0.5, 1, 0.5),
        (60, 60, 2.0, 1, 0.0),
        (6, 6, 0.0, 1, 10.0),  # 6 per minute: one every 10 s
        (100, 160, 0.0, 0.0, 36.0),  # in debt by 60 tokens at 100/min
        (100, 0, 120.0, 101, 0.6),  # never holds more than its capacity
    ],
)
def test_token_bucket_wait(capacity: int, taken: float, elapsed: float, amount: float, wait: float) -> None:
    bucket = TokenBucket(capacity, now=0.0)
    bucket.take(taken, 0.0)
    assert bucket.wait_for(amount, elapsed) == pytest.approx(wait, abs=1e-6)


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("day", "2026-11-22T05:01:02", "2026-11-22T00:00:00", "2026-11-23T00:00:00"),
        ("month", "2026-11-22T05:01:02", "2026-11-01T00:00:00", "2026-12-01T00:00:00"),
        ("month", "2026-12-31T23:59:59", "2026-12-01T00:00:00", "2027-01-01T00:00:00"),
        ("day", "2028-02-29T12:00:00", "2028-02-29T00:00:00", "2028-03-01T00:00:00"),
    ],
)
def test_period_bounds(period: str, at: str, start: str, end: str) -> None:
    assert period_bounds(period, _ts(at)) == (_ts(start), _ts(end))  # type: ignore[arg-type]


def test_total_period_never_ends() -> None:
    assert period_bounds("total", 12345.0) == (0.0, None)


def _key(**limits: object) -> ClientKey:
    return ClientKey("team", "0" * 64, KeyLimits(**limits))  # type: ignore[arg-type]


def _finished(tokens: int, key: str = "team") -> RequestFinished:
    return RequestFinished(
        request_id="r",
        api="openai-chat",
        public_model="coder",
        client_key=key,
        stream=False,
        ok=True,
        status=200,
        attempts=1,
        route="coder[0]",
        account=None,
        upstream_model="m",
        error_class=None,
        latency=0.01,
        first_token=None,
        input_tokens=tokens // 2,
        output_tokens=tokens - tokens // 2,
    )


@pytest.mark.parametrize(
    ("limits", "requested", "alias", "refused"),
    [
        ({}, "anything", "*", None),
        ({"models": frozenset({"coder"})}, "coder", "coder", None),
        ({"models": frozenset({"coder"})}, "old-coder", "coder", None),  # the alias it resolves to
        ({"models": frozenset({"coder"})}, "gpt-x", "*", "model"),
        ({"models": frozenset({"*"})}, "gpt-x", "*", None),
    ],
)
def test_allowed_models(limits: dict[str, object], requested: str, alias: str, refused: str | None) -> None:
    refusal = KeyLimiter().admit(_key(**limits), requested, alias)
    assert (refusal.limit if refusal else None) == refused
    if refusal:
        assert refusal.retry_after is None and requested in refusal.message


def test_requests_per_minute_refuse_with_the_wait() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock=clock)
    key = _key(rpm=2)
    assert limiter.admit(key, "m", "m") is None
    assert limiter.admit(key, "m", "m") is None
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "rpm" and refusal.retry_after == 30
    clock.t += 29.0
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.retry_after == 1
    clock.t += 1.0
    assert limiter.admit(key, "m", "m") is None


def test_concurrency_counts_until_release() -> None:
    limiter = KeyLimiter(clock=Clock())
    key = _key(max_concurrent=2)
    assert limiter.admit(key, "m", "m") is None
    assert limiter.admit(key, "m", "m") is None
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "concurrency" and refusal.retry_after == 1
    limiter.release(key)
    assert limiter.admit(key, "m", "m") is None


def test_tokens_per_minute_debt_is_paid_back_before_the_next_request() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock=clock)
    key = _key(tpm=600)  # 10 tokens per second
    assert limiter.admit(key, "m", "m") is None
    limiter(_finished(700))  # 100 tokens of debt: 10 s to pay back
    limiter.release(key)
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "tpm" and refusal.retry_after == 10
    clock.t += 10.5
    assert limiter.admit(key, "m", "m") is None


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock=clock)
    key = _key(rpm=60, max_concurrent=1)
    assert limiter.admit(key, "m", "m") is None
    assert limiter.admit(key, "m", "m") is not None  # concurrency: no request token taken
    limiter.release(key)
    [usage] = limiter.usage()
    assert usage.in_flight == 0 and usage.requests_available == pytest.approx(59.0)


def test_token_budget_per_day_resets_at_midnight_utc() -> None:
    wall = Clock(_ts("2026-11-22T23:00:00"))
    limiter = KeyLimiter(clock=Clock(), wall=wall)
    key = _key(token_budget=1000, budget_period="day")
    assert limiter.admit(key, "m", "m") is None
    limiter(_finished(1000))
    limiter.release(key)
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "budget" and refusal.retry_after == 3600
    wall.t = _ts("2026-11-23T00:00:01")
    assert limiter.admit(key, "m", "m") is None


def test_total_budget_has_no_retry_time() -> None:
    limiter = KeyLimiter(clock=Clock())
    key = _key(token_budget=10, budget_period="total")
    assert limiter.admit(key, "m", "m") is None
    limiter(_finished(10))
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "budget" and refusal.retry_after is None


def test_budget_from_the_store_is_merged_with_the_own_count() -> None:
    wall = Clock(_ts("2026-11-22T12:00:00"))
    limiter = KeyLimiter(clock=Clock(), wall=wall)
    key = _key(token_budget=1000, budget_period="month")
    [(name, start)] = limiter.budget_periods((key, _key()))
    assert name == "team" and start == _ts("2026-11-01T00:00:00")
    limiter.set_budget_used(key, start, 400)  # the store (all instances)
    limiter(_finished(100))  # this instance, not flushed yet
    limiter.set_budget_used(key, start, 450)
    assert limiter.usage()[0].budget_used == 500
    limiter.set_budget_used(key, start, 1000)
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "budget"


def test_changed_limits_take_effect_and_keep_the_in_flight_count() -> None:
    clock = Clock()
    limiter = KeyLimiter(clock=clock)
    assert limiter.admit(_key(max_concurrent=5, rpm=1), "m", "m") is None
    assert limiter.admit(_key(max_concurrent=5, rpm=100), "m", "m") is None  # a fresh bucket
    assert limiter.admit(_key(max_concurrent=2, rpm=100), "m", "m") is not None
    assert limiter.usage()[0].in_flight == 2


def test_events_of_other_keys_and_unlimited_keys_are_ignored() -> None:
    limiter = KeyLimiter(clock=Clock())
    limiter(_finished(100, key="nobody"))
    limiter.release(_key())
    assert limiter.usage() == []
