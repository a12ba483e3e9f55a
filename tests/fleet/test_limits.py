"""Client-key limits shared by two instances on one real Redis (``redis-server`` on loopback): each
instance is a :class:`RedisLink` and a :class:`SharedLimiter` of its own. What one admits or spends
counts on the other; the refusals read as the in-memory limiter's; the store going away never fails
a check, and what it holds always expires."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from spillgate.config.schema import ClientKey, KeyLimits, SharedState
from spillgate.fleet.limits import BUDGET_MARGIN, TOTAL_TTL, SharedLimiter
from spillgate.fleet.link import RedisLink
from spillgate.limits.limiter import (
    KeyLimiter,
    Refusal,
    budget_refusal,
    concurrency_refusal,
    rpm_refusal,
    spend_refusal,
    tpm_refusal,
)
from spillgate.limits.periods import period_bounds
from tests.limits.test_limits import _finished

from ..clock import FakeClock
from ..eventually import eventually
from ..redisserver import RedisServer


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _key(name: str = "team", **limits: Any) -> ClientKey:
    return ClientKey(name, "0" * 64, KeyLimits(**limits))


# -- raw replies (the checks read the server through RedisServer.command, not through the link) --


def _parse(raw: bytes, at: int = 0) -> tuple[Any, int]:
    end = raw.index(b"\r\n", at)
    kind, body = raw[at : at + 1], raw[at + 1 : end]
    if kind in (b"+", b"-"):
        return body.decode(), end + 2
    if kind == b":":
        return int(body), end + 2
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None, end + 2
        return raw[end + 2 : end + 2 + n].decode(), end + 4 + n
    assert kind == b"*", raw
    items, at = [], end + 2
    for _ in range(max(0, int(body))):
        item, at = _parse(raw, at)
        items.append(item)
    return items, at


def reply(redis: RedisServer, *args: str) -> Any:
    return _parse(redis.command(*args))[0]


def keys_under(redis: RedisServer, namespace: str) -> list[str]:
    return sorted(reply(redis, "KEYS", f"{namespace}:*"))


class Fleet:
    """Instances ``a`` and ``b``: a link and a limiter each, on one namespace."""

    def __init__(self, namespace: str, links: list[RedisLink], limiters: list[SharedLimiter]) -> None:
        self.namespace = namespace
        self.links = links
        self.limiters = limiters
        self.a, self.b = limiters

    async def settled(self) -> None:
        """Every queued write (spends, releases, reconciliations) has reached the store."""
        for link in self.links:
            await link.drained(timeout=2.0)

    async def close(self) -> None:
        for limiter in self.limiters:
            await limiter.close()
        for link in self.links:
            await link.close()


MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(redis_server: RedisServer) -> AsyncIterator[MakeFleet]:
    made: list[Fleet] = []

    async def make(
        *, slot_ttl: float = 30.0, timeout: float = 0.25, wall: Callable[[], float] = time.time
    ) -> Fleet:
        namespace = f"t-{uuid.uuid4().hex[:8]}"
        settings = SharedState(url=redis_server.url, namespace=namespace, timeout=timeout, slot_ttl=slot_ttl)
        links = [RedisLink(settings, instance=name, wall=wall) for name in "ab"]
        limiters = [SharedLimiter(link, settings.slot_ttl) for link in links]
        for link in links:
            await link.start()
            assert link.up
        for limiter in limiters:
            limiter.start()
        fleet = Fleet(namespace, links, limiters)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        await fleet.close()


async def admitted(limiter: SharedLimiter, key: ClientKey) -> bool:
    return await limiter.check(key, "m", "m") is None


# -- each limit holds across the two instances ---------------------------------------------------


async def test_requests_per_minute_hold_across_instances(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    key = _key(rpm=3)
    assert [await admitted(limiter, key) for limiter in (fleet.a, fleet.b, fleet.a)] == [True] * 3
    refusal = await fleet.b.check(key, "m", "m")
    # Three taken within milliseconds at 3 per minute: the next token is 20 s away.
    assert refusal == rpm_refusal(3, 20.0)
    assert refusal.retry_after == 20
    assert await fleet.a.check(key, "m", "m") == rpm_refusal(3, 20.0)
    assert fleet.a.refusals == {("team", "rpm"): 1} and fleet.b.refusals == {("team", "rpm"): 1}
    assert fleet.a.fallbacks == fleet.b.fallbacks == 0


async def test_concurrency_holds_across_instances_until_a_release(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(max_concurrent=2)
    assert await admitted(fleet.a, key) and await admitted(fleet.a, key)
    assert await fleet.b.check(key, "m", "m") == concurrency_refusal(2, 2)
    fleet.a.release(key)
    await fleet.settled()
    assert await admitted(fleet.b, key)
    assert await fleet.a.check(key, "m", "m") == concurrency_refusal(2, 2)
    slots = f"{fleet.namespace}:limits:{{ck:team}}:slots"
    assert sorted(reply(redis_server, "ZRANGE", slots, "0", "-1")) == ["a:0", "b:1"]  # b:0 was refused
    assert [u.in_flight for u in fleet.a.usage()] == [1]  # the admin view: this instance's own
    fleet.a.release(key)
    fleet.b.release(key)
    await fleet.settled()
    assert reply(redis_server, "ZCARD", slots) == 0


async def test_tokens_per_minute_spent_on_one_instance_refuse_on_the_other(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    key = _key(tpm=600)  # 10 tokens per second
    assert await admitted(fleet.a, key)
    assert await admitted(fleet.b, key)  # not in debt yet: admitted
    fleet.a(_finished(604))  # 4 tokens of debt: 0.4 s to pay back
    fleet.a.release(key)
    await fleet.settled()
    refusal = await fleet.b.check(key, "m", "m")
    assert refusal == tpm_refusal(600, 0.4)
    assert refusal.retry_after == 1
    refused_at = time.monotonic()
    await eventually(lambda: admitted(fleet.b, key), timeout=3.0, interval=0.05, what="the debt paid back")
    assert time.monotonic() - refused_at > 0.25  # paid back by the refill, not forgotten


async def test_a_token_budget_holds_across_instances_and_resets_with_the_period(
    make_fleet: MakeFleet,
) -> None:
    wall = FakeClock(_ts("2026-11-22T23:00:00"))
    fleet = await make_fleet(wall=wall)
    key = _key(token_budget=1000, budget_period="day")
    assert await admitted(fleet.a, key)
    fleet.a.spend("team", 600)
    assert await admitted(fleet.b, key)
    fleet.b.spend("team", 400)
    await fleet.settled()
    refusal = await fleet.a.check(key, "m", "m")
    assert refusal == budget_refusal(key.limits, _ts("2026-11-23T00:00:00"), wall.now)
    assert refusal.retry_after == 3600
    assert await fleet.b.check(key, "m", "m") == refusal
    wall.now = _ts("2026-11-23T00:00:01")  # a new day: a new counter
    assert await admitted(fleet.a, key) and await admitted(fleet.b, key)


async def test_the_reconciled_budget_keeps_the_larger_count(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    wall = FakeClock(_ts("2026-11-22T12:00:00"))
    fleet = await make_fleet(wall=wall)
    key = _key(token_budget=1000, budget_period="month")
    [(name, start)] = fleet.a.budget_periods((key, _key("other")))
    assert name == "team" and start == _ts("2026-11-01T00:00:00")
    counter = f"{fleet.namespace}:limits:{{ck:team}}:budget:month:{start:.0f}"

    fleet.a.set_budget_used(key, start, 0, 0.0)  # nothing used, nothing there: nothing written
    await fleet.settled()
    assert keys_under(redis_server, fleet.namespace) == []
    fleet.a.set_budget_used(key, start, 400, 9.0)  # the usage store (every instance's records)
    await fleet.settled()
    assert keys_under(redis_server, fleet.namespace) == [counter]  # no spend budget: no spend counter
    assert reply(redis_server, "GET", counter) == "400"
    fleet.a.spend("team", 100)  # not in the usage store yet
    await fleet.settled()
    assert reply(redis_server, "GET", counter) == "500"
    fleet.b.set_budget_used(key, start, 450, 9.0)  # the store lags: the counter keeps its 500
    await fleet.settled()
    assert reply(redis_server, "GET", counter) == "500"
    fleet.b.set_budget_used(key, start, 1000, 9.0)
    await fleet.settled()
    assert reply(redis_server, "GET", counter) == "1000"
    # a's own view had 500: the refusal comes from the fleet's counter.
    assert [u.budget_used for u in fleet.a.usage()] == [500]
    refusal = await fleet.a.check(key, "m", "m")
    assert refusal is not None and refusal.limit == "budget"
    assert [u.budget_used for u in fleet.a.usage()] == [1000]  # learnt from the check's answer


async def test_a_spend_budget_holds_across_instances_and_resets_with_the_period(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    wall = FakeClock(_ts("2026-11-22T23:00:00"))
    fleet = await make_fleet(wall=wall)
    key = _key(spend_budget=1.0, budget_period="day")
    assert await admitted(fleet.a, key)
    fleet.a(_finished(100, cost=0.7))
    assert await admitted(fleet.b, key)
    fleet.b(_finished(100, cost=0.1))
    assert await admitted(fleet.a, key)
    fleet.a(_finished(100, cost=0.2))  # 0.7 + 0.1 + 0.2: exactly the budget in nano-dollars
    await fleet.settled()
    day = f"{_ts('2026-11-22T00:00:00'):.0f}"
    counter = f"{fleet.namespace}:limits:{{ck:team}}:spend:day:{day}"
    assert keys_under(redis_server, fleet.namespace) == [counter]  # no token budget: no token counter
    assert reply(redis_server, "GET", counter) == "1000000000"
    refusal = await fleet.b.check(key, "m", "m")
    assert refusal == spend_refusal(key.limits, _ts("2026-11-23T00:00:00"), wall.now)
    assert refusal.retry_after == 3600 and "($1.00 per day)" in refusal.message
    assert await fleet.a.check(key, "m", "m") == refusal
    assert fleet.b.refusals == {("team", "spend"): 1}
    assert [u.spend_used for u in fleet.b.usage()] == [pytest.approx(1.0)]  # learnt from the answer
    wall.now = _ts("2026-11-23T00:00:01")  # a new day: a new counter
    assert await admitted(fleet.a, key) and await admitted(fleet.b, key)
    assert fleet.a.fallbacks == fleet.b.fallbacks == 0


async def test_the_reconciled_spend_keeps_the_larger_count(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    wall = FakeClock(_ts("2026-11-22T12:00:00"))
    fleet = await make_fleet(wall=wall)
    key = _key(spend_budget=50.0, token_budget=10**6, budget_period="month")
    [(_, start)] = fleet.a.budget_periods((key, _key("other", rpm=5)))
    tokens = f"{fleet.namespace}:limits:{{ck:team}}:budget:month:{start:.0f}"
    usd = f"{fleet.namespace}:limits:{{ck:team}}:spend:month:{start:.0f}"

    fleet.a.set_budget_used(key, start, 0, 0.0)
    await fleet.settled()
    assert keys_under(redis_server, fleet.namespace) == []
    fleet.a.set_budget_used(key, start, 400, 30.0)  # the usage store
    await fleet.settled()
    assert [reply(redis_server, "GET", c) for c in (tokens, usd)] == ["400", "30000000000"]
    assert await admitted(fleet.a, key)
    fleet.a(_finished(100, cost=5.0))  # not in the usage store yet
    await fleet.settled()
    assert [reply(redis_server, "GET", c) for c in (tokens, usd)] == ["500", "35000000000"]
    fleet.b.set_budget_used(key, start, 600, 32.0)  # each counter keeps its larger
    await fleet.settled()
    assert [reply(redis_server, "GET", c) for c in (tokens, usd)] == ["600", "35000000000"]
    fleet.b.set_budget_used(key, start, 600, 50.0)
    await fleet.settled()
    assert reply(redis_server, "GET", usd) == "50000000000"
    assert [u.spend_used for u in fleet.a.usage()] == [35.0]  # a's own view, until it asks
    refusal = await fleet.a.check(key, "m", "m")
    assert refusal == spend_refusal(key.limits, _ts("2026-12-01T00:00:00"), wall.now)
    assert [(u.budget_used, u.spend_used) for u in fleet.a.usage()] == [(600, 50.0)]


async def test_a_spend_budget_falls_back_to_the_local_count_while_the_store_is_away(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(spend_budget=1.0, budget_period="total")
    assert await admitted(fleet.a, key)
    fleet.a(_finished(10, cost=0.6))
    await fleet.settled()
    assert await admitted(fleet.a, key)  # the fleet's $0.60 learnt by a's local replica
    redis_server.kill()
    fleet.a(_finished(10, cost=0.4))  # a's own count reaches the budget
    refusal = await fleet.a.check(key, "m", "m")
    assert refusal == spend_refusal(key.limits, None, 0.0) and refusal.retry_after is None
    assert await admitted(fleet.b, key)  # b alone has seen nothing
    assert fleet.a.fallbacks == 1 and fleet.b.fallbacks == 1


# -- what is written, and that it expires ----------------------------------------------------------


async def test_every_key_the_limiter_writes_has_a_ttl(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    wall = FakeClock(_ts("2026-11-22T23:00:00"))
    fleet = await make_fleet(wall=wall)
    daily = _key(
        rpm=100, tpm=10_000, max_concurrent=5, token_budget=100_000, spend_budget=100.0, budget_period="day"
    )
    forever = _key("forever", token_budget=100_000, budget_period="total")
    money = _key("money", spend_budget=100.0, budget_period="total")
    for limiter in fleet.limiters:
        for key in (daily, forever, money):
            assert await admitted(limiter, key)
            limiter.spend(key.name, 50, 0.5)
    fleet.b.set_budget_used(daily, period_bounds("day", wall.now)[0], 1000, 2.0)
    fleet.b.set_budget_used(forever, 0.0, 1000, 2.0)
    fleet.b.set_budget_used(money, 0.0, 1000, 2.0)
    await fleet.a.renew()
    fleet.a.release(daily)
    await fleet.settled()

    ns = fleet.namespace
    day = f"{_ts('2026-11-22T00:00:00'):.0f}"
    found = keys_under(redis_server, ns)
    assert found == sorted(
        [
            f"{ns}:limits:{{ck:forever}}:budget:total:0",
            f"{ns}:limits:{{ck:money}}:spend:total:0",
            f"{ns}:limits:{{ck:team}}:budget:day:{day}",
            f"{ns}:limits:{{ck:team}}:spend:day:{day}",
            f"{ns}:limits:{{ck:team}}:rpm",
            f"{ns}:limits:{{ck:team}}:slots",
            f"{ns}:limits:{{ck:team}}:tpm",
        ]
    )
    ttls = {name: reply(redis_server, "PTTL", name) for name in found}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    # A day's counter lives to the end of the day (an hour away) and the margin; a total one long.
    assert ttls[f"{ns}:limits:{{ck:team}}:budget:day:{day}"] == pytest.approx(
        (3600 + BUDGET_MARGIN) * 1000, abs=5000
    )
    assert ttls[f"{ns}:limits:{{ck:team}}:spend:day:{day}"] == pytest.approx(
        (3600 + BUDGET_MARGIN) * 1000, abs=5000
    )
    assert ttls[f"{ns}:limits:{{ck:forever}}:budget:total:0"] == pytest.approx(TOTAL_TTL * 1000, abs=5000)
    assert ttls[f"{ns}:limits:{{ck:money}}:spend:total:0"] == pytest.approx(TOTAL_TTL * 1000, abs=5000)
    assert ttls[f"{ns}:limits:{{ck:team}}:rpm"] <= 121_000  # a bucket: about two minutes at most
    assert reply(redis_server, "GET", f"{ns}:limits:{{ck:team}}:budget:day:{day}") == "1000"
    assert reply(redis_server, "GET", f"{ns}:limits:{{ck:team}}:spend:day:{day}") == "2000000000"  # $2


async def test_a_key_without_limits_writes_nothing(make_fleet: MakeFleet, redis_server: RedisServer) -> None:
    fleet = await make_fleet()
    open_key = _key("open")
    listed = _key("listed", models=frozenset({"coder"}))
    for limiter in fleet.limiters:
        for key in (open_key, listed):
            assert await limiter.check(key, "coder", "coder") is None
            limiter.spend(key.name, 100, 1.0)
            limiter(_finished(100, key.name, cost=1.0))
            limiter.set_budget_used(key, 0.0, 100, 1.0)
            limiter.release(key)
        refusal = await limiter.check(listed, "gpt-x", "*")  # the allow-list: decided here
        assert refusal is not None and refusal.limit == "model" and refusal.retry_after is None
        assert limiter.admit(open_key, "m", "m") is None
    await fleet.settled()
    assert reply(redis_server, "DBSIZE") == 0
    assert fleet.a.fallbacks == fleet.b.fallbacks == 0


async def test_a_dead_instances_slots_are_free_after_the_slot_ttl(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(slot_ttl=0.5)
    key = _key(max_concurrent=2)
    assert await admitted(fleet.a, key) and await admitted(fleet.a, key)
    held_at = time.monotonic()
    await fleet.a.close()  # instance a dies: no release, no renewal
    await fleet.links[0].close()
    assert await fleet.b.check(key, "m", "m") == concurrency_refusal(2, 2)
    await eventually(lambda: admitted(fleet.b, key), timeout=3.0, interval=0.05, what="a's slots to expire")
    assert time.monotonic() - held_at >= 0.45


async def test_the_slots_of_live_requests_are_renewed(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet(slot_ttl=0.5)
    key = _key(max_concurrent=2)
    assert await admitted(fleet.a, key) and await admitted(fleet.b, key)
    for _ in range(4):  # 1.2 s: more than twice the slots' TTL
        await asyncio.sleep(0.3)
        assert await fleet.b.check(key, "m", "m") == concurrency_refusal(2, 2)
    fleet.a.release(key)
    await fleet.settled()
    assert await admitted(fleet.b, key)


async def test_the_synchronous_admit_is_local_and_release_gives_back_the_right_slot(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(max_concurrent=2)
    slots = f"{fleet.namespace}:limits:{{ck:team}}:slots"
    assert await admitted(fleet.a, key)  # a slot in the store
    assert fleet.a.admit(key, "m", "m") is None  # this instance's count only: no slot
    assert fleet.a.admit(key, "m", "m") == concurrency_refusal(2, 2)
    assert reply(redis_server, "ZCARD", slots) == 1
    fleet.a.release(key)  # the request without a slot (which one ended does not matter)
    await fleet.settled()
    assert reply(redis_server, "ZCARD", slots) == 1
    fleet.a.release(key)
    await fleet.settled()
    assert reply(redis_server, "ZCARD", slots) == 0


async def test_changed_limits_take_effect_with_a_fresh_bucket(make_fleet: MakeFleet) -> None:
    fleet = await make_fleet()
    assert await admitted(fleet.a, _key(rpm=1))
    assert await fleet.b.check(_key(rpm=1), "m", "m") == rpm_refusal(1, 60.0)
    assert await admitted(fleet.b, _key(rpm=100))  # as in memory: a new capacity, a full bucket
    assert await admitted(fleet.a, _key(rpm=100))


# -- the store away --------------------------------------------------------------------------------


async def test_a_killed_store_falls_back_to_local_limits_and_they_are_shared_again_when_it_is_back(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(rpm=3)
    assert await admitted(fleet.a, key)  # shared, and recorded in a's local replica too
    redis_server.kill()

    async def timed(limiter: SharedLimiter) -> tuple[bool, float]:
        began = time.monotonic()
        ok = await admitted(limiter, key)
        return ok, time.monotonic() - began

    results = {
        name: [await timed(limiter) for _ in range(4)] for name, limiter in (("a", fleet.a), ("b", fleet.b))
    }
    assert max(took for runs in results.values() for _, took in runs) < 0.3  # no wait past the timeout
    # Each instance alone: a had taken one of its 3 before the outage, b none.
    assert [ok for ok, _ in results["a"]] == [True, True, False, False]
    assert [ok for ok, _ in results["b"]] == [True, True, True, False]
    assert fleet.a.fallbacks == 4 and fleet.b.fallbacks == 4
    assert fleet.a.refusals == {("team", "rpm"): 2} and fleet.b.refusals == {("team", "rpm"): 1}

    redis_server.start()  # empty, on the same port
    await eventually(lambda: all(link.up for link in fleet.links), timeout=10.0, what="both links back")
    # Both local buckets are empty: what admits now is the store's (fresh) bucket.
    assert [await admitted(limiter, key) for limiter in (fleet.a, fleet.b, fleet.a)] == [True] * 3
    assert await fleet.b.check(key, "m", "m") == rpm_refusal(3, 20.0)
    assert fleet.a.fallbacks == 4 and fleet.b.fallbacks == 4


async def test_a_slow_store_is_not_waited_for_past_the_timeout(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet(timeout=0.2)
    key = _key(max_concurrent=1)
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        began = time.monotonic()
        refusal = await fleet.a.check(key, "m", "m")
        took = time.monotonic() - began
        assert refusal is None and fleet.a.fallbacks == 1
        assert 0.15 < took < 0.5, took  # the timeout was waited, and no more
        began = time.monotonic()
        assert await fleet.a.check(key, "m", "m") == concurrency_refusal(1, 1)  # a's own count
        assert time.monotonic() - began < 0.05  # the store is known away: not asked again
        assert fleet.a.fallbacks == 2
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)


async def test_limits_are_shared_again_after_a_slow_store(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet(timeout=0.2)
    key = _key(rpm=2)
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        assert await admitted(fleet.a, key) and await admitted(fleet.a, key)  # a alone
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    await eventually(lambda: all(link.up for link in fleet.links), timeout=10.0, what="both links back")
    fallbacks = fleet.a.fallbacks
    assert await admitted(fleet.b, key) and await admitted(fleet.b, key)
    assert await fleet.a.check(key, "m", "m") == rpm_refusal(2, 30.0)  # the fleet's bucket
    assert fleet.a.fallbacks == fallbacks


async def test_requests_admitted_during_an_outage_take_their_slots_when_the_store_is_back(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(max_concurrent=1)
    redis_server.kill()
    assert await admitted(fleet.a, key)  # decided by a alone: no slot in the store
    assert fleet.a.fallbacks == 1
    redis_server.start()
    await eventually(lambda: all(link.up for link in fleet.links), timeout=10.0, what="both links back")
    assert await fleet.b.check(key, "m", "m") == concurrency_refusal(1, 1)
    fleet.a.release(key)
    await fleet.settled()
    assert await admitted(fleet.b, key)


async def test_running_requests_get_their_slots_back_in_a_restarted_store(
    make_fleet: MakeFleet, redis_server: RedisServer
) -> None:
    fleet = await make_fleet()
    key = _key(max_concurrent=1)
    assert await admitted(fleet.a, key)
    redis_server.kill()
    redis_server.start()  # empty: the slot is gone from the store
    await eventually(
        lambda: fleet.links[0].outages >= 1 and all(link.up for link in fleet.links),
        timeout=10.0,
        what="both links back after the restart",
    )
    assert await fleet.b.check(key, "m", "m") == concurrency_refusal(1, 1)


# -- the refusals read as the in-memory limiter's --------------------------------------------------

Step = tuple[str, float]
"""``("admit", n)``: n requests admitted; ``("spend", tokens)``; ``("cost", usd)``; ``("release", n)``."""

DAY_EVENING = _ts("2026-11-22T23:00:00")
MID_MONTH = _ts("2026-11-22T12:00:00")


@pytest.mark.parametrize(
    ("limits", "steps", "wall", "model"),
    [
        pytest.param({"models": frozenset({"coder"})}, [], MID_MONTH, "gpt-x", id="model"),
        pytest.param({"rpm": 6}, [("admit", 6)], MID_MONTH, "m", id="rpm"),
        pytest.param({"max_concurrent": 3}, [("admit", 3)], MID_MONTH, "m", id="concurrency"),
        pytest.param({"tpm": 600}, [("admit", 1), ("spend", 700)], MID_MONTH, "m", id="tpm-debt"),
        pytest.param(
            {"token_budget": 1000, "budget_period": "day"},
            [("admit", 1), ("spend", 1000)],
            DAY_EVENING,
            "m",
            id="budget-day",
        ),
        pytest.param(
            {"token_budget": 1000, "budget_period": "month"},
            [("admit", 1), ("spend", 1200)],
            MID_MONTH,
            "m",
            id="budget-month",
        ),
        pytest.param(
            {"token_budget": 10, "budget_period": "total"},
            [("admit", 1), ("spend", 10)],
            MID_MONTH,
            "m",
            id="budget-total",
        ),
        pytest.param(
            {"token_budget": 10, "budget_period": "total", "max_concurrent": 1},
            [("admit", 1), ("spend", 10)],
            MID_MONTH,
            "m",
            id="budget-before-concurrency",
        ),
        pytest.param(
            {"spend_budget": 2.0, "budget_period": "day"},
            [("admit", 1), ("cost", 2.5)],
            DAY_EVENING,
            "m",
            id="spend-day",
        ),
        pytest.param(
            {"spend_budget": 50.0, "budget_period": "month"},
            [("admit", 2), ("cost", 30.0), ("cost", 20.0)],
            MID_MONTH,
            "m",
            id="spend-month",
        ),
        pytest.param(
            {"spend_budget": 1.0, "budget_period": "total"},
            [("admit", 3), ("cost", 0.7), ("cost", 0.1), ("cost", 0.2)],
            MID_MONTH,
            "m",
            id="spend-total-exact",
        ),
        pytest.param(
            {"spend_budget": 1.0, "budget_period": "total"},
            [("admit", 1), ("cost", 0.999999)],
            MID_MONTH,
            "m",
            id="spend-just-under",
        ),
        pytest.param(
            {"token_budget": 10, "spend_budget": 1.0, "budget_period": "day"},
            [("admit", 1), ("spend", 10), ("cost", 1.0)],
            DAY_EVENING,
            "m",
            id="budget-before-spend",
        ),
        pytest.param(
            {"token_budget": 1000, "spend_budget": 1.0, "max_concurrent": 1, "rpm": 1, "tpm": 5},
            [("admit", 1), ("spend", 10), ("cost", 1.0)],
            MID_MONTH,
            "m",
            id="spend-before-concurrency-rpm-tpm",
        ),
        pytest.param(
            {"max_concurrent": 1, "rpm": 1}, [("admit", 1)], MID_MONTH, "m", id="concurrency-before-rpm"
        ),
        pytest.param(
            {"rpm": 1, "tpm": 600}, [("admit", 1), ("spend", 700)], MID_MONTH, "m", id="rpm-before-tpm"
        ),
        pytest.param(
            {"rpm": 2, "max_concurrent": 2},
            [("admit", 2), ("release", 1)],
            MID_MONTH,
            "m",
            id="rpm-after-release",
        ),
        pytest.param({"rpm": 2, "tpm": 600}, [("admit", 1), ("spend", 300)], MID_MONTH, "m", id="admitted"),
    ],
)
async def test_refusals_read_as_the_in_memory_limiters(
    make_fleet: MakeFleet, limits: dict[str, Any], steps: list[Step], wall: float, model: str
) -> None:
    key = _key(**limits)
    memory = KeyLimiter(clock=FakeClock(1000.0), wall=FakeClock(wall))
    fleet = await make_fleet(wall=FakeClock(wall))
    last = fleet.a
    for step, n in steps:
        if step == "admit":
            for i in range(int(n)):
                last = fleet.limiters[i % 2]  # the requests alternate between the instances
                assert memory.admit(key, "m", "m") is None
                assert await last.check(key, "m", "m") is None
        elif step == "release":
            for _ in range(int(n)):
                memory.release(key)
                fleet.a.release(key)  # a took the first request
        elif step == "cost":
            memory.spend("team", 0, n)
            last.spend("team", 0, n)
        else:
            memory.spend("team", int(n))
            last.spend("team", int(n))  # the instance that ran the last request
    await fleet.settled()
    expected: Refusal | None = memory.admit(key, model, model)
    assert await fleet.b.check(key, model, model) == expected
    assert fleet.b.fallbacks == 0
