"""A full upstream pool fails over instead of hanging the request (issue 10, item 7)."""

from __future__ import annotations

import asyncio

from spillgate.fake import FakeUpstream, Fault
from tests.eventually import eventually

from ..harness import start_scenario


async def test_a_full_pool_fails_over_within_the_connect_timeout(fake: FakeUpstream) -> None:
    timeouts = {"connect": "500ms", "first_byte": "30s", "total": "30s"}
    config = {
        "listen": "127.0.0.1:0",
        "providers": {
            "small": {
                "protocol": "openai",
                "base_url": fake.openai_base_url,
                "api_key": "sk-a",
                "max_connections": 1,
                "timeouts": timeouts,
            },
            "other": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk-b"},
        },
        "models": {
            "hold": {"routes": [{"provider": "small", "model": "up-hold"}]},
            "coder": {
                "routes": [{"provider": "small", "model": "up-p"}, {"provider": "other", "model": "up-f"}]
            },
        },
    }
    sc = await start_scenario(fake, config)
    try:
        fake.set("up-hold", Fault.hang())
        holder = asyncio.ensure_future(sc.ask("chat", model="hold"))  # takes the pool's only connection
        await eventually(lambda: fake.in_flight == 1, what="the holder to reach the upstream")
        result = await sc.ask("chat")
        assert result.status == 200 and result.header("x-spillgate-route") == "coder[1]", result.reply.body
        assert 0.5 <= result.elapsed < 1.5
        assert sc.seen("up-p") == 0  # nothing was sent on the full pool
        assert sc.app.gateway.classifier.hits["builtin.pool_full"] == 1
        assert sc.app.gateway.clients["small"].pool_full == 1
        # Not the upstream's fault: its health is untouched, the next request tries it again.
        assert not [s for s in sc.app.gateway.health.snapshot() if "up-p" in s.key]
        metrics = await sc.http.get(sc.app.url + "/metrics")
        text = await metrics.text()
        assert 'spillgate_error_rule_hits_total{rule="builtin.pool_full"} 1' in text
        assert 'spillgate_upstream_pool_full_total{provider="small"} 1' in text
        holder.cancel()
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
