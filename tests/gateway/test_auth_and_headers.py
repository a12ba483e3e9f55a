"""SSE framing, client-key hashing, and which headers cross the gateway."""

from __future__ import annotations

import hashlib

import pytest

from spillgate.config.schema import Account, ClientKey, Provider, Secret
from spillgate.gateway.auth import ClientAuth, hash_key, presented_key
from spillgate.gateway.forward import client_headers, upstream_headers
from spillgate.gateway.redact import Redactor
from spillgate.protocols.errors import GatewayError
from spillgate.protocols.sse import SseSplitter


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_splitter_preserves_bytes_and_yields_whole_events(size: int) -> None:
    stream = b'event: a\ndata: {"x":1}\n\n: comment\n\ndata: [DONE]\n\n'
    splitter = SseSplitter()
    out = []
    for i in range(0, len(stream), size):
        got = splitter.feed(stream[i : i + size])
        if got:
            assert got.endswith(b"\n\n")
            out.append(got)
    assert b"".join(out) == stream and splitter.tail() == b""


def test_splitter_crlf_and_tail() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: 1\r\n\r\ndata: 2\r\n") == b"data: 1\r\n\r\n"
    assert splitter.tail() == b"data: 2\r\n"


def test_keys_hash_and_auth() -> None:
    assert hash_key("test") == "sha256:" + hashlib.sha256(b"test").hexdigest()
    auth = ClientAuth((ClientKey("team", hashlib.sha256(b"good").hexdigest()),))
    found = auth.authenticate({"authorization": "Bearer good"})
    assert found is not None and found.name == "team"
    assert auth.authenticate({"x-api-key": "good"}) is not None
    for headers, fragment in [
        ({}, "missing API key"),
        ({"authorization": "Bearer bad"}, "invalid API key"),
        ({"authorization": "Basic good"}, "missing API key"),
    ]:
        with pytest.raises(GatewayError) as info:
            auth.authenticate(headers)
        assert info.value.status == 401 and fragment in info.value.message
    assert ClientAuth(()).authenticate({}) is None
    assert presented_key({"authorization": "bearer  tok "}) == "tok"


def test_upstream_headers_swap_credentials() -> None:
    client = {
        "authorization": "Bearer client-key",
        "x-api-key": "client-key",
        "host": "gw",
        "content-length": "5",
        "accept-encoding": "gzip",
        "session-id": "s1",
        "anthropic-beta": "b1",
        "user-agent": "codex",
    }
    openai = Provider("o", "openai", "https://x/v1", headers=(("OpenAI-Organization", "org-1"),))
    account = Account("a1", "o", Secret("sk-account"))
    out = dict(upstream_headers(client, openai, account))
    assert out["authorization"] == "Bearer sk-account"
    assert "x-api-key" not in out and "host" not in out and "content-length" not in out
    assert out["accept-encoding"] == "identity"
    assert (
        out["session-id"] == "s1" and out["user-agent"] == "codex" and out["openai-organization"] == "org-1"
    )
    anthropic = Provider("c", "anthropic", "https://y", api_key=Secret("sk-ant"))
    out = dict(upstream_headers(client, anthropic, None))
    assert out["x-api-key"] == "sk-ant" and "authorization" not in out
    assert out["anthropic-version"] == "2023-06-01" and out["anthropic-beta"] == "b1"
    local = Provider("l", "openai", "http://127.0.0.1:1/v1")
    assert "authorization" not in dict(upstream_headers(client, local, None))


def test_client_headers_relay_only_the_allowlist_with_credentials_masked() -> None:
    kept = client_headers(
        [
            ("content-type", "a"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "x"),
            ("server", "nginx/1.2"),
            ("openai-organization", "org-secret-name"),
            ("x-echo-auth", "Bearer sk-account-0123456789"),  # the report's leak
            ("retry-after", "3"),
            ("x-ratelimit-remaining-requests", "0"),
            ("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:00Z"),
            ("x-codex-primary-used-percent", "42"),
            ("x-request-id", "r sk-account-0123456789"),
        ],
        Redactor(["sk-account-0123456789"]).text,
    )
    assert kept == [
        ("content-type", "a"),
        ("retry-after", "3"),
        ("x-ratelimit-remaining-requests", "0"),
        ("anthropic-ratelimit-tokens-reset", "2026-01-01T00:00:00Z"),
        ("x-codex-primary-used-percent", "42"),
        ("x-request-id", "r [redacted]"),
    ]


def test_only_documented_client_headers_go_upstream() -> None:
    client = {
        "content-type": "application/json",
        "openai-organization": "org-of-the-client",  # would change which org the key bills / 401s
        "openai-project": "proj-x",
        "chatgpt-account-id": "acct-x",
        "cookie": "a=b",
        "x-forwarded-for": "10.0.0.1",
        "x-stainless-retry-count": "1",
        "x-team-trace": "t-1",
        "originator": "codex_exec",
    }
    provider = Provider("o", "openai", "https://x/v1", api_key=Secret("sk-org"))
    out = dict(upstream_headers(client, provider, None))
    assert set(out) == {
        "content-type",
        "x-stainless-retry-count",
        "originator",
        "accept-encoding",
        "authorization",
    }
    extended = Provider("o", "openai", "https://x/v1", forward_headers=frozenset({"x-team-trace"}))
    assert dict(upstream_headers(client, extended, None))["x-team-trace"] == "t-1"
