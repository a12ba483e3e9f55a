"""Both backends: every field round-trips, one write is one transaction, and the usage queries.

The ``postgres`` cases run against a real PostgreSQL server that the session starts itself (see
``tests/store/conftest.py``: needs ``initdb``/``pg_ctl``, e.g. ``apt-get install -y postgresql``;
``SPILLGATE_TEST_PG_DSN`` points them at an existing server, ``SPILLGATE_TEST_PG=skip`` skips them).
Without a server they fail rather than skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from spillgate.store import AttemptRecord, MinuteRow, RequestRecord, UsageStore

from .records import attempt, attempt_event, request, request_event

T0 = 1_700_000_000.0


async def test_every_field_round_trips(store: UsageStore) -> None:
    full = request(1, error_class="capacity", status=503, recovered="replay", stream=False, attempts=3)
    bare = RequestRecord(
        time=T0 + 2.5,
        request_id="req-bare",
        public_model="m",
        api="openai-chat",
        stream=False,
        status=200,
        attempts=1,
        latency_ms=12.0,
    )
    tries = [
        attempt(
            1,
            1,
            ok=False,
            status=529,
            error_class="overloaded",
            scope="provider+model",
            rule="anthropic-overloaded",
            phase="first_byte",
            kind="attempt",
            first_byte_ms=None,
        ),
        attempt(1, 2, kind="failover", route="gpt-5.3-codex[1]", provider="local", account=None),
    ]
    bare_try = AttemptRecord(
        time=T0,
        request_id="req-bare",
        attempt=1,
        route="r",
        provider="p",
        upstream_model="u",
        ok=True,
        latency_ms=1.0,
    )
    await store.write([full, bare], [*tries, bare_try])
    assert await store.requests_for("req-1") == [full]
    assert await store.requests_for("req-bare") == [bare]
    assert await store.attempts_for("req-1") == tries
    assert await store.attempts_for("req-bare") == [bare_try]
    assert await store.requests_for("nope") == []
    got = (await store.requests_for("req-1"))[0]
    assert type(got.stream) is bool and type(got.status) is int and type(got.latency_ms) is float


async def test_records_from_events(store: UsageStore) -> None:
    rf, af = request_event(), attempt_event()
    req = RequestRecord.from_event(rf, time=T0)
    att = AttemptRecord.from_event(af, time=T0)
    assert req.latency_ms == 1250.0 and req.ttft_ms == 500.0 and req.cached_tokens == 4
    assert req.client_app == "claude-cli/2.0" and req.session == "s"
    assert att.latency_ms == 200.0 and att.first_byte_ms is None
    await store.write([req], [att])
    assert await store.requests_for("e1") == [req]
    assert await store.attempts_for("e1") == [att]
    # What the recorder buffers: (time the event was observed, event), made into records on the
    # store's thread; the record's time is when the request arrived / the attempt was sent.
    await store.write_batch([(T0 + 1.25, dataclasses.replace(rf, request_id="e2")), (T0 + 0.2, af)])
    [stamped] = await store.requests_for("e2")
    assert stamped == dataclasses.replace(req, request_id="e2")
    assert len(await store.attempts_for("e1")) == 2


async def test_one_write_is_one_transaction(store: UsageStore) -> None:
    before = store.writes
    await store.write([request(i, request_id=f"r{i}") for i in range(300)], [attempt(i) for i in range(300)])
    assert store.writes == before + 1
    await store.write([], [])
    assert store.writes == before + 1


async def test_a_failed_write_leaves_nothing(store: UsageStore) -> None:
    good = request(1)
    bad = request(2, public_model=None)  # violates NOT NULL: the whole batch must roll back
    with pytest.raises(Exception):  # noqa: B017 - sqlite3 and psycopg raise different types
        await store.write([good, bad], [])
    assert await store.requests_for("req-1") == []
    await store.write([good], [])  # and the store still works
    assert await store.requests_for("req-1") == [good]


async def test_queries_do_not_block_the_event_loop(store: UsageStore) -> None:
    await store.write([request(i) for i in range(2000)], [])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)  # yields once per tick: counts the loop's turns (under test)

    task = asyncio.create_task(ticker())
    for _ in range(5):
        await store.usage("client_app", 0, T0 * 2)
    task.cancel()
    assert ticks > 5


async def seed(store: UsageStore) -> None:
    rows = [
        # minute 0: model a, 3 ok + 1 failed (status), team
        request(
            0,
            time=T0 + 0,
            public_model="a",
            client_key="team",
            latency_ms=10.0,
            input_tokens=1,
            output_tokens=2,
            cached_tokens=None,
        ),
        request(
            1,
            time=T0 + 10,
            public_model="a",
            client_key="team",
            latency_ms=30.0,
            input_tokens=1,
            output_tokens=2,
            cached_tokens=1,
        ),
        request(
            2,
            time=T0 + 20,
            public_model="a",
            client_key="ci",
            latency_ms=20.0,
            input_tokens=None,
            output_tokens=None,
            cached_tokens=None,
        ),
        request(
            3,
            time=T0 + 30,
            public_model="a",
            client_key="team",
            latency_ms=1000.0,
            status=529,
            error_class="overloaded",
            route=None,
        ),
        # minute 1: model b, 1 in-band failure (status 200, error class), no client key
        request(
            4,
            time=T0 + 70,
            public_model="b",
            client_key=None,
            client_app=None,
            latency_ms=5.0,
            error_class="stream_cut",
            recovered="in_band_error",
        ),
        request(5, time=T0 + 80, public_model="a", client_key="team", latency_ms=40.0),
        # outside the range
        request(6, time=T0 + 500, public_model="a", client_key="team"),
    ]
    tries = [
        attempt(3, 1, time=T0 + 30, ok=False, status=529, error_class="overloaded"),
        attempt(3, 2, time=T0 + 31, ok=False, status=529, error_class="overloaded", kind="failover"),
        attempt(1, 1, time=T0 + 10, ok=False, status=500, error_class="server_error"),
        attempt(1, 2, time=T0 + 11, ok=True),
    ]
    await store.write(rows, tries)


async def test_usage_totals(store: UsageStore) -> None:
    await seed(store)
    by_key = {r.key: r for r in await store.usage("client_key", T0, T0 + 120)}
    assert set(by_key) == {"team", "ci", None}
    team = by_key["team"]
    assert (team.requests, team.errors) == (4, 1)
    assert (team.input_tokens, team.output_tokens, team.cached_tokens) == (2002, 104, 1601)
    assert team.avg_latency_ms == pytest.approx((10 + 30 + 1000 + 40) / 4)
    assert team.p50_latency_ms == 30.0  # nearest rank: lower middle of 10, 30, 40, 1000
    assert (by_key["ci"].requests, by_key["ci"].errors, by_key["ci"].input_tokens) == (1, 0, 0)
    assert (by_key[None].requests, by_key[None].errors) == (1, 1)

    by_model = await store.usage("public_model", T0, T0 + 120)
    assert [(r.key, r.requests, r.errors) for r in by_model] == [("a", 5, 1), ("b", 1, 1)]
    assert by_model[0].p50_latency_ms == 30.0
    by_route = {r.key: r.requests for r in await store.usage("route", T0, T0 + 120)}
    assert by_route == {"gpt-5.3-codex[0]": 5, None: 1}
    by_app = {r.key: r.requests for r in await store.usage("client_app", T0, T0 + 600)}
    assert by_app == {"codex_cli_rs/0.50.0": 6, None: 1}
    assert await store.usage("public_model", T0 + 1000, T0 + 2000) == []
    with pytest.raises(ValueError, match="group_by"):
        await store.usage("account; DROP TABLE requests", T0, T0 + 1)  # type: ignore[arg-type]


async def test_recent_failures(store: UsageStore) -> None:
    await seed(store)
    failed = await store.recent_failures()
    assert [r.request_id for r in failed] == ["req-4", "req-3"]
    assert [r.request_id for r in await store.recent_failures(limit=1)] == ["req-4"]
    assert [r.request_id for r in await store.recent_failures(since=T0 + 60)] == ["req-4"]
    attempts = await store.recent_failed_attempts()
    assert [(a.request_id, a.attempt) for a in attempts] == [("req-3", 2), ("req-3", 1), ("req-1", 1)]
    assert len(await store.recent_failed_attempts(limit=2, since=T0 + 20)) == 2


async def test_requests_per_minute(store: UsageStore) -> None:
    await seed(store)
    start = int(T0 // 60 * 60)
    rows = await store.requests_per_minute(T0, T0 + 120)
    # T0 is 20 s into its minute: requests at +0..+30 fall into `start`, +70/+80 into start+60.
    assert rows == [
        MinuteRow(start, "a", 4, 1),
        MinuteRow(start + 60, "a", 1, 0),
        MinuteRow(start + 60, "b", 1, 1),
    ]
    only_b = await store.requests_per_minute(T0, T0 + 120, public_model="b")
    assert only_b == [MinuteRow(start + 60, "b", 1, 1)]
    hourly = await store.requests_per_minute(T0, T0 + 600, bucket_s=3600)
    assert [(r.public_model, r.requests, r.errors) for r in hourly] == [("a", 6, 1), ("b", 1, 1)]
    with pytest.raises(ValueError):
        await store.requests_per_minute(T0, T0 + 1, bucket_s=0)


async def test_closed_store_refuses(store: UsageStore) -> None:
    await store.close()
    with pytest.raises(Exception, match="closed"):
        await store.write([request()], [])
    await store.close()  # idempotent


def test_wall_clock_times_survive(sqlite_dsn: str) -> None:
    """Full-precision unix floats come back exactly (no REAL/DOUBLE rounding surprises)."""
    from spillgate.store import open_store

    now = time.time()

    async def go() -> list[RequestRecord]:
        s = open_store(sqlite_dsn)
        try:
            await s.write([request(0, time=now)], [])
            return await s.requests_for("req-0")
        finally:
            await s.close()

    assert asyncio.run(go())[0].time == now
