"""Real ``spillgate serve`` processes on one real Redis: ``--workers 2`` on one port, the refusal
without a shared store, and an instance killed with ``kill -9`` while it holds a concurrency slot
and the fleet's probe lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream, Fault

from ..eventually import eventually
from ..redisserver import RedisServer, free_port
from .test_instances import fleet_config

BODY = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"authorization": "Bearer sk-sg-fleet-client", "content-type": "application/json"}


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any], *args: str) -> Served:
        port = free_port()
        config = {**config, "listen": f"127.0.0.1:{port}"}
        path = tmp_path / f"config-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spillgate", "serve", "--config", str(path), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        started.append(proc)
        return Served(proc, f"http://127.0.0.1:{port}", log)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout}s")


async def ask(url: str) -> int:
    # A new connection per request: the kernel spreads connections (not requests) over workers.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.post(url + "/v1/chat/completions", data=orjson.dumps(BODY), headers=HEADERS) as resp,
    ):
        await resp.read()
        return resp.status


def test_more_than_one_worker_without_a_shared_store_is_refused_with_the_way_to_run_redis(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    config = {
        "providers": {"up": {"protocol": "openai", "base_url": fake.openai_base_url}},
        "models": {"coder": {"routes": [{"provider": "up", "model": "m"}]}},
    }
    path = tmp_path / "memory.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "spillgate", "serve", "--config", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "needs a shared state store" in done.stderr
    assert "redis-server --port 6379 --bind 127.0.0.1" in done.stderr
    assert "state: redis://127.0.0.1:6379/0" in done.stderr


async def test_two_workers_on_one_port_send_the_failing_primary_one_probe(
    fake: FakeUpstream, redis_server: RedisServer, serve: Any
) -> None:
    fake.set("up-primary", Fault(status=503, error_code="server_is_overloaded", headers_delay=0.3))
    served = serve(fleet_config(fake, redis_server, "workers"), "--workers", "2")
    await ready(served.url)
    await asyncio.sleep(0.5)  # the second worker too (readiness answered by one of them)
    assert await ask(served.url) == 200
    opened = time.monotonic()
    assert len(fake.attempts_for("up-primary")) == 1
    await asyncio.sleep(0.1)
    # Both workers take connections; neither sends the primary anything during the cooldown.
    assert all(s == 200 for s in await asyncio.gather(*(ask(served.url) for _ in range(12))))
    assert len(fake.attempts_for("up-primary")) == 1
    await asyncio.sleep(1.3 - (time.monotonic() - opened))
    waves = []
    for _ in range(6):
        waves.append(asyncio.gather(*(ask(served.url) for _ in range(4))))
        await asyncio.sleep(0.05)
    statuses = [s for wave in await asyncio.gather(*waves) for s in wave]
    assert statuses == [200] * 24
    assert len(fake.attempts_for("up-primary")) == 2, "one fleet-wide probe"
    children = await asyncio.to_thread(
        subprocess.run, ["pgrep", "-P", str(served.proc.pid)], capture_output=True, text=True
    )
    assert len(children.stdout.split()) == 2

    # /metrics answers for the whole gateway, whichever worker takes the scrape.
    await asyncio.sleep(1.3)  # each worker shares its counts every second
    totals = set()
    for _ in range(6):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
            http.get(served.url + "/metrics") as resp,
        ):
            totals.add(requests_total(await resp.text()))
    assert totals == {37.0}, totals
    # ...and so does the dashboard's timeline.
    seen = set()
    for _ in range(6):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
            http.get(served.url + "/admin/timeline?window=5m") as resp,
        ):
            body = await resp.json()
            seen.add(sum(bucket["requests"] for bucket in body["total"]))
    assert seen == {37}, seen


def requests_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("spillgate_requests_total{")
    )


async def test_an_instance_killed_holding_a_slot_and_the_probe_lease_frees_both_within_their_ttls(
    fake: FakeUpstream, redis_server: RedisServer, serve: Any
) -> None:
    config = fleet_config(fake, redis_server, "kill9")
    config["accounts"][0]["max_concurrency"] = 1
    config["resilience"]["breaker"]["probe_ttl"] = "2s"
    config["providers"]["up"]["timeouts"]["first_byte"] = "20s"
    config["resilience"]["try_timeout"] = "20s"
    fake.set("up-primary", Fault.capacity())
    doomed = serve(config)
    await ready(doomed.url)
    survivor = App(parse_settings(config | {"listen": "127.0.0.1:0"}, env={}, source="test"))
    await survivor.start()
    fleet = survivor.runtime.fleet
    assert fleet is not None
    try:
        assert await ask(doomed.url) == 200  # the primary's 503 opens its cooldown, fleet-wide
        await eventually(lambda: fleet.health.remote_applied >= 1, timeout=2.0)
        await asyncio.sleep(1.1)
        # Half-open: the doomed instance claims the probe lease; its probe hangs on the primary,
        # holding the account's only slot as well.
        fake.set("up-primary", Fault(headers_delay=60))
        assert await ask(doomed.url) == 200  # goes elsewhere while its instance claims the lease
        await asyncio.sleep(0.1)
        pending = [asyncio.create_task(ask(doomed.url))]  # the probe
        await eventually(lambda: len(fake.attempts_for("up-primary")) == 2, timeout=3.0)
        keys = redis_server.command("KEYS", "kill9:*").decode()
        assert "kill9:probe:" in keys and "kill9:slots:{acct:oa-1}" in keys
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(5)
        killed = time.monotonic()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        fake.set("up-primary", Fault())  # recovered: whoever probes now closes it

        async def survivor_ask() -> int:
            return await ask(survivor.url)

        # Until the TTLs pass the survivor neither probes nor uses the slot...
        while time.monotonic() - killed < 0.8:
            assert await survivor_ask() == 200
            await asyncio.sleep(0.05)
        assert len(fake.attempts_for("up-primary")) == 2
        # ...then it does: lease (probe_ttl 2 s) and slot (slot_ttl 1 s) expired.
        while len(fake.attempts_for("up-primary")) == 2:
            assert time.monotonic() - killed < 2.0 + 1.5, "the dead instance's lease was never freed"
            assert await survivor_ask() == 200
            await asyncio.sleep(0.05)
        assert time.monotonic() - killed >= 1.0
        last = fake.attempts_for("up-primary")[-1]
        assert last.outcome == "ok"
    finally:
        await survivor.stop(0)
