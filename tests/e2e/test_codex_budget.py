"""A spent budget stops the real Codex CLI at once, tokens or money alike.

Codex retries a 429 that carries ``Retry-After``, spaced by it, and ignores ``x-should-retry``
(../shared/CLIENTS.md): the SDKs' refusal would park it until the budget period ends. The gateway
refuses a Codex streaming request with an in-stream ``response.failed`` ``insufficient_quota``,
which Codex treats as final. Run with Codex's own retry defaults (no ``-c`` overrides): one
request, no retry, the turn fails with Codex's own "Quota exceeded" text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spillgate.fake import FakeUpstream

from .codex import run_codex
from .conftest import CLIENT_KEY, CODEX_MODEL, PRIMARY, SECONDARY, e2e_config, start_stack

PRICE = {"input": 1000.0, "output": 2000.0}


@pytest.mark.parametrize(
    ("limits", "pricing", "wording", "limit"),
    [
        ({"token_budget": 5, "budget_period": "month"}, None, "token budget", "budget"),
        ({"spend_budget": 0.001, "budget_period": "day"}, {"models": {PRIMARY: PRICE, SECONDARY: PRICE}},
         "spend budget", "spend"),
    ],
    ids=["tokens", "spend"],
)  # fmt: skip
async def test_a_spent_budget_stops_codex_at_once(
    client_bin: Path,
    fake: FakeUpstream,
    tmp_path: Path,
    limits: dict[str, Any],
    pricing: dict[str, Any] | None,
    wording: str,
    limit: str,
) -> None:
    config = e2e_config(fake)
    config["client_keys"][0].update(limits)
    if pricing is not None:
        config["pricing"] = pricing
    stack = await start_stack(fake, config)
    try:
        auth = {"authorization": f"Bearer {CLIENT_KEY}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            body = {"model": CODEX_MODEL, "messages": [{"role": "user", "content": "spend it"}]}
            async with http.post(f"{stack.gateway_url}/v1/chat/completions", json=body) as resp:
                assert resp.status == 200  # this spends the budget
            async with http.post(f"{stack.gateway_url}/v1/chat/completions", json=body) as resp:
                assert resp.status == 429 and resp.headers["x-should-retry"] == "false"
                error = (await resp.json())["error"]
                assert error["code"] == "insufficient_quota" and wording in error["message"]
            fake.reset_attempts()
            run = await run_codex(
                client_bin / "codex",
                workdir=tmp_path,
                base_url=f"{stack.gateway_url}/v1",
                model=CODEX_MODEL,
                api_key=CLIENT_KEY,
                flags=[],  # Codex's own retry defaults: 4 request retries, 5 stream retries
                timeout=60,
            )
            async with http.get(f"{stack.gateway_url}/metrics") as resp:
                metrics = await resp.text()
        assert not run.run.timed_out, run.describe()
        assert run.exit_code != 0 and not run.completed, run.describe()
        # Codex shows its own text for insufficient_quota (the gateway's message is discarded).
        assert run.failure is not None and "Quota exceeded" in run.failure, run.describe()
        assert run.reconnects == 0, run.describe()  # final: not one retry
        assert run.run.elapsed < 30, run.describe()
        assert fake.attempts == []  # nothing reached an upstream
        # The direct request and Codex's one request: refused twice in all.
        refused = f'spillgate_client_limit_refusals_total{{client_key="e2e",limit="{limit}"}} 2'
        assert refused in metrics, metrics
    finally:
        await stack.app.stop(grace=1)
