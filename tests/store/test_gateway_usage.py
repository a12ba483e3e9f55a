"""The gateway records every request and attempt in the usage store; a crash loses at most ~1 s."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key
from spillgate.store import open_store
from tests.eventually import eventually

from ..harness import PRIMARY, SECONDARY, scenario_config, start_scenario


async def test_requests_and_attempts_are_recorded(fake: FakeUpstream, dsn: str) -> None:
    """On SQLite and on a real PostgreSQL, through the gateway's writer process."""
    config = scenario_config(fake)
    config["usage"] = {"dsn": dsn}
    config["client_keys"] = [{"name": "team-a", "hash": hash_key("sk-sg-rec")}]
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.capacity())
        sc.http.headers.update({"authorization": "Bearer sk-sg-rec", "user-agent": "codex_cli_rs/0.169.0"})
        for _ in range(3):
            assert (await sc.ask("responses", True, prompt_cache_key="thread-9")).status == 200
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)  # flushes the recorder
    store = open_store(dsn)
    try:
        rows = await store.recent_failed_attempts(limit=10)
        assert [(a.route, a.error_class, a.scope, a.kind) for a in rows] == [
            ("coder[0]", "capacity", "account_model", "attempt")
        ]
        usage = await store.usage("client_key", since=0, until=time.time() + 1)
        assert [(u.key, u.requests, u.errors) for u in usage] == [("team-a", 3, 0)]
        apps = await store.usage("client_app", since=0, until=time.time() + 1)
        assert [u.key for u in apps] == ["codex_cli_rs/0.169.0"]
        for table in ("requests", "attempts"):
            everything = repr(await store.query(f"SELECT * FROM {table}"))
            assert "sk-sg-rec" not in everything and "sk-oa-p" not in everything  # names, never keys
    finally:
        await store.close()


async def test_costs_are_recorded_per_attempt_and_summed(fake: FakeUpstream, dsn: str) -> None:
    """A replayed cut stream: the cut attempt's cost is wasted, and the usage query puts each
    attempt's cost on the route that spent it (the cut route answered nothing, yet it has a row)."""
    price = {"input": 1000.0, "output": 2000.0}
    config = scenario_config(fake, pricing={"models": {PRIMARY: price, SECONDARY: price}})
    config["usage"] = {"dsn": dsn}
    config["client_keys"] = [{"name": "team-a", "hash": hash_key("sk-sg-rec")}]
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault(cut_after_events=5))
        sc.http.headers.update({"authorization": "Bearer sk-sg-rec"})
        assert (await sc.ask("responses", True)).status == 200
        request_id = (await sc.ask("responses", True)).header("x-spillgate-request-id")
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
    store = open_store(dsn)
    try:
        first = (await store.query("SELECT request_id FROM requests ORDER BY id LIMIT 1"))[0][0]
        cut, replay = await store.attempts_for(first)
        assert (cut.route, cut.ok, cut.error_class, cut.estimated) == ("coder[0]", False, "stream_cut", True)
        assert cut.cost_usd is not None and cut.cost_usd > 0 and cut.wasted_usd == cut.cost_usd
        assert cut.stream_ms is not None and cut.input_tokens and cut.output_tokens
        assert (replay.route, replay.kind, replay.ok, replay.wasted_usd) == ("coder[1]", "replay", True, 0.0)
        assert replay.cost_usd is not None and replay.cost_usd > 0
        (request,) = await store.requests_for(first)
        assert request.cost_usd == pytest.approx(cut.cost_usd + replay.cost_usd)
        assert request.wasted_usd == pytest.approx(cut.cost_usd) and request.cost_estimated
        assert request_id is not None
        (second,) = await store.requests_for(request_id)  # the primary is cooling down: straight there
        assert second.attempts == 1 and second.wasted_usd == 0.0 and not second.cost_estimated
        assert second.cost_usd is not None and second.cost_usd > 0
        until = time.time() + 1
        (key,) = await store.usage("client_key", since=0, until=until)
        assert key.cost_usd == pytest.approx(request.cost_usd + second.cost_usd)
        assert key.wasted_usd == pytest.approx(cut.cost_usd) and key.unpriced == 0
        routes = {r.key: r for r in await store.usage("route", since=0, until=until)}
        assert routes["coder[1]"].requests == 2
        assert routes["coder[1]"].cost_usd == pytest.approx(replay.cost_usd + second.cost_usd)
        assert routes["coder[1]"].wasted_usd == 0.0
        assert (routes["coder[0]"].requests, routes["coder[0]"].wasted_usd) == (
            0,
            pytest.approx(cut.cost_usd),
        )
    finally:
        await store.close()


