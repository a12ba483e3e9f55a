"""Config reload: new requests use the new file at once, running streams finish on the old one,
health / metrics / limits carry over, an invalid file changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from spillgate.app import App, build_app
from spillgate.config.loader import ConfigError
from spillgate.fake import FakeUpstream, Fault
from tests.eventually import eventually

from ..clock import ShiftedClock
from ..harness import PRIMARY, SECONDARY, Scenario, scenario_config


async def _start(fake: FakeUpstream, path: Path, config: dict[str, Any]) -> Scenario:
    import aiohttp

    path.write_text(yaml.safe_dump(config))
    app = await build_app(str(path), env={})
    await app.start()
    # Built from a file as `spillgate serve` does: this app keeps the real clock (not ``clock``).
    return Scenario(app, fake, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)), ShiftedClock())


def _only_secondary(config: dict[str, Any]) -> dict[str, Any]:
    changed = dict(config)
    changed["models"] = {
        "coder": {"routes": [{"accounts": ["oa-s"], "model": SECONDARY}]},
        "fresh": {"routes": [{"accounts": ["oa-s"], "model": SECONDARY}]},
    }
    return changed


async def test_reload_keeps_running_streams_and_serves_new_requests_with_the_new_config(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "spillgate.yaml"
    config = scenario_config(fake)
    sc = await _start(fake, path, config)
    try:
        fake.set(PRIMARY, Fault(event_delay=0.05, chunks=8))  # 16 events, ~0.75 s: outlasts the reload
        running = asyncio.create_task(sc.ask("responses", stream=True))
        await eventually(lambda: fake.in_flight == 1, what="the stream to reach the upstream")
        assert sc.app.gateway.active == 1
        old = sc.app.gateway

        path.write_text(yaml.safe_dump(_only_secondary(config)))
        result = await sc.app.reload()
        assert sc.app.gateway is not old
        assert result.models == ("coder", "fresh") and result.retiring_requests == 1
        assert result.pools_kept == ("an", "oa") and result.restart_needed == ()

        # New requests: the new routes, at once, while the old stream still runs.
        fresh = await sc.ask("chat", model="fresh")
        assert fresh.status == 200 and fresh.header("x-spillgate-route") == "fresh[0]"
        assert (await sc.ask("chat")).header("x-spillgate-route") == "coder[0]"
        assert not running.done()

        streamed = await running
        assert streamed.status == 200 and streamed.ended_normally("responses")
        assert streamed.header("x-spillgate-route") == "coder[0]" and streamed.text("responses", True)
        assert sc.seen(PRIMARY) == 1  # only the stream that started before the reload
        await eventually(lambda: old.active == 0, what="the retired gateway to finish its stream")
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_reload_carries_health_metrics_and_counts(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "spillgate.yaml"
    config = scenario_config(fake)
    sc = await _start(fake, path, config)
    try:
        fake.set(PRIMARY, Fault.capacity())
        assert (await sc.ask("chat")).header("x-spillgate-route") == "coder[1]"
        open_before = {s.key for s in sc.app.gateway.health.snapshot() if s.state != "closed"}
        assert open_before
        metrics_before = sc.app.gateway.metrics.render()

        config["resilience"]["max_attempts"] = 3
        path.write_text(yaml.safe_dump(config))
        await sc.app.reload()
        gw = sc.app.gateway
        assert gw.settings.resilience.max_attempts == 3
        assert {s.key for s in gw.health.snapshot() if s.state != "closed"} >= open_before
        # Still in cooldown: the next request does not try the primary again.
        assert (await sc.ask("chat")).header("x-spillgate-route") == "coder[1]"
        assert sc.seen(PRIMARY) == 1
        text = gw.metrics.render().decode()
        assert "spillgate_requests_total{" in text
        assert len(text) >= len(metrics_before) and text.count("spillgate_scope_open{") >= 1
        assert text.count("# TYPE spillgate_scope_open gauge") == 1  # gauges replaced, not doubled
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_invalid_file_changes_nothing_and_restart_only_keys_are_reported(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "spillgate.yaml"
    config = scenario_config(fake)
    sc = await _start(fake, path, config)
    try:
        gw = sc.app.gateway
        path.write_text("models: [not a mapping\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            await sc.app.reload()
        bad = dict(config, models={"coder": {"routes": [{"accounts": ["nobody"], "model": "x"}]}})
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match="nobody"):
            await sc.app.reload()
        assert sc.app.gateway is gw and (await sc.ask("chat")).status == 200

        moved = dict(config, listen="127.0.0.1:1", limits={"max_body_bytes": 1024})
        path.write_text(yaml.safe_dump(moved))
        result = await sc.app.reload()
        assert result.restart_needed == ("listen", "limits.max_body_bytes")
        assert sc.app.settings.port == 0 and sc.app.server.port != 1  # the running values stay
        assert sc.app.settings.limits.max_body_bytes == 32 * 1024 * 1024
        assert (await sc.ask("chat")).status == 200
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_reload_needs_a_config_file(fake: FakeUpstream) -> None:
    from spillgate.config.loader import parse_settings

    app = App(parse_settings(scenario_config(fake), env={}, source="test"))
    with pytest.raises(ConfigError, match="nothing to reload"):
        await app.reload()
