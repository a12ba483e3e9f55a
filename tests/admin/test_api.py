"""The admin API through a running gateway in front of the fake upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spillgate.app import App
from spillgate.config.loader import load_settings
from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key

from ..harness import PRIMARY, SECONDARY, Scenario, scenario_config, start_scenario
from .conftest import ADMIN_TOKEN, account, admin, eventually, route


def admin_config(fake: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    config = scenario_config(fake, admin_token=ADMIN_TOKEN, **overrides)
    config["models"]["pool"] = {"routes": [{"accounts": ["oa-p", "oa-s"], "model": PRIMARY}]}
    return config


@pytest.fixture
async def sc(fake: FakeUpstream) -> AsyncIterator[Scenario]:
    scenario = await start_scenario(fake, admin_config(fake))
    yield scenario
    await scenario.http.close()
    await scenario.app.stop(grace=1)


async def test_admin_token_is_required_and_never_echoed(sc: Scenario) -> None:
    for token in (None, "wrong-token", ADMIN_TOKEN[:-1]):
        reply = await admin(sc, "/admin/health", token=token)
        assert reply.status == 401, token
        assert reply.headers["www-authenticate"] == 'Bearer realm="spillgate-admin"'
        assert set(reply.body["error"]) >= {"message", "type", "code"}
        assert reply.body["error"]["type"] == "authentication_error"
        text = str(reply.body) + str(reply.headers)
        assert ADMIN_TOKEN not in text and (token is None or token not in text)
    assert (await admin(sc, "/admin/nowhere", token=None)).status == 401  # no hint without the token
    ok = await admin(sc, "/admin/health")
    assert ok.status == 200 and ok.headers["cache-control"] == "no-store"
    assert "GET /admin/health" in (await admin(sc, "/admin")).body["endpoints"]


async def test_without_admin_token_loopback_is_served(fake: FakeUpstream) -> None:
    sc = await start_scenario(fake, scenario_config(fake))
    try:
        assert (await admin(sc, "/admin/health", token=None)).status == 200
        assert (await admin(sc, "/admin/health", token="anything")).status == 200
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_dashboard_shell_needs_no_token_and_holds_no_data(sc: Scenario) -> None:
    reply = await admin(sc, "/dashboard", token=None)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    csp = reply.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    page = reply.body.decode()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from elsewhere
    assert "https://" not in page
    assert "coder" not in page and ADMIN_TOKEN not in page
    assert (await admin(sc, "/dashboard", method="POST", token=None)).status == 405


async def test_health_shows_a_cooldown_with_its_reason_then_recovery(sc: Scenario) -> None:
    before = (await admin(sc, "/admin/health")).body
    assert route(before, "coder[0]")["state"] == "closed" and before["scopes"] == []
    sc.fake.set(PRIMARY, Fault.capacity())
    result = await sc.ask("chat")
    assert result.status == 200 and result.header("x-spillgate-route") == "coder[1]"
    health = (await admin(sc, "/admin/health")).body
    primary = route(health, "coder[0]")
    assert primary["state"] == "open"
    assert primary["error_class"] == "capacity"
    assert "at capacity" in primary["reason"]
    assert 0 < primary["cooldown_s"] <= 1.0
    (member,) = primary["members"]
    assert member["account"] == "oa-p" and member["scope"] == f"account:oa-p|{PRIMARY}"
    assert [e["error_class"] for e in member["recent_errors"]] == ["capacity"]
    assert member["recent_errors"][0]["status"] == 503
    assert route(health, "coder[1]")["state"] == "closed"
    assert [(s["key"], s["state"]) for s in health["scopes"]] == [(f"account:oa-p|{PRIMARY}", "open")]
    assert health["retry_budget"]["limit"] >= 1

    sc.fake.clear(PRIMARY)

    async def recovered() -> bool:
        result = await sc.ask("chat")
        assert result.status == 200
        return route((await admin(sc, "/admin/health")).body, "coder[0]")["state"] == "closed"

    await eventually(recovered, timeout=5, what="coder[0] to close again")
    health = (await admin(sc, "/admin/health")).body
    assert health["scopes"] == []
    assert route(health, "coder[0]")["reason"] == ""

    timeline = (await admin(sc, "/admin/timeline?window=1m")).body
    coder = timeline["models"]["coder"]
    assert sum(b["requests"] for b in coder) >= 2
    assert sum(b["failed_attempts"] for b in coder) >= 1
    assert sum(b["failovers"] for b in coder) >= 1
    assert timeline["bucket_seconds"] == 10 and timeline["window_seconds"] == 60
    failures = (await admin(sc, "/admin/failures")).body
    assert failures["source"] == "memory"  # no usage store here
    assert failures["attempts"][0]["error_class"] == "capacity"
    assert failures["requests"] == []


def _keys_seen(fake: FakeUpstream) -> list[str]:
    return [a.headers.get("authorization", "") for a in fake.attempts_for(PRIMARY)]


async def test_drain_lets_the_stream_finish_and_sends_new_requests_elsewhere(sc: Scenario) -> None:
    sc.fake.set(PRIMARY, Fault(event_delay=0.2, times=1))  # the first request streams slowly
    stream = asyncio.create_task(sc.ask("chat", stream=True, model="pool"))
    busy: list[str] = []

    async def in_flight() -> bool:
        health = (await admin(sc, "/admin/health")).body
        busy[:] = [a["id"] for a in health["accounts"] if a["inflight"] == 1]
        return bool(busy)

    await eventually(in_flight, timeout=3, what="the stream to be in flight")
    (draining,) = busy
    other = "oa-s" if draining == "oa-p" else "oa-p"
    reply = await admin(sc, f"/admin/accounts/{draining}/drain", method="POST")
    assert reply.status == 200
    assert reply.body == {
        "account": draining,
        "state": "drained",
        "inflight": 1,
        "message": f"no new requests go to account {draining}; the 1 in flight finish",
    }
    health = (await admin(sc, "/admin/health")).body
    assert account(health, draining)["state"] == "drained"
    assert account(health, draining)["inflight"] == 1
    assert route(health, "pool[0]")["state"] == "closed"  # the other account still serves
    members = {m["account"]: m["state"] for m in route(health, "pool[0]")["members"]}
    assert members == {draining: "drained", other: "closed"}

    sc.fake.reset_attempts()
    for _ in range(4):
        assert (await sc.ask("chat", model="pool")).status == 200
    assert set(_keys_seen(sc.fake)) == {f"Bearer sk-{other}"}

    finished = await asyncio.wait_for(stream, 10)
    assert finished.status == 200 and finished.ended_normally("chat")
    assert finished.text("chat", stream=True) == "Hello from the fake upstream."
    health = (await admin(sc, "/admin/health")).body
    assert account(health, draining)["state"] == "drained"  # its success does not undo the drain
    assert account(health, draining)["inflight"] == 0

    reply = await admin(sc, f"/admin/accounts/{draining}/enable", method="POST")
    assert reply.status == 200
    assert reply.body == {"account": draining, "state": "closed", "cleared": [f"account:{draining}"]}
    assert account((await admin(sc, "/admin/health")).body, draining)["state"] == "closed"
    sc.fake.reset_attempts()
    for _ in range(4):
        assert (await sc.ask("chat", model="pool")).status == 200
    assert f"Bearer sk-{draining}" in _keys_seen(sc.fake)


async def test_account_and_provider_actions_validate_their_target(sc: Scenario) -> None:
    reply = await admin(sc, "/admin/accounts/nobody/drain", method="POST")
    assert reply.status == 404 and reply.body["error"]["code"] == "unknown_account"
    assert "oa-p" in reply.body["error"]["message"]
    assert (await admin(sc, "/admin/accounts/oa-p/drain")).status == 405
    assert (await admin(sc, "/admin/accounts/oa-p/explode", method="POST")).status == 404
    reply = await admin(sc, "/admin/providers/oa/drain", method="POST")
    assert reply.status == 409 and reply.body["error"]["code"] == "nothing_to_drain"
    reply = await admin(sc, "/admin/providers/nope/enable", method="POST")
    assert reply.status == 404
    reply = await admin(sc, "/admin/providers/oa/enable", method="POST")
    assert reply.status == 200 and reply.body["cleared"] == []


async def test_provider_key_routes_can_be_drained(fake: FakeUpstream) -> None:
    config = scenario_config(fake, admin_token=ADMIN_TOKEN)
    config["models"] = {
        "open": {"routes": [{"provider": "oa", "model": PRIMARY}, {"provider": "oa", "model": SECONDARY}]}
    }
    sc = await start_scenario(fake, config)
    try:
        reply = await admin(sc, "/admin/providers/oa/drain", method="POST")
        assert reply.status == 200 and reply.body["routes"] == ["open[0]", "open[1]"]
        health = (await admin(sc, "/admin/health")).body
        assert route(health, "open[0]")["state"] == "drained"
        result = await sc.ask("chat", model="open")
        assert result.status == 503  # nothing left to serve it
        assert (await admin(sc, "/admin/providers/oa/enable", method="POST")).body["cleared"] == [
            "provider-key:oa"
        ]
        assert (await sc.ask("chat", model="open")).status == 200
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


BAD_REQUESTS = [
    ("/admin/usage?by=tenant", "by"),
    ("/admin/usage?since=yesterday", "since"),
    ("/admin/usage?until=1767225600000", "until"),
    ("/admin/usage?since=1h&until=2h", "since"),
    ("/admin/usage?limit=0", "limit"),
    ("/admin/failures?limit=many", "limit"),
    ("/admin/failures?source=disk", "source"),
    ("/admin/failures?since=later", "since"),
    ("/admin/timeline?window=-5m", "window"),
    ("/admin/timeline?window=forever", "window"),
]


@pytest.mark.parametrize(("path", "param"), BAD_REQUESTS)
async def test_bad_parameters_get_a_400_naming_them(sc: Scenario, path: str, param: str) -> None:
    reply = await admin(sc, path)
    assert reply.status == 400, reply.body
    error = reply.body["error"]
    assert error["param"] == param and error["message"].startswith(f"{param}: ")
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_parameter"


async def test_methods_and_unknown_paths(sc: Scenario) -> None:
    reply = await admin(sc, "/admin/health", method="POST")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"
    reply = await admin(sc, "/admin/reload")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    reply = await admin(sc, "/admin/accounts")
    assert reply.status == 404 and reply.body["error"]["code"] == "unknown_url"
    # the gateway's own endpoints are untouched by the admin routing
    assert (await admin(sc, "/healthz", token=None)).status == 200


async def test_usage_without_a_store_says_so(sc: Scenario) -> None:
    reply = await admin(sc, "/admin/usage?by=client_key")
    assert reply.status == 503 and reply.body["error"]["code"] == "usage_store_off"
    assert "usage.dsn" in reply.body["error"]["message"]
    assert (await admin(sc, "/admin/failures?source=store")).status == 503
    assert (await admin(sc, "/admin/timeline")).status == 200  # the timeline is in memory


async def test_usage_queries_by_key_app_model_and_time(fake: FakeUpstream, tmp_path: Path) -> None:
    config = admin_config(fake)
    config["usage"] = {"dsn": f"sqlite:{tmp_path / 'usage.db'}"}
    config["client_keys"] = [
        {"name": "team-a", "hash": hash_key("sk-sg-a")},
        {"name": "team-b", "hash": hash_key("sk-sg-b")},
    ]
    sc = await start_scenario(fake, config)
    try:
        started = time.time()
        sc.fake.set(PRIMARY, Fault.capacity(times=1))
        calls = [("sk-sg-a", "codex_cli_rs/0.1", "coder")] * 3 + [("sk-sg-b", "claude-cli/2.0", "solo")]
        for key, agent, model in calls:
            sc.http.headers.update({"authorization": f"Bearer {key}", "user-agent": agent})
            assert (await sc.ask("chat", model=model)).status == 200
        sc.http.headers.pop("authorization")
        assert sc.app.usage is not None
        await sc.app.usage.flush()
        ended = time.time() + 1

        async def rows(query: str) -> list[tuple[Any, ...]]:
            reply = await admin(sc, "/admin/usage?" + query)
            assert reply.status == 200, reply.body
            return [(r["key"], r["requests"], r["errors"]) for r in reply.body["rows"]]

        assert await rows("by=client_key") == [("team-a", 3, 0), ("team-b", 1, 0)]
        assert await rows("by=client_app") == [("codex_cli_rs/0.1", 3, 0), ("claude-cli/2.0", 1, 0)]
        assert await rows("by=public_model") == [("coder", 3, 0), ("solo", 1, 0)]
        # coder[0] failed once (capacity) and stayed in cooldown: coder[1] answered every coder request
        assert await rows("by=route") == [("coder[1]", 3, 0), ("solo[0]", 1, 0)]
        by_account = dict((k, n) for k, n, _ in await rows("by=account"))
        assert sum(by_account.values()) == 4 and set(by_account) <= {"oa-p", "oa-s"}
        assert await rows(f"by=client_key&since={started - 1:.3f}&until={ended:.3f}") == [
            ("team-a", 3, 0),
            ("team-b", 1, 0),
        ]
        assert await rows("by=client_key&until=1h") == []  # everything is newer than an hour ago
        assert await rows("by=client_key&since=2000-01-01T00:00:00Z&until=2000-01-02") == []
        assert await rows("by=client_key&limit=1") == [("team-a", 3, 0)]
        reply = await admin(sc, "/admin/usage?by=client_key&since=15m")
        assert reply.body["requests"] == 4 and reply.body["by"] == "client_key"
        assert reply.body["until"] - reply.body["since"] == pytest.approx(900, abs=1)

        failures = (await admin(sc, "/admin/failures")).body
        assert failures["source"] == "store"
        assert [(a["route"], a["error_class"]) for a in failures["attempts"]] == [("coder[0]", "capacity")]
        assert failures["requests"] == []
        assert (await admin(sc, "/admin/failures?source=memory")).body["attempts"][0][
            "error_class"
        ] == "capacity"
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_reload_reports_config_errors_and_results(
    fake: FakeUpstream, tmp_path: Path, sc: Scenario
) -> None:
    reply = await admin(sc, "/admin/reload", method="POST")  # settings from a dict, not a file
    assert reply.status == 400 and reply.body["error"]["code"] == "config_error"
    assert "nothing to reload" in reply.body["error"]["message"]

    path = tmp_path / "spillgate.yaml"
    config = admin_config(fake)
    path.write_text(yaml.safe_dump(config))
    app = App(load_settings(str(path), env={}), env={})
    await app.start()
    try:
        url = app.url
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        config["models"]["extra"] = {"routes": [{"accounts": ["oa-s"], "model": SECONDARY}]}
        path.write_text(yaml.safe_dump(config))
        async with sc.http.post(url + "/admin/reload", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["reloaded"] is True and "extra" in body["result"]["models"]
        async with sc.http.get(url + "/admin/health", headers=headers) as resp:
            assert "extra" in [m["name"] for m in (await resp.json())["models"]]
        path.write_text("models: [oops")
        async with sc.http.post(url + "/admin/reload", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["error"]["code"] == "config_error"
        path.write_text(yaml.safe_dump({**config, "admin_token": "rotated-token"}))
        async with sc.http.post(url + "/admin/reload", headers=headers) as resp:
            assert resp.status == 200
        async with sc.http.get(url + "/admin/health", headers=headers) as resp:
            assert resp.status == 401  # the new token is in force at once
        async with sc.http.get(
            url + "/admin/health", headers={"authorization": "Bearer rotated-token"}
        ) as resp:
            assert resp.status == 200
    finally:
        await app.stop(grace=1)


async def test_one_request_by_its_id(fake: FakeUpstream, tmp_path: Path) -> None:
    config = admin_config(fake)
    config["usage"] = {"dsn": f"sqlite:{tmp_path / 'usage.db'}"}
    sc = await start_scenario(fake, config)
    try:
        sc.fake.set(PRIMARY, Fault.capacity(times=1))
        failed_over = await sc.ask("chat")
        request_id = failed_over.header("x-spillgate-request-id")
        assert failed_over.status == 200 and request_id and request_id.startswith("sg-")
        sc.fake.set(PRIMARY, Fault.capacity())
        sc.fake.set(SECONDARY, Fault.capacity())
        refused = await sc.ask("chat", model="solo")
        assert refused.status == 503 and refused.header("x-spillgate-request-id") not in (None, request_id)
        assert sc.app.usage is not None
        await sc.app.usage.flush()

        reply = await admin(sc, f"/admin/requests/{request_id}")
        assert reply.status == 200, reply.body
        assert reply.body["request"]["route"] == "coder[1]" and reply.body["request"]["attempts"] == 2
        assert [(a["route"], a["ok"], a["error_class"]) for a in reply.body["attempts"]] == [
            ("coder[0]", False, "capacity"),
            ("coder[1]", True, None),
        ]
        missing = await admin(sc, "/admin/requests/sg-nope-1")
        assert missing.status == 404 and missing.body["error"]["code"] == "unknown_request"
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
