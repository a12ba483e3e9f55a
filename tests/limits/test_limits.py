"""Client-key limits: the token bucket, budget periods and the limiter's decisions, as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spillgate.config.schema import ClientKey, KeyLimits
from spillgate.limits import KeyLimiter
from spillgate.limits.bucket import TokenBucket
from spillgate.limits.limiter import Refusal, Spent, spend_refusal, spent, usd_text
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


def _finished(tokens: int, key: str | None = "team", cost: float | None = None) -> RequestFinished:
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
        cost_usd=cost,
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
    limiter.set_budget_used(key, start, 400, 0.0)  # the store (all instances)
    limiter(_finished(100))  # this instance, not flushed yet
    limiter.set_budget_used(key, start, 450, 0.0)
    assert limiter.usage()[0].budget_used == 500
    limiter.set_budget_used(key, start, 1000, 0.0)
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


# -- spend budgets (USD) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "taken"),
    [
        (_finished(100, cost=0.25), Spent("team", 100, 0.25)),
        (_finished(100), Spent("team", 100, 0.0)),  # the cost unknown: nothing but tokens
        (_finished(0, cost=0.5), Spent("team", 0, 0.5)),  # billed without usage reported
        (_finished(0), None),
        (_finished(0, cost=0.0), None),
        (_finished(10, cost=-1.0), Spent("team", 10, 0.0)),  # never a refund
        (_finished(10, cost=float("nan")), Spent("team", 10, 0.0)),
        (_finished(100, key=None, cost=1.0), None),  # no client key
    ],
)
def test_what_a_finished_request_takes(event: RequestFinished, taken: Spent | None) -> None:
    assert spent(event) == taken


@pytest.mark.parametrize(
    ("amount", "text"),
    [(50, "$50.00"), (12.5, "$12.50"), (1234.5, "$1,234.50"), (0.005, "$0.005"), (0.000001, "$0.000001")],
)
def test_usd_text(amount: float, text: str) -> None:
    assert usd_text(amount) == text


DAY_EVENING = _ts("2026-11-22T23:00:00")
MID_MONTH = _ts("2026-11-22T12:00:00")


@pytest.mark.parametrize(
    ("limits", "wall", "costs", "refusal"),
    [
        pytest.param({"spend_budget": 50.0}, MID_MONTH, [49.99], None, id="month-under"),
        pytest.param(
            {"spend_budget": 50.0},
            MID_MONTH,
            [30.0, 20.0],
            Refusal(
                "spend",
                "this API key has used its spend budget ($50.00 per month); it resets in 734400 s",
                734400,
            ),
            id="month-reached",
        ),
        pytest.param(
            {"spend_budget": 2.0, "budget_period": "day"},
            DAY_EVENING,
            [2.5],
            Refusal(
                "spend", "this API key has used its spend budget ($2.00 per day); it resets in 3600 s", 3600
            ),
            id="day-overrun",
        ),
        pytest.param(
            {"spend_budget": 10, "budget_period": "total"},
            MID_MONTH,
            [10.0],
            Refusal("spend", "this API key has used its spend budget ($10.00 in total)", None),
            id="total",
        ),
        # 0.7 + 0.1 + 0.2 is 0.9999999999999999 in floats: counted in nano-dollars, it is the budget.
        pytest.param(
            {"spend_budget": 1.0, "budget_period": "total"},
            MID_MONTH,
            [0.7, 0.1, 0.2],
            "spend",
            id="exact-sum",
        ),
        pytest.param(
            {"spend_budget": 0.005, "budget_period": "total"},
            MID_MONTH,
            [0.005],
            Refusal("spend", "this API key has used its spend budget ($0.005 in total)", None),
            id="below-a-cent",
        ),
        pytest.param({"spend_budget": 1.0}, MID_MONTH, [None, None], None, id="unknown-costs-count-0"),
        pytest.param(
            {"spend_budget": 1.0, "token_budget": 100}, MID_MONTH, [1.0], "budget", id="token-budget-first"
        ),
        pytest.param(
            {"spend_budget": 1.0, "token_budget": 10**6}, MID_MONTH, [1.0], "spend", id="then-spend"
        ),
        pytest.param(
            {"spend_budget": 1.0, "max_concurrent": 1},
            MID_MONTH,
            [1.0],
            "spend",
            id="spend-before-concurrency",
        ),
        pytest.param({"spend_budget": 1.0, "rpm": 1}, MID_MONTH, [1.0], "spend", id="spend-before-rpm"),
        pytest.param({"spend_budget": 100.0, "rpm": 3}, MID_MONTH, [1.0] * 3, "rpm", id="rpm-under-budget"),
        pytest.param({"spend_budget": 1.0, "tpm": 50}, MID_MONTH, [1.0], "spend", id="spend-before-tpm"),
        pytest.param({"spend_budget": 2.0, "tpm": 50}, MID_MONTH, [1.0], "tpm", id="tpm-under-budget"),
    ],
)
def test_spend_budgets(
    limits: dict[str, object], wall: float, costs: list[float | None], refusal: Refusal | str | None
) -> None:
    """Each cost is one request's (admitted, 100 tokens, still in flight), then one more asks: where
    several limits would refuse it, the first in the check order does."""
    limiter = KeyLimiter(clock=Clock(), wall=Clock(wall))
    key = _key(**limits)
    for cost in costs:
        assert limiter.admit(key, "m", "m") is None
        limiter(_finished(100, cost=cost))
    got = limiter.admit(key, "m", "m")
    if isinstance(refusal, str):
        assert got is not None and got.limit == refusal
    else:
        assert got == refusal
    if got is not None:
        assert limiter.refusals == {("team", got.limit): 1}


def test_a_spend_refusal_reads_as_a_budget_refusal() -> None:
    limits = KeyLimits(spend_budget=50.0, budget_period="day")
    refusal = spend_refusal(limits, DAY_EVENING + 90.2, DAY_EVENING)
    assert refusal == Refusal(
        "spend", "this API key has used its spend budget ($50.00 per day); it resets in 91 s", 91
    )


def test_a_spend_budget_per_day_rolls_over_at_midnight_utc() -> None:
    wall = Clock(DAY_EVENING)
    limiter = KeyLimiter(clock=Clock(), wall=wall)
    key = _key(spend_budget=1.0, budget_period="day")
    assert limiter.admit(key, "m", "m") is None
    limiter(_finished(10, cost=1.5))
    limiter.release(key)
    assert [(u.spend_used, u.budget_used) for u in limiter.usage()] == [(1.5, 0)]  # no token budget
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "spend" and refusal.retry_after == 3600
    wall.t = _ts("2026-11-23T00:00:01")
    assert limiter.admit(key, "m", "m") is None
    [usage] = limiter.usage()
    assert usage.spend_used == 0.0 and usage.budget_period_start == _ts("2026-11-23T00:00:00")
    limiter(_finished(10, cost=0.25))  # counts in the new day
    assert limiter.usage()[0].spend_used == 0.25


def test_a_changed_budget_period_starts_the_count_afresh() -> None:
    wall = Clock(MID_MONTH)
    limiter = KeyLimiter(clock=Clock(), wall=wall)
    monthly = _key(spend_budget=1.0, budget_period="month")
    assert limiter.admit(monthly, "m", "m") is None
    limiter(_finished(10, cost=1.0))
    assert limiter.admit(monthly, "m", "m") is not None
    daily = _key(spend_budget=1.0, budget_period="day")
    assert limiter.admit(daily, "m", "m") is None  # a fresh period: nothing used in it here yet


def test_only_the_budgets_a_key_has_are_counted() -> None:
    limiter = KeyLimiter(clock=Clock(), wall=Clock(MID_MONTH))
    tokens, money = ClientKey("tokens", "0" * 64, KeyLimits(token_budget=10**6)), _key(spend_budget=5.0)
    for key in (tokens, money):
        assert limiter.admit(key, "m", "m") is None
        limiter(_finished(100, key=key.name, cost=1.0))
    assert [(u.name, u.budget_used, u.spend_used) for u in limiter.usage()] == [
        ("team", 0, 1.0),
        ("tokens", 100, 0.0),
    ]


def test_spend_from_the_store_is_merged_with_the_own_count() -> None:
    wall = Clock(MID_MONTH)
    limiter = KeyLimiter(clock=Clock(), wall=wall)
    key = _key(spend_budget=50.0, token_budget=10**6, budget_period="month")
    open_key = ClientKey("open", "1" * 64, KeyLimits(rpm=5))
    [(name, start)] = limiter.budget_periods((key, open_key))
    assert name == "team" and start == _ts("2026-11-01T00:00:00")
    limiter.set_budget_used(key, start, 4000, 30.0)  # the store (all instances)
    limiter(_finished(100, cost=5.0))  # this instance, not flushed yet
    limiter.set_budget_used(key, start, 4000, 32.0)  # the store lags: the own 35 are kept
    [usage] = limiter.usage()
    assert (usage.budget_used, usage.spend_used) == (4100, 35.0)
    limiter.set_budget_used(key, start, 4000, 50.0)  # each count keeps its larger
    [usage] = limiter.usage()
    assert (usage.budget_used, usage.spend_used) == (4100, 50.0)
    refusal = limiter.admit(key, "m", "m")
    assert refusal is not None and refusal.limit == "spend"
    later = _ts("2026-12-01T00:00:00")
    limiter.set_budget_used(key, later, 0, 1.0)  # another period: the store's counts replace the own
    wall.t = later + 60
    assert limiter.admit(key, "m", "m") is None
    assert limiter.usage()[0].spend_used == 1.0


def test_a_store_count_of_a_budget_the_key_lacks_is_not_kept() -> None:
    limiter = KeyLimiter(clock=Clock(), wall=Clock(MID_MONTH))
    key = _key(spend_budget=50.0)
    [(_, start)] = limiter.budget_periods((key,))
    limiter.set_budget_used(key, start, 4000, 1.0)
    assert [(u.budget_used, u.spend_used) for u in limiter.usage()] == [(0, 1.0)]
