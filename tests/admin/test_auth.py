"""Who may use the admin API: the admin token's bearer, else loopback peers only."""

from __future__ import annotations

import pytest

from spillgate.admin.auth import (
    MISSING_TOKEN,
    NOT_LOOPBACK,
    WRONG_TOKEN,
    AdminAuth,
    Denied,
    admin_decision,
    bearer_token,
    digest,
    is_loopback,
)
from spillgate.admin.errors import AdminError
from spillgate.config.schema import Secret

TOKEN = "admin-secret-token"

DECISIONS: list[tuple[str, bytes | None, str | None, str, Denied | None]] = [
    ("token, right one, remote peer", digest(TOKEN), TOKEN, "10.0.0.5:41000", None),
    ("token, right one, loopback", digest(TOKEN), TOKEN, "127.0.0.1:41000", None),
    ("token, wrong one", digest(TOKEN), "guess", "127.0.0.1:41000", WRONG_TOKEN),
    ("token, none presented, loopback too", digest(TOKEN), None, "127.0.0.1:41000", MISSING_TOKEN),
    ("token, prefix of it", digest(TOKEN), TOKEN[:-1], "10.0.0.5:41000", WRONG_TOKEN),
    ("no token, loopback v4", None, None, "127.0.0.1:5000", None),
    ("no token, loopback 127/8", None, None, "127.3.2.1:5000", None),
    ("no token, loopback v6", None, None, "::1:5000", None),
    ("no token, loopback v6 bracketed", None, None, "[::1]:5000", None),
    ("no token, v4-mapped loopback", None, None, "::ffff:127.0.0.1:5000", None),
    ("no token, a presented token does not help", None, "anything", "10.0.0.5:41000", NOT_LOOPBACK),
    ("no token, remote v4", None, None, "192.168.1.20:5000", NOT_LOOPBACK),
    ("no token, remote v6", None, None, "2001:db8::1:5000", NOT_LOOPBACK),
    ("no token, unknown peer", None, None, "", NOT_LOOPBACK),
    ("no token, garbage peer", None, None, "localhost:80", NOT_LOOPBACK),
]


@pytest.mark.parametrize(
    ("name", "configured", "presented", "remote", "expected"), DECISIONS, ids=[d[0] for d in DECISIONS]
)
def test_decision(
    name: str, configured: bytes | None, presented: str | None, remote: str, expected: Denied | None
) -> None:
    assert admin_decision(configured, presented, remote) == expected


def test_denials_say_what_to_do_and_never_echo_a_token() -> None:
    assert NOT_LOOPBACK.status == 403 and "set admin_token" in NOT_LOOPBACK.message
    assert MISSING_TOKEN.status == 401 and "Authorization: Bearer" in MISSING_TOKEN.message
    for denied in (NOT_LOOPBACK, MISSING_TOKEN, WRONG_TOKEN):
        assert TOKEN not in denied.message


BEARERS = [
    ({"authorization": "Bearer abc"}, "abc"),
    ({"authorization": "bearer   abc  "}, "abc"),
    ({"authorization": "Basic abc"}, None),
    ({"authorization": "Bearer "}, None),
    ({"x-api-key": "abc"}, None),
    ({}, None),
]


@pytest.mark.parametrize(("headers", "expected"), BEARERS)
def test_bearer_token(headers: dict[str, str], expected: str | None) -> None:
    assert bearer_token(headers) == expected


@pytest.mark.parametrize(
    ("remote", "expected"), [("127.0.0.1:1", True), ("::1:1", True), ("10.1.1.1:1", False), ("::2:1", False)]
)
def test_is_loopback(remote: str, expected: bool) -> None:
    assert is_loopback(remote) is expected


def test_admin_auth_raises_admin_errors() -> None:
    auth = AdminAuth(Secret(TOKEN))
    assert auth.token_configured
    auth.check({"authorization": f"Bearer {TOKEN}"}, "10.0.0.1:1")
    with pytest.raises(AdminError) as info:
        auth.check({"authorization": "Bearer nope"}, "127.0.0.1:1")
    assert (
        info.value.status == 401
        and ("www-authenticate", 'Bearer realm="spillgate-admin"') in info.value.headers
    )
    open_auth = AdminAuth(None)
    assert not open_auth.token_configured
    open_auth.check({}, "127.0.0.1:1")
    with pytest.raises(AdminError) as info:
        open_auth.check({}, "10.0.0.1:1")
    assert info.value.status == 403 and info.value.code == "admin_loopback_only"
    assert not AdminAuth(Secret("")).token_configured  # an empty token is no token
