"""Client keys with limits through a running gateway: stored keys (made like `spillgate keys create`)
and config keys; refusals are 403 / 429 + Retry-After in the protocol of the endpoint called."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from spillgate.config.schema import KeyLimits
from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key
from spillgate.store import RequestRecord, open_store
from spillgate.store.keys import KeyRegistry
from tests.eventually import eventually

from ..harness import PRIMARY, Result, Scenario, scenario_config, start_scenario

KEY = "sk-sg-limited-key-0123456789"


async def _store_key(db: Path, name: str, key: str, limits: KeyLimits) -> None:
    store = open_store(f"sqlite:{db}")
    try:
        await KeyRegistry(store).create(name, key, limits)
    finally:
        await store.close()


@pytest.fixture
async def start(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[Any]:
    started: list[Scenario] = []

    async def go(limits: KeyLimits, **config: Any) -> Scenario:
        db = tmp_path / "usage.db"
        await _store_key(db, "team", KEY, limits)
        sc = await start_scenario(fake, scenario_config(fake, usage={"dsn": f"sqlite:{db}"}, **config))
        sc.http.headers.update({"authorization": f"Bearer {KEY}"})
        started.append(sc)
        return sc

    yield go
    for sc in started:
        await sc.http.close()
        await sc.app.stop(grace=1)


def _error(result: Result, api: str) -> tuple[str, str]:
    body = result.reply.json()
    if api == "messages":
        assert body["type"] == "error"
        return body["error"]["type"], body["error"]["message"]
    return body["error"]["code"], body["error"]["message"]


async def test_stored_key_is_accepted_and_revocation_takes_effect(start: Any) -> None:
    sc = await start(KeyLimits())
    assert (await sc.ask("chat")).status == 200
    sc.http.headers.pop("authorization")
    assert (await sc.ask("chat")).status == 401  # once a key exists, one is required
    sc.http.headers["authorization"] = f"Bearer {KEY}"
    assert sc.app.store is not None and sc.app.key_sync is not None
    assert await KeyRegistry(sc.app.store).revoke("team")
    await sc.app.key_sync.refresh()
    result = await sc.ask("messages")
    assert result.status == 401 and _error(result, "messages")[0] == "authentication_error"


@pytest.mark.parametrize(("api", "kind"), [("chat", "model_not_allowed"), ("messages", "permission_error")])
async def test_model_outside_the_allowed_list_is_403(start: Any, api: str, kind: str) -> None:
    sc = await start(KeyLimits(models=frozenset({"solo"})))
    assert (await sc.ask(api, model="solo")).status == 200
    result = await sc.ask(api, model="coder")
    assert result.status == 403
    code, message = _error(result, api)
    assert code == kind and "'coder'" in message and "solo" in message
    assert result.header("retry-after") is None and result.header("x-should-retry") == "false"
    assert sc.seen(PRIMARY) == 1  # the refused request never reached an upstream


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_requests_per_minute(start: Any, api: str) -> None:
    sc = await start(KeyLimits(rpm=2))
    assert [(await sc.ask(api)).status for _ in range(2)] == [200, 200]
    result = await sc.ask(api, stream=True)
    assert result.status == 429
    assert 1 <= int(result.header("retry-after") or 0) <= 30
    assert result.header("x-should-retry") == "true"
    code, message = _error(result, api)
    assert code == ("rate_limit_error" if api == "messages" else "rate_limit_exceeded")
    assert "2 requests per minute" in message
    assert sc.seen(PRIMARY) == 2


async def test_concurrent_requests(start: Any, fake: FakeUpstream) -> None:
    sc = await start(KeyLimits(max_concurrent=1))
    fake.set(PRIMARY, Fault(headers_delay=0.5))  # holds the first request while the second is refused
    first = asyncio.create_task(sc.ask("chat"))
    await eventually(lambda: fake.in_flight == 1, what="the first request to reach the upstream")
    second = await sc.ask("chat")
    assert second.status == 429 and second.header("retry-after") == "1"
    assert "1 requests in flight" in _error(second, "chat")[1]
    assert (await first).status == 200
    assert (await sc.ask("chat")).status == 200  # released when the first one ended


async def test_tokens_per_minute(start: Any) -> None:
    sc = await start(KeyLimits(tpm=10))
    assert (await sc.ask("responses", stream=True)).status == 200  # the fake reports > 10 tokens
    result = await sc.ask("responses")
    assert result.status == 429 and "10 tokens per minute" in _error(result, "responses")[1]
    assert int(result.header("retry-after") or 0) >= 1


async def test_token_budget_counts_what_the_store_recorded_before_the_start(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    await _store_key(db, "team", KEY, KeyLimits(token_budget=1000, budget_period="day"))
    store = open_store(f"sqlite:{db}")
    try:
        await store.write(
            [
                RequestRecord(
                    time=time.time() - 60,
                    request_id="old",
                    client_key="team",
                    public_model="coder",
                    api="openai-chat",
                    stream=False,
                    status=200,
                    attempts=1,
                    latency_ms=1.0,
                    input_tokens=600,
                    output_tokens=400,
                )
            ],
            [],
        )
    finally:
        await store.close()
    sc = await start_scenario(fake, scenario_config(fake, usage={"dsn": f"sqlite:{db}"}))
    sc.http.headers.update({"authorization": f"Bearer {KEY}"})
    try:
        for api in ("chat", "messages"):
            result = await sc.ask(api)
            assert result.status == 429
            code, message = _error(result, api)
            assert code == ("rate_limit_error" if api == "messages" else "insufficient_quota")
            assert "token budget (1000 tokens per day)" in message
            assert result.header("x-should-retry") == "false"
            assert 0 < int(result.header("retry-after") or 0) <= 86400
        assert sc.seen(PRIMARY) == 0
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_token_budget_spent_while_running(start: Any) -> None:
    sc = await start(KeyLimits(token_budget=5, budget_period="total"))
    assert (await sc.ask("chat")).status == 200
    result = await sc.ask("chat")
    assert result.status == 429 and _error(result, "chat")[0] == "insufficient_quota"
    assert result.header("retry-after") is None  # a total budget does not come back by waiting


async def test_limits_on_a_config_key(fake: FakeUpstream) -> None:
    config = scenario_config(
        fake,
        client_keys=[{"name": "cfg", "hash": hash_key("sk-sg-cfg"), "rpm": 1, "models": ["coder"]}],
    )
    sc = await start_scenario(fake, config)
    sc.http.headers.update({"authorization": "Bearer sk-sg-cfg"})
    try:
        assert (await sc.ask("chat", model="solo")).status == 403
        assert (await sc.ask("chat")).status == 200
        assert (await sc.ask("chat")).status == 429
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_refusals_show_in_metrics_and_the_admin_key_list(start: Any) -> None:
    sc = await start(KeyLimits(rpm=1, models=frozenset({"coder"})))
    assert (await sc.ask("chat")).status == 200
    assert (await sc.ask("chat")).status == 429
    assert (await sc.ask("chat", model="solo")).status == 403
    async with sc.http.get(sc.app.url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'spillgate_client_limit_refusals_total{client_key="team",limit="rpm"} 1' in metrics
    assert 'spillgate_client_limit_refusals_total{client_key="team",limit="model"} 1' in metrics
    async with sc.http.get(sc.app.url + "/admin/keys") as resp:
        assert resp.status == 200
        body = await resp.json()
    [key] = body["keys"]
    assert body["auth"] == "on" and key["name"] == "team" and key["source"] == "store"
    assert key["limits"]["rpm"] == 1 and key["limits"]["models"] == ["coder"]
    assert key["refused"] == {"rpm": 1, "model": 1} and key["live"]["in_flight"] == 0
    assert KEY not in str(body) and "sha256" not in str(body)


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_spend_budget_stops_the_key(start: Any, api: str) -> None:
    """What the key's requests cost (prices from ``pricing``) is counted against its spend budget."""
    price = {"input": 1000.0, "output": 2000.0}  # USD per million tokens: one request costs ~ 0.01
    sc = await start(
        KeyLimits(spend_budget=0.001, budget_period="month"),
        pricing={"models": {PRIMARY: price, "up-secondary": price}},
    )
    assert (await sc.ask(api)).status == 200
    result = await sc.ask(api, stream=True)
    assert result.status == 429
    code, message = _error(result, api)
    assert code == ("rate_limit_error" if api == "messages" else "insufficient_quota")
    assert "spend budget ($0.001 per month)" in message, message
    assert result.header("x-should-retry") == "false"
    assert 1 <= int(result.header("retry-after") or 0) <= 31 * 86400  # until the month ends
    assert sc.seen(PRIMARY) == 1  # the refused request never reached an upstream
