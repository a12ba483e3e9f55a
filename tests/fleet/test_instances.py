"""Two gateway instances on one real Redis (``redis-server`` on loopback): what one learns, the other
acts on. Each instance is a whole App (its own Runtime, link, replica and HTTP server); the fake
upstream counts what reaches it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key

from ..eventually import eventually
from ..redisserver import RedisServer

KEY = "sk-sg-fleet-client"
UPSTREAM = {"oa-1": "sk-up-fleet-1", "oa-2": "sk-up-fleet-2"}


def fleet_config(fake: FakeUpstream, redis: RedisServer, namespace: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "state": {"url": redis.url, "namespace": namespace, "slot_ttl": "1s"},
        "client_keys": [{"name": "team", "hash": hash_key(KEY)}],
        "providers": {
            "up": {
                "protocol": "openai",
                "base_url": fake.openai_base_url,
                "timeouts": {"first_byte": "2s", "first_token": "2s", "stream_idle": "2s", "total": "5s"},
            }
        },
        "accounts": [
            {"id": "oa-1", "provider": "up", "api_key": UPSTREAM["oa-1"]},
            {"id": "oa-2", "provider": "up", "api_key": UPSTREAM["oa-2"]},
        ],
        "models": {
            "coder": {
                "routes": [
                    {"provider": "up", "model": "up-primary", "accounts": ["oa-1"]},
                    {"provider": "up", "model": "up-secondary", "accounts": ["oa-2"]},
                ]
            }
        },
        "resilience": {
            "cooldowns": {"capacity": "1s", "capacity_max": "1s"},
            "breaker": {"probe_ttl": "5s"},
        },
    }
    config.update(extra)
    return config


class Pair:
    def __init__(self, apps: list[App], http: aiohttp.ClientSession) -> None:
        self.apps = apps
        self.http = http

    async def ask(self, which: int, body: dict[str, Any] | None = None, key: str = KEY) -> tuple[int, Any]:
        payload = body or {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}
        async with self.http.post(
            self.apps[which].url + "/v1/chat/completions",
            data=orjson.dumps(payload),
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        ) as resp:
            return resp.status, orjson.loads(await resp.read())


async def start_pair(config: dict[str, Any]) -> Pair:
    apps = []
    for _ in range(2):
        app = App(parse_settings(config, env={}, source="test"))
        await app.start()
        assert app.runtime.fleet is not None and app.runtime.fleet.link.up
        apps.append(app)
    return Pair(apps, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)))


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def pair_factory() -> AsyncIterator[Any]:
    made: list[Pair] = []

    async def make(config: dict[str, Any]) -> Pair:
        pair = await start_pair(config)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        await pair.http.close()
        for app in pair.apps:
            await app.stop(0)


def attempts_on(fake: FakeUpstream, model: str) -> int:
    return len(fake.attempts_for(model))


async def test_a_cooldown_opened_on_one_instance_holds_on_the_other_and_one_probe_goes(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    # A slow 503: each probe is in flight long enough for the other instance to want one too.
    fake.set("up-primary", Fault(status=503, error_code="server_is_overloaded", headers_delay=0.3))
    pair = await pair_factory(fleet_config(fake, redis_server, namespace))
    status, _ = await pair.ask(0)
    opened = time.monotonic()
    assert status == 200  # failed over to the secondary
    assert attempts_on(fake, "up-primary") == 1
    b = pair.apps[1].runtime.fleet
    assert b is not None
    await eventually(lambda: b.health.remote_applied >= 1, timeout=1.0)

    # During the cooldown neither instance sends the primary anything.
    for i in range(10):
        status, _ = await pair.ask(i % 2)
        assert status == 200
    assert attempts_on(fake, "up-primary") == 1

    # Half-open: both instances get requests at once, wave after wave, while the probe (slow)
    # is in flight; exactly one request probes, fleet-wide.
    await asyncio.sleep(1.3 - (time.monotonic() - opened))
    waves = []
    for _ in range(8):
        waves.append(asyncio.gather(*(pair.ask(i % 2) for i in range(4))))
        await asyncio.sleep(0.05)
    results = [r for wave in await asyncio.gather(*waves) for r in wave]
    assert [status for status, _ in results] == [200] * 32
    assert attempts_on(fake, "up-primary") == 2, [a.outcome for a in fake.attempts_for("up-primary")]


async def test_an_accounts_max_concurrency_holds_across_instances(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    config = fleet_config(fake, redis_server, namespace)
    config["accounts"][0]["max_concurrency"] = 2
    fake.set("up-primary", Fault(headers_delay=0.6))
    fake.set("up-secondary", Fault(headers_delay=0.6))
    pair = await pair_factory(config)
    results = await asyncio.gather(*(pair.ask(i % 2) for i in range(6)))
    assert [status for status, _ in results] == [200] * 6
    on_limited = [a for a in fake.attempts if a.headers.get("authorization") == f"Bearer {UPSTREAM['oa-1']}"]
    assert len(on_limited) == 2, "two instances, one account with max_concurrency 2"
    assert attempts_on(fake, "up-secondary") == 4


async def test_a_session_keeps_its_account_across_instances(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    config = fleet_config(fake, redis_server, namespace)
    config["models"]["coder"]["routes"] = [
        {"provider": "up", "model": "up-coder", "accounts": ["oa-1", "oa-2"]}
    ]
    pair = await pair_factory(config)
    # The instances' account rotations out of step, so that agreeing takes the shared binding.
    assert (await pair.ask(1))[0] == 200
    for session in ("s-one", "s-two", "s-three", "s-four"):
        body = {
            "model": "coder",
            "prompt_cache_key": session,
            "messages": [{"role": "user", "content": "hi"}],
        }
        for i in range(6):
            status, _ = await pair.ask(i % 2, body)
            assert status == 200
            await asyncio.sleep(0.01)
        used = {
            a.headers.get("authorization")
            for a in fake.attempts
            if orjson.loads(a.body).get("prompt_cache_key") == session
        }
        assert len(used) == 1, f"session {session} moved between accounts: {used}"


async def test_a_cooldown_reaches_the_other_instance_fast(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    """The replica's delay: a cooldown opened on one instance refuses there within 100 ms p99."""
    pair = await pair_factory(fleet_config(fake, redis_server, namespace))
    a, b = (app.runtime.fleet for app in pair.apps)
    assert a is not None and b is not None
    delays = []
    for n in range(50):
        key = f"account:probe-{n}"
        started = time.perf_counter()
        from spillgate.resilience.types import ErrorClass

        a.health.record_failure(key, ErrorClass.CAPACITY)
        while b.health.peek(key).allowed:
            await asyncio.sleep(0.0005)
            assert time.perf_counter() - started < 2
        delays.append(time.perf_counter() - started)
    delays.sort()
    assert delays[int(len(delays) * 0.99) - 1] < 0.1, delays[-5:]


