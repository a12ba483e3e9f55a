"""No secret leaves the gateway: upstream credentials, client keys and the admin token never appear
in logs, metrics, usage rows, the admin API or error bodies — even when an upstream echoes the key
it was sent in its error message."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from spillgate.config.schema import KeyLimits
from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key
from spillgate.store import open_store
from spillgate.store.keys import KeyRegistry

from .harness import PRIMARY, SECONDARY, scenario_config, start_scenario

CLIENT_KEY = "sk-sg-client-SECRET-0001"
STORED_KEY = "sk-sg-stored-SECRET-0002"
WRONG_KEY = "sk-sg-wrong-SECRET-0003"
ADMIN_TOKEN = "admin-SECRET-token-0004"
UPSTREAM = {
    "oa-p": "sk-up-SECRET-oa-p",
    "oa-s": "sk-up-SECRET-oa-s",
    "an-p": "sk-up-SECRET-an-p",
    "an-s": "sk-up-SECRET-an-s",
}
SECRETS = [CLIENT_KEY, STORED_KEY, WRONG_KEY, ADMIN_TOKEN, *UPSTREAM.values()]


async def test_no_secret_in_logs_metrics_usage_admin_or_error_bodies(
    fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "usage.db"
    store = open_store(f"sqlite:{db}")
    await KeyRegistry(store).create("stored", STORED_KEY, KeyLimits(rpm=1000))
    await store.close()
    config = scenario_config(fake, usage={"dsn": f"sqlite:{db}"}, admin_token=ADMIN_TOKEN)
    config["client_keys"] = [{"name": "cfg", "hash": hash_key(CLIENT_KEY)}]
    for account in config["accounts"]:
        account["api_key"] = UPSTREAM[account["id"]]
    sc = await start_scenario(fake, config)
    seen: list[str] = []

    async def ask(api: str, key: str, **kw: object) -> None:
        sc.http.headers["authorization"] = f"Bearer {key}"
        result = await sc.ask(api, **kw)  # type: ignore[arg-type]
        seen.append(f"{result.status} {result.reply.headers} {result.reply.body.decode(errors='replace')}")

    try:
        # Upstreams that echo the key they were sent, in every kind of failure: a refused request
        # (passed through), then auth and capacity errors (a final error that quotes the upstream).
        fake.set(
            PRIMARY,
            Fault(
                status=400,
                error_type="invalid_request_error",
                error_message=f"content policy; your key {UPSTREAM['oa-p']}",
            ),
        )
        await ask("chat", CLIENT_KEY, model="solo")
        echo = f"Incorrect API key provided: {UPSTREAM['oa-p']} (and {UPSTREAM['an-p']})"
        fake.set(PRIMARY, Fault(status=401, error_type="invalid_request_error", error_message=echo))
        fake.set(
            SECONDARY,
            Fault(
                status=503,
                error_code="server_is_overloaded",
                error_message=f"at capacity for key {UPSTREAM['oa-s']}",
            ),
        )
        for api in ("chat", "responses", "messages"):
            await ask(api, CLIENT_KEY)
            await ask(api, STORED_KEY, stream=True)
        await ask("chat", WRONG_KEY)  # a wrong client key is not echoed either
        await ask("messages", WRONG_KEY)

        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as http:
            for path in (
                "/metrics",
                "/admin/health",
                "/admin/failures",
                "/admin/usage?by=client_key",
                "/admin/timeline",
                "/admin/keys",
                "/dashboard",
            ):
                async with http.get(sc.app.url + path, headers=admin) as resp:
                    assert resp.status == 200, (path, resp.status)
                    seen.append(f"{path} {await resp.text()}")
            async with http.get(
                sc.app.url + "/admin/health", headers={"authorization": f"Bearer {WRONG_KEY}"}
            ) as resp:
                assert resp.status == 401
                seen.append(await resp.text())
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)

    assert any("Incorrect API key provided" in s for s in seen), "the upstream's words still reach the client"
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = [repr(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables]
    finally:
        conn.close()
    assert len(rows) >= 4 and "sk-sg-stor" in "".join(rows)  # the key's prefix only
    haystacks = {"responses": "\n".join(seen), "logs": caplog.text, "usage store": "\n".join(rows)}
    for where, text in haystacks.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} appears in {where}"
