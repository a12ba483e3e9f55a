"""Headers both ways by allowlist, through a running gateway (issue 10, items 8 and 10)."""

from __future__ import annotations

import pytest

from spillgate.config.loader import ConfigError, parse_settings
from spillgate.fake import FakeUpstream, Fault

from .conftest import UPSTREAM_KEYS, Harness


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
