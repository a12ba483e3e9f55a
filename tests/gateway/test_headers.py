"""Headers both ways by allowlist, through a running gateway (issue 10, items 8 and 10)."""

from __future__ import annotations

import pytest

from spillgate.config.loader import ConfigError, parse_settings
from spillgate.fake import FakeUpstream, Fault

from ..harness import UPSTREAM_KEYS, Harness


async def test_an_upstream_echoing_the_key_in_a_header_does_not_reach_the_client(gw: Harness) -> None:
    key = UPSTREAM_KEYS["oa-1"]
    headers = (("x-echo-auth", f"Bearer {key}"), ("x-request-id", f"req {key}"), ("set-cookie", "s=1"))
    gw.fake.set("up-coder", Fault(status=400, error_message="bad thing", headers=headers))
    reply = await gw.call("/v1/chat/completions", {"model": "coder", "messages": []})
    assert reply.status == 400
    assert "x-echo-auth" not in reply.headers and "set-cookie" not in reply.headers
    assert reply.headers["x-request-id"] == "req [redacted]"
    assert key not in str(reply.headers) and key.encode() not in reply.body


async def test_a_client_cannot_choose_the_upstream_org_or_send_cookies(gw: Harness) -> None:
    reply = await gw.call(
        "/v1/chat/completions",
        {"model": "coder", "messages": []},
        headers={"openai-organization": "org-attacker", "cookie": "c=1", "session-id": "s-1"},
    )
    assert reply.status == 200
    sent = gw.fake.attempts[-1].headers
    assert "openai-organization" not in sent and "cookie" not in sent
    assert sent["session-id"] == "s-1"


def test_forward_headers_cannot_name_a_credential(fake: FakeUpstream) -> None:
    config = {
        "providers": {
            "oa": {
                "protocol": "openai",
                "base_url": fake.openai_base_url,
                "forward_headers": ["Authorization"],
            }
        }
    }
    with pytest.raises(
        ConfigError, match=r"providers\.oa\.forward_headers\[0\]: 'authorization' is never forwarded"
    ):
        parse_settings(config, env={}, source="t")


async def test_one_clients_401_does_not_disable_a_shared_account(fake: FakeUpstream) -> None:
    """Issue 10, item 10: a refusal on one client's request could be that client's doing; the
    shared account is disabled only when requests of two client keys were refused, and the
    dashboard's reason names the requests."""
    from spillgate.gateway.auth import hash_key

    from ..harness import start_harness

    config = {
        "listen": "127.0.0.1:0",
        "client_keys": [
            {"name": "team-a", "hash": hash_key("sk-a-123456")},
            {"name": "team-b", "hash": hash_key("sk-b-123456")},
        ],
        "providers": {"oa": {"protocol": "openai", "base_url": fake.openai_base_url}},
        "accounts": [{"id": "shared", "provider": "oa", "api_key": "sk-up-shared-0123"}],
        "models": {"coder": {"routes": [{"accounts": ["shared"], "model": "up-coder"}]}},
    }
    harness = await start_harness(fake, config)
    try:
        body = {"model": "coder", "messages": []}
        fake.set("up-coder", Fault(status=401, error_message="invalid api key", times=1))
        first = await harness.call("/v1/chat/completions", body, key="sk-a-123456")
        assert first.status == 503  # that request failed...
        assert not harness.app.gateway.health.snapshot()  # ...but nothing was disabled
        assert (await harness.call("/v1/chat/completions", body, key="sk-b-123456")).status == 200
        # Refused for two client keys: the credential itself is bad.
        fake.set("up-coder", Fault(status=401, error_message="invalid api key"))
        await harness.call("/v1/chat/completions", body, key="sk-a-123456")
        await harness.call("/v1/chat/completions", body, key="sk-b-123456")
        (scope,) = harness.app.gateway.health.snapshot()
        assert scope.key == "account:shared" and scope.state == "disabled"
        assert "refused for client keys team-a, team-b (requests sg-" in scope.reason
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
