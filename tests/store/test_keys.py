"""Stored client keys (``spillgate keys create|list|revoke``) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from spillgate.config.schema import KeyLimits
from spillgate.store import RequestRecord, UsageStore
from spillgate.store.keys import KeyExists, KeyRegistry, KeyUse

from ..test_cli import clean_env, run


async def test_create_list_revoke(store: UsageStore) -> None:
    registry = KeyRegistry(store)
    limits = KeyLimits(
        models=frozenset({"coder", "fast"}),
        rpm=10,
        tpm=1000,
        max_concurrent=2,
        token_budget=5000,
        spend_budget=12.5,
        budget_period="day",
    )
    created = await registry.create("team-a", "sk-sg-secret-key-a", limits)
    assert created.sha256 == hashlib.sha256(b"sk-sg-secret-key-a").hexdigest()
    assert created.prefix == "sk-sg-secr" and created.active
    await registry.create("team-b", "sk-sg-secret-key-b", KeyLimits())
    with pytest.raises(KeyExists):
        await registry.create("team-a", "sk-sg-other", KeyLimits())

    listed = await registry.all()
    assert [k.name for k in listed] == ["team-a", "team-b"]
    assert listed[0].limits == limits and listed[1].limits == KeyLimits()
    assert listed[0].limits.spend_budget == 12.5 and listed[1].limits.spend_budget is None
    await registry.create(
        "team-c", "sk-sg-secret-key-c", KeyLimits(spend_budget=0.005, budget_period="total")
    )
    assert [k.limits for k in await registry.active() if k.name == "team-c"] == [
        KeyLimits(spend_budget=0.005, budget_period="total")
    ]
    assert {k.name for k in await registry.active()} == {"team-a", "team-b", "team-c"}

    assert await registry.revoke("team-a") is True
    assert await registry.revoke("team-a") is False  # already revoked
    assert await registry.revoke("nobody") is False
    assert [k.name for k in await registry.active()] == ["team-b", "team-c"]
    revoked = (await registry.all())[0]
    assert not revoked.active and revoked.revoked_at is not None
    with pytest.raises(KeyExists):  # the name stays taken: usage rows name it
        await registry.create("team-a", "sk-sg-new", KeyLimits())
    # Nothing in the table is the key itself.
    rows = await store.query("SELECT * FROM client_keys")
    assert "sk-sg-secret-key-a" not in repr(rows)


async def test_budget_used_since(store: UsageStore) -> None:
    now = time.time()

    def rec(
        key: str | None, t: float, inp: int | None, out: int | None, cost: float | None = None
    ) -> RequestRecord:
        return RequestRecord(
            time=t,
            request_id="r",
            client_key=key,
            public_model="m",
            api="openai-chat",
            stream=False,
            status=200,
            attempts=1,
            latency_ms=1.0,
            input_tokens=inp,
            output_tokens=out,
            cost_usd=cost,
        )

    await store.write(
        [
            rec("a", now - 10, 100, 20, 0.25),
            rec("a", now - 5, None, 7),  # the cost unknown: counts 0
            rec("a", now - 4, 3, 0, 0.5),
            rec("a", now - 7200, 1000, 1000, 100.0),  # before the period
            rec("b", now - 1, 5, 5),
            rec(None, now - 1, 50, 50, 7.0),
        ],
        [],
    )
    used = await KeyRegistry(store).budget_used([("a", now - 3600), ("b", 0.0), ("c", 0.0)])
    assert used == {"a": KeyUse(130, 0.75), "b": KeyUse(10, 0.0), "c": KeyUse(0, 0.0)}


def test_cli_create_list_revoke(tmp_path: object) -> None:
    dsn = f"sqlite:{tmp_path}/keys.db"
    out = run(
        "keys",
        "create",
        "ci-team",
        "--models",
        "coder",
        "--rpm",
        "30",
        "--token-budget",
        "1000",
        "--spend-budget",
        "50",
        "--budget-period",
        "day",
        "--dsn",
        dsn,
    )
    assert out.returncode == 0, out.stderr
    key = re.search(r"key:\s+(sk-sg-\S+)", out.stdout)
    assert key, out.stdout
    assert "shown once" in out.stderr

    listed = run("keys", "list", "--dsn", dsn)
    assert listed.returncode == 0
    assert "ci-team" in listed.stdout and "active" in listed.stdout
    assert "models coder, 30 req/min, 1000 tokens per day, $50.00 per day" in listed.stdout
    assert key.group(1) not in listed.stdout  # only a prefix is ever shown again
    assert key.group(1)[:10] + "…" in listed.stdout

    again = run("keys", "create", "ci-team", "--dsn", dsn)
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = run("keys", "create", "x", "--rpm", "0", "--dsn", dsn)
    assert bad.returncode == 2 and "positive integer" in bad.stderr
    for amount in ("0", "-5", "ten", "nan", "inf"):
        bad = run("keys", "create", "x", "--spend-budget", amount, "--dsn", dsn)
        assert bad.returncode == 2 and "expected a positive amount in USD" in bad.stderr, amount
    money = run(
        "keys", "create", "money", "--spend-budget", "$0.005", "--budget-period", "total", "--dsn", dsn
    )
    assert money.returncode == 0 and "limits: $0.005 in total" in money.stdout, money.stdout

    assert run("keys", "revoke", "ci-team", "--dsn", dsn).returncode == 0
    assert "revoked" in run("keys", "list", "--dsn", dsn).stdout
    gone = run("keys", "revoke", "ci-team", "--dsn", dsn)
    assert gone.returncode == 1 and "no active client key" in gone.stderr


def test_cli_keys_on_a_config_without_a_usage_store(tmp_path: object) -> None:
    config = f"{tmp_path}/c.yaml"
    with open(config, "w") as f:
        f.write("usage: off\nproviders: {}\nmodels: {}\n")
    out = run("keys", "list", "--config", config, env=clean_env())
    assert out.returncode == 2 and "usage store" in out.stderr
