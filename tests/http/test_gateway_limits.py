"""The HTTP limits wired into the gateway: config keys, the early client-key check, errors in the
endpoint's protocol, and the refusal counters in /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from spillgate.config.loader import ConfigError, parse_settings
from spillgate.config.schema import Limits
from spillgate.fake import FakeUpstream, Fault
from tests.harness import CLIENT_KEY, Harness, base_config, start_harness


def _limits(**keys: Any) -> Limits:
    return parse_settings({"limits": keys}, env={}, source="test").limits


def test_stream_and_upstream_limits_parse_and_reach_their_users() -> None:
    limits = _limits(
        send_buffer=0,
        max_replay_text="64KiB",
        max_event_bytes="1MiB",
        max_upstream_header_bytes="16KiB",
        max_upstream_body_bytes="8MiB",
    )
    assert (limits.send_buffer, limits.max_replay_text, limits.max_event_bytes) == (0, 65536, 1 << 20)
    assert (limits.max_upstream_header_bytes, limits.max_upstream_body_bytes) == (16384, 8 << 20)
    default = Limits()
    assert (default.send_buffer, default.max_replay_text, default.max_event_bytes) == (
        128 * 1024,
        128 * 1024,
        4 << 20,
    )
    assert (default.max_upstream_header_bytes, default.max_upstream_body_bytes) == (64 * 1024, 64 << 20)


async def test_upstream_limits_reach_the_pools(fake: FakeUpstream) -> None:
    config = base_config(fake)
    config["limits"] = {"max_upstream_header_bytes": "2KiB", "max_upstream_body_bytes": "4KiB"}
    harness = await start_harness(fake, config)
    try:
        for client in harness.app.gateway.clients.values():
            assert (client.max_header_bytes, client.max_body_bytes) == (2048, 4096)
        # A non-streamed answer over the body limit is a failure, not a 4 KiB prefix relayed.
        fake.set("*", Fault(text="x" * 8000))
        reply = await harness.call("/v1/chat/completions", {"model": "coder", "messages": []})
        assert reply.status >= 500 and "x" * 100 not in reply.body.decode()
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


def test_limit_keys_parse_with_units_and_defaults() -> None:
    limits = _limits(
        max_header_bytes="16KiB",
        max_headers=50,
        header_timeout="2s",
        body_timeout="500ms",
        idle_timeout="2m",
        write_timeout=5,
        max_connections=100,
    )
    assert (limits.max_header_bytes, limits.max_headers, limits.max_connections) == (16384, 50, 100)
    assert (limits.header_timeout, limits.body_timeout, limits.idle_timeout, limits.write_timeout) == (
        2.0,
        0.5,
        120.0,
        5.0,
    )
    default = _limits()
    assert (default.max_header_bytes, default.max_headers, default.max_connections) == (65536, 100, 4096)
    assert (default.header_timeout, default.body_timeout, default.idle_timeout, default.write_timeout) == (
        10.0,
        60.0,
        60.0,
        30.0,
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_header_bytes", "12"),
        ("max_header_bytes", 100),
        ("max_headers", 0),
        ("max_headers", "many"),
        ("header_timeout", "0s"),
        ("body_timeout", "soon"),
        ("idle_timeout", -1),
        ("write_timeout", True),
        ("max_connections", 0),
        ("send_buffer", "1B"),
        ("max_replay_text", 0),
        ("max_event_bytes", "huge"),
        ("max_upstream_header_bytes", 10),
        ("max_upstream_body_bytes", -1),
    ],
)
def test_a_bad_limit_names_its_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"limits.{key}"):
        _limits(**{key: value})


@pytest.fixture
async def gw_short(fake: FakeUpstream) -> AsyncIterator[Harness]:
    config = base_config(fake)
    config["limits"] = {"header_timeout": "300ms", "max_header_bytes": "8KiB"}
    harness = await start_harness(fake, config)
    yield harness
    await harness.http.close()
    await harness.app.stop(grace=1)


async def _raw(harness: Harness, data: bytes, wait: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.app.server.port)
    writer.write(data)
    out = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                out += chunk
    finally:
        writer.close()
    return out


def _split(response: bytes) -> tuple[int, bytes, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, orjson.loads(body)


async def test_a_request_without_a_key_is_refused_before_its_body(gw_short: Harness) -> None:
    # 30 MB announced, nothing sent: the 401 comes at once, in the endpoint's protocol.
    head = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 30000000\r\n\r\n"
    status, _, body = _split(await _raw(gw_short, b"POST /v1/chat/completions HTTP/1.1\r\n" + head))
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert "missing API key" in body["error"]["message"]
    status, _, body = _split(await _raw(gw_short, b"POST /v1/messages HTTP/1.1\r\n" + head))
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    wrong = b"POST /v1/responses HTTP/1.1\r\nAuthorization: Bearer sk-sg-wrong\r\n" + head
    status, _, body = _split(await _raw(gw_short, wrong))
    assert status == 401 and "invalid API key" in body["error"]["message"]
    assert gw_short.app.server.refusals["early_reject"] == 3
    assert not gw_short.fake.attempts


async def test_100_continue_only_for_a_valid_key(gw_short: Harness) -> None:
    body = orjson.dumps({"model": "coder", "messages": [{"role": "user", "content": "hi"}]})
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\nExpect: 100-continue\r\n" % len(body)
    refused = await _raw(gw_short, head + b"\r\n")
    assert refused.startswith(b"HTTP/1.1 401") and b"100 Continue" not in refused
    reader, writer = await asyncio.open_connection("127.0.0.1", gw_short.app.server.port)
    writer.write(head + b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_a_valid_key_is_served_as_before(gw_short: Harness) -> None:
    reply = await gw_short.call("/v1/chat/completions", {"model": "coder", "messages": []})
    assert reply.status == 200
    missing = await gw_short.call("/v1/chat/completions", {"model": "coder", "messages": []}, key=None)
    assert missing.status == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    # Paths without a body keep their own (late) checks.
    models = await gw_short.call("/v1/models", method="GET", key=None)
    assert models.status == 401


async def test_http_layer_errors_are_in_the_endpoint_protocol(gw_short: Harness) -> None:
    big = b"X-Big: " + b"v" * 10_000 + b"\r\n"
    status, head, body = _split(
        await _raw(gw_short, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    )
    assert status == 431 and b"connection: close" in head
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, _, body = _split(await _raw(gw_short, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"))
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "did not arrive within 0.3 s" in body["error"]["message"]


async def test_refusals_are_counted_in_metrics(gw_short: Harness) -> None:
    await _raw(gw_short, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
    await _raw(gw_short, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    metrics = await gw_short.call("/metrics", method="GET", key=None)
    text = metrics.body.decode()
    assert "# TYPE spillgate_http_refusals_total counter" in text
    assert 'spillgate_http_refusals_total{reason="early_reject"} 1' in text
    assert 'spillgate_http_refusals_total{reason="connect_refused"} 1' in text
    assert 'spillgate_http_refusals_total{reason="write_timeout"} 0' in text


async def test_limits_from_the_config_reach_the_server(fake: FakeUpstream) -> None:
    config = base_config(fake)
    config["limits"] = {"idle_timeout": "7s", "write_timeout": "3s", "max_connections": 12, "max_headers": 40}
    harness = await start_harness(fake, config)
    try:
        server = harness.app.server
        assert (server.idle_timeout, server.write_timeout, server.max_connections, server.max_headers) == (
            7.0,
            3.0,
            12,
            40,
        )
        assert server.early_check is not None
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_an_open_gateway_has_no_early_refusal(fake: FakeUpstream) -> None:
    config = base_config(fake)
    del config["client_keys"]
    harness = await start_harness(fake, config)
    try:
        reply = await harness.call("/v1/chat/completions", {"model": "coder", "messages": []}, key=None)
        assert reply.status == 200 and harness.app.server.refusals["early_reject"] == 0
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