async def test_redis_killed_under_load_fails_no_request_and_state_is_shared_again(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    config = fleet_config(fake, redis_server, namespace)
    # Every shared decision on the path: a key's limit check and an account's concurrency slot.
    config["client_keys"] = [{"name": "team", "hash": hash_key(KEY), "rpm": 1_000_000, "max_concurrent": 100}]
    config["accounts"][0]["max_concurrency"] = 50
    pair = await pair_factory(config)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load(which: int) -> None:
        while not stop.is_set():
            status, _ = await pair.ask(which)
            statuses.append(status)

    workers = [asyncio.create_task(load(i % 2)) for i in range(4)]
    await asyncio.sleep(0.3)
    redis_server.kill()
    await asyncio.sleep(0.8)
    redis_server.start()
    links = [app.runtime.fleet.link for app in pair.apps if app.runtime.fleet is not None]
    await eventually(lambda: all(link.up for link in links), timeout=8.0)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*workers)
    assert len(statuses) > 20
    assert set(statuses) == {200}, f"{statuses.count(200)} ok of {len(statuses)}"
    assert sum(sum(link.errors.values()) for link in links) >= 1  # counted (/metrics reads these)
    metrics = await pair.http.get(pair.apps[0].url + "/metrics")
    text = await metrics.text()
    assert "spillgate_state_store_errors_total" in text and "spillgate_state_store_up 1" in text

    # Shared again: a cooldown opened on one instance is seen on the other.
    fake.set("up-primary", Fault.capacity())
    status, _ = await pair.ask(0)
    assert status == 200
    before = attempts_on(fake, "up-primary")
    b = pair.apps[1].runtime.fleet
    assert b is not None
    applied = b.health.remote_applied
    await eventually(lambda: b.health.remote_applied > applied, timeout=1.0)
    for _ in range(5):
        assert (await pair.ask(1))[0] == 200
    assert attempts_on(fake, "up-primary") == before


