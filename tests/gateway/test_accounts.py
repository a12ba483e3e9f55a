"""Account pools: least in-flight, concurrency limits, and sticky sessions that follow a failure."""

from __future__ import annotations

import asyncio
from collections import Counter

from spillgate.fake import FakeUpstream, Fault

from ..harness import UPSTREAM_KEYS, Harness, base_config, start_harness

KEY_TO_ACCOUNT = {v: k for k, v in UPSTREAM_KEYS.items()}


def account_of_last(gw: Harness) -> str:
    auth = gw.fake.attempts[-1].headers["authorization"].removeprefix("Bearer ")
    return KEY_TO_ACCOUNT[auth]


async def ask(gw: Harness, session: str | None = None, via: str = "header") -> str:
    body: dict[str, object] = {"model": "coder", "input": "hi"}
    headers = {}
    if session and via == "header":
        headers["session-id"] = session
    elif session and via == "prompt_cache_key":
        body["prompt_cache_key"] = session
    reply = await gw.call("/v1/responses", body, headers=headers)
    assert reply.status == 200, reply.body
    return account_of_last(gw)


async def test_session_sticks_then_moves_and_stays(gw: Harness) -> None:
    first = await ask(gw, "sess-A")
    assert [await ask(gw, "sess-A") for _ in range(5)] == [first] * 5
    gw.app.gateway.health.disable(f"account:{first}", "test: account down")
    moved = await ask(gw, "sess-A")
    assert moved != first
    # The binding followed the session: it stays on the new account, even once the old one is back.
    gw.app.gateway.health.enable(f"account:{first}")
    assert [await ask(gw, "sess-A") for _ in range(5)] == [moved] * 5


async def test_prompt_cache_key_is_a_session_key(gw: Harness) -> None:
    first = await ask(gw, "thread-xyz", via="prompt_cache_key")
    assert [await ask(gw, "thread-xyz", via="prompt_cache_key") for _ in range(4)] == [first] * 4


async def test_sessionless_traffic_spreads_over_the_pool(gw: Harness) -> None:
    seen = Counter([await ask(gw) for _ in range(10)])
    assert set(seen) == {"oa-1", "oa-2"}


async def test_anthropic_metadata_user_id_sticks(gw: Harness) -> None:
    body = {"model": "coder", "max_tokens": 5, "messages": [], "metadata": {"user_id": "user-42"}}
    keys = set()
    for _ in range(5):
        assert (await gw.call("/v1/messages", body)).status == 200
        keys.add(gw.fake.attempts[-1].headers["x-api-key"])
    assert len(keys) == 1


async def test_least_in_flight_and_max_concurrency(fake: FakeUpstream) -> None:
    config = base_config(fake)
    config["accounts"][0]["max_concurrency"] = 1
    config["accounts"][1]["max_concurrency"] = 2
    harness = await start_harness(fake, config)
    try:
        fake.set("up-coder", Fault(headers_delay=0.4))
        body = {"model": "coder", "messages": []}
        replies = await asyncio.gather(*(harness.call("/v1/chat/completions", body) for _ in range(4)))
        statuses = sorted(r.status for r in replies)
        # Three slots in the pool: three go through at once, the fourth finds every account full.
        assert statuses == [200, 200, 200, 503], statuses
        busy = next(r for r in replies if r.status == 503)
        assert "max_concurrency" in busy.json()["error"]["message"]
        used = Counter(
            KEY_TO_ACCOUNT[a.headers["authorization"].removeprefix("Bearer ")] for a in fake.attempts
        )
        assert used == {"oa-1": 1, "oa-2": 2}
        assert not harness.app.gateway.inflight.counts
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