def test_kill_9_loses_at_most_the_last_second(tmp_path: Path) -> None:
    """SIGKILL the gateway under load: the usage rows cover every request answered before the last second."""
    fake_port, gw_port = _free_port(), _free_port()
    db = tmp_path / "usage.db"
    cfg = tmp_path / "spillgate.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{gw_port}\n"
        f"usage: {{dsn: 'sqlite:{db}'}}\n"
        f"providers: {{fake: {{protocol: openai, base_url: 'http://127.0.0.1:{fake_port}/v1'}}}}\n"
        "models: {m: {routes: [{provider: fake, model: up}]}}\n"
    )
    fake = subprocess.Popen(
        [sys.executable, "-m", "spillgate", "fake-upstream", "--listen", f"127.0.0.1:{fake_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "spillgate", "serve", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        answered = asyncio.run(_load(gw_port, fake_port, seconds=2.5))
        writers = _children(gateway.pid)  # the usage writer process
        assert writers, "the gateway runs its usage writer as a child process"
        killed_at = time.monotonic()
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait(10)
        # The writer sees the end of its input, writes what reached it and exits on its own.
        gone = eventually(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in writers),
            timeout=10,
            what="the writer to exit (it outlived its input)",
        )
        asyncio.run(gone)
        times = answered
        assert len(times) > 200, len(times)
        last_second = sum(1 for t in times if t > killed_at - 1.0)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("select count(*) from requests").fetchone()[0]
        assert len(times) - last_second <= rows <= len(times), (rows, len(times), last_second)
    finally:
        for proc in (gateway, fake):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


async def _load(port: int, fake_port: int, seconds: float) -> list[float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    answered: list[float] = []
    async with aiohttp.ClientSession() as http:

        def answers(probe: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                try:
                    async with http.get(probe) as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            return check

        # Both up before the load: a request the fake is not there for is recorded, not answered.
        gateway_up = answers(f"http://127.0.0.1:{port}/healthz")
        await eventually(gateway_up, timeout=30, interval=0.05, what="the gateway to answer /healthz")
        fake_up = answers(f"http://127.0.0.1:{fake_port}/v1/models")
        await eventually(fake_up, timeout=30, interval=0.05, what="the fake upstream to answer")
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                async with http.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        answered.append(time.monotonic())

        await asyncio.gather(*(worker() for _ in range(4)))
    return answered


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
@pytest.mark.parametrize("stream", [False, True])
async def test_token_usage_is_recorded(fake: FakeUpstream, tmp_path: Path, api: str, stream: bool) -> None:
    db = tmp_path / "usage.db"
    config = scenario_config(fake)
    config["usage"] = {"dsn": f"sqlite:{db}"}
    sc = await start_scenario(fake, config)
    try:
        extra = {"stream_options": {"include_usage": True}} if api == "chat" and stream else {}
        result = await sc.ask(api, stream, **extra)
        assert result.status == 200
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
    with sqlite3.connect(db) as conn:
        row = conn.execute("select input_tokens, output_tokens from requests").fetchone()
    assert row[0] is not None and row[0] > 0 and row[1] is not None and row[1] > 0, row