async def test_a_key_revoked_by_the_cli_is_refused_by_both_instances_within_a_second(
    fake: FakeUpstream,
    redis_server: RedisServer,
    namespace: str,
    pair_factory: Any,
    pg_dsn: str,
    tmp_path: Any,
) -> None:
    """``spillgate keys revoke`` with the gateways' config: it tells them through the state store."""
    import yaml

    from spillgate import cli
    from spillgate.config.schema import UNLIMITED
    from spillgate.store import migrate, open_store
    from spillgate.store.keys import KeyRegistry

    await asyncio.to_thread(migrate, pg_dsn)
    config = fleet_config(fake, redis_server, namespace, usage={"dsn": pg_dsn})
    del config["client_keys"]
    config["limits"] = {"key_refresh": "60s"}  # the push, not the poll, must do it
    path = tmp_path / "spillgate.yaml"
    path.write_text(yaml.safe_dump(config))
    store = await asyncio.to_thread(open_store, pg_dsn)
    try:
        await KeyRegistry(store).create("stored", "sk-sg-stored-key-1", UNLIMITED)
    finally:
        await store.close()
    pair = await pair_factory(config)
    for i in (0, 1):
        assert (await pair.ask(i, key="sk-sg-stored-key-1"))[0] == 200

    assert await asyncio.to_thread(cli.main, ["keys", "revoke", "stored", "--config", str(path)]) == 0
    revoked = time.monotonic()
    while True:
        statuses = [(await pair.ask(i, key="sk-sg-stored-key-1"))[0] for i in (0, 1)]
        if statuses == [401, 401]:
            break
        assert time.monotonic() - revoked < 1.0, statuses
        await asyncio.sleep(0.02)


async def test_a_keys_rpm_holds_across_instances(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    config = fleet_config(fake, redis_server, namespace)
    config["client_keys"] = [{"name": "team", "hash": hash_key(KEY), "rpm": 4}]
    pair = await pair_factory(config)
    statuses = [(await pair.ask(i % 2))[0] for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429], "4 per minute for the key, not 4 per instance"
    status, body = await pair.ask(1)
    assert status == 429 and "4 requests per minute" in body["error"]["message"]


async def test_every_key_the_instances_write_has_a_ttl(
    fake: FakeUpstream, redis_server: RedisServer, namespace: str, pair_factory: Any
) -> None:
    """Health, probe leases, budget slices, slots, limits, sessions, metrics: nothing lives forever."""
    config = fleet_config(fake, redis_server, namespace)
    config["client_keys"] = [
        {"name": "team", "hash": hash_key(KEY), "rpm": 1000, "tpm": 1_000_000, "token_budget": 10**9}
    ]
    config["accounts"][0]["max_concurrency"] = 5
    config["accounts"][1]["max_concurrency"] = 5
    fake.set("up-primary", Fault.capacity())
    pair = await pair_factory(config)
    body = {"model": "coder", "prompt_cache_key": "s-ttl", "messages": [{"role": "user", "content": "hi"}]}
    for i in range(6):
        assert (await pair.ask(i % 2, body))[0] == 200
    await asyncio.sleep(1.1)  # half-open: a probe lease
    for i in range(4):
        assert (await pair.ask(i % 2, body))[0] == 200
        await asyncio.sleep(0.02)
    for app in pair.apps:
        assert app.runtime.fleet is not None
        await app.runtime.fleet.link.drained()
    await asyncio.sleep(0.3)  # a budget sync
    names = [n for n in redis_server.command("KEYS", f"{namespace}:*").split(b"\r\n") if n.startswith(b"t-")]
    kinds = {n.decode().split(":")[1] for n in names}
    assert {"health", "budget", "limits", "session"} <= kinds, kinds
    for name in names:
        ttl = redis_server.command("PTTL", name.decode())
        assert ttl.startswith(b":") and int(ttl[1:].strip()) > 0, (name, ttl)
