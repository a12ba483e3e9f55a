"""Safe from browsers: a web page on the same machine cannot act on the gateway (issue 10, item 9)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from spillgate.fake import FakeUpstream
from spillgate.http.browser import ADMIN_HEADER, browser_denial, loopback_host, same_origin

from ..harness import scenario_config, start_scenario


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:8080", True),
        ("localhost", True),
        ("[::1]:8080", True),
        ("127.1.2.3", True),
        ("evil.example:8080", False),
        ("127.0.0.1.evil.example", False),
        ("10.0.0.5:8080", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://localhost", "localhost:80", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8080", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
    ],
)
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


JSON = {"content-type": "application/json", ADMIN_HEADER: "1"}
DENIALS = [
    ({"host": "127.0.0.1:1"}, True, False, None),
    ({"host": "evil.example"}, True, False, "host_not_allowed"),  # DNS rebinding
    ({"host": "evil.example"}, False, False, None),  # a token guards it: any host name
    ({"host": "127.0.0.1:1", "origin": "http://evil.example"}, False, False, "cross_origin"),
    ({"host": "127.0.0.1:1", "origin": "http://127.0.0.1:1", **JSON}, True, True, None),
    ({"host": "127.0.0.1:1", "content-type": "text/plain"}, True, True, "json_required"),  # a form
    ({"host": "127.0.0.1:1", "content-type": "application/json"}, True, True, "json_required"),
    ({"host": "127.0.0.1:1", "content-type": "text/plain"}, False, True, None),  # the token suffices
]


@pytest.mark.parametrize(("headers", "loopback_only", "changing", "code"), DENIALS)
def test_browser_denials(
    headers: dict[str, str], loopback_only: bool, changing: bool, code: str | None
) -> None:
    denied = browser_denial(headers, loopback_only=loopback_only, state_changing=changing)
    assert (denied.code if denied else None) == code


async def test_a_web_page_cannot_steer_an_open_gateway(fake: FakeUpstream) -> None:
    """The README's default setup (no admin token, no client keys), attacked as a page in a
    browser on the same machine would: cross-origin fetches and forms, and DNS rebinding."""
    sc = await start_scenario(fake, scenario_config(fake))
    url = sc.app.url
    evil = {"origin": "http://evil.example"}
    rebound = {"host": "evil.example:8080"}
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = orjson.dumps({"model": "coder", "messages": [{"role": "user", "content": "hi"}]})
    try:
        async with aiohttp.ClientSession() as http:

            async def status(method: str, path: str, headers: dict[str, str], data: bytes = b"") -> int:
                async with http.request(method, url + path, headers=headers, data=data or None) as resp:
                    await resp.read()
                    return resp.status

            assert await status("POST", "/admin/accounts/oa-p/drain", evil) == 403
            assert await status("POST", "/admin/accounts/oa-p/drain", form, b"x=1") == 415
            assert await status("POST", "/admin/reload", {"content-type": "text/plain"}, b"{}") == 415
            assert await status("GET", "/admin/health", rebound) == 403
            assert await status("GET", "/metrics", rebound) == 403
            assert await status("GET", "/metrics", evil) == 403
            assert (
                await status(
                    "POST", "/v1/chat/completions", {**evil, "content-type": "application/json"}, body
                )
                == 403
            )
            assert (
                await status(
                    "POST", "/v1/chat/completions", {**rebound, "content-type": "application/json"}, body
                )
                == 403
            )
            assert await status("GET", "/v1/models", rebound) == 403
            assert not sc.app.gateway.health.snapshot()  # nothing was drained
            assert not fake.attempts  # no token was spent
            # The gateway's own page and tools still work.
            own = {"origin": url, **JSON}
            assert await status("POST", "/admin/accounts/oa-p/drain", own) == 200
            assert await status("GET", "/admin/health", {}) == 200
            assert await status("GET", "/metrics", {}) == 200
            assert (
                await status("POST", "/v1/chat/completions", {"content-type": "application/json"}, body)
                == 200
            )
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
