"""The pooled upstream client: reuse, typed failures per phase, flow of a streamed body."""

from __future__ import annotations

import asyncio
import socket

import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.http.client import FailureKind, HttpClient, UpstreamFailure
from tests.eventually import eventually

BODY = b'{"model":"m","messages":[],"stream":true}'
HEADERS = [("content-type", "application/json")]


async def post(client: HttpClient, body: bytes = BODY, first_byte: float = 2.0):  # type: ignore[no-untyped-def]
    return await client.request(
        "POST", "/chat/completions", HEADERS, body, connect_timeout=1.0, first_byte_timeout=first_byte
    )


async def test_reuses_connections_and_streams(fake: FakeUpstream) -> None:
    client = HttpClient(fake.openai_base_url, max_connections=4)
    for _ in range(3):
        resp = await post(client)
        assert resp.status == 200 and resp.header("content-type") == "text/event-stream"
        chunks = []
        while (chunk := await resp.next_chunk(2.0)) is not None:
            chunks.append(chunk)
        assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    assert client.idle_connections == 1
    assert all(a.path == "/v1/chat/completions" for a in fake.attempts)
    await client.close()


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.reset(), FailureKind.RESET),
        (Fault.hang(), FailureKind.FIRST_BYTE_TIMEOUT),
    ],
)
async def test_failures_before_headers(fake: FakeUpstream, fault: Fault, kind: FailureKind) -> None:
    fake.set("m", fault)
    client = HttpClient(fake.openai_base_url)
    with pytest.raises(UpstreamFailure) as info:
        await post(client, first_byte=0.3)
    assert info.value.kind is kind
    assert client.idle_connections == 0 and not client._active
    await client.close()


@pytest.mark.parametrize(
    ("delay", "first_byte", "kind"),
    [
        (0.0, 2.0, FailureKind.RESET),  # closed at once: a reset, worth one retry
        (0.3, 2.0, FailureKind.RESET),  # shorter than the silence threshold (1 s: half of first_byte)
        (1.2, 2.0, FailureKind.SILENT_CLOSE),  # silent, then closed: silence, not a reset
    ],
    ids=["at-once", "quick", "after-silence"],
)
async def test_a_close_after_silence_is_reported_as_silence(
    fake: FakeUpstream, delay: float, first_byte: float, kind: FailureKind
) -> None:
    fake.set("m", Fault(reset_before_headers=True, headers_delay=delay))
    client = HttpClient(fake.openai_base_url)
    with pytest.raises(UpstreamFailure) as info:
        await post(client, first_byte=first_byte)
    assert info.value.kind is kind
    if kind is FailureKind.SILENT_CLOSE:
        assert "of silence, before any response byte" in info.value.message
    assert not client._active
    await client.close()


async def test_idle_timeout_and_cut_mid_body(fake: FakeUpstream) -> None:
    client = HttpClient(fake.openai_base_url)
    fake.set("m", Fault(stall_after_events=2))
    resp = await post(client)
    assert await resp.first_chunk(1.0)
    with pytest.raises(UpstreamFailure) as info:
        while await resp.next_chunk(0.3) is not None:
            pass
    assert info.value.kind is FailureKind.IDLE_TIMEOUT
    resp.close()
    fake.set("m", Fault(cut_after_events=2))
    resp = await post(client)
    with pytest.raises(UpstreamFailure) as info:
        while await resp.next_chunk(1.0) is not None:
            pass
    assert info.value.kind is FailureKind.RESET and "after the headers" in info.value.message
    resp.close()
    assert not client._active
    await client.close()


async def test_total_timeout_for_a_whole_body(fake: FakeUpstream) -> None:
    fake.set("m", Fault(event_delay=0.2))
    client = HttpClient(fake.openai_base_url)
    resp = await post(client)
    with pytest.raises(UpstreamFailure) as info:
        await resp.read(0.3)
    assert info.value.kind is FailureKind.TOTAL_TIMEOUT
    await client.close()


async def test_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamFailure) as info:
        await post(client)
    assert info.value.kind is FailureKind.CONNECT and "could not connect" in info.value.message
    await client.close()


async def test_a_full_pool_is_a_typed_failure_within_the_connect_timeout(fake: FakeUpstream) -> None:
    fake.set("m", Fault.hang())
    client = HttpClient(fake.openai_base_url, max_connections=1)
    holder = asyncio.ensure_future(post(client, body=b'{"model":"m"}', first_byte=30))
    # The only connection is taken by a request that never ends.
    await eventually(lambda: fake.in_flight == 1, what="the holder to reach the upstream")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamFailure) as info:
        await client.request(
            "POST", "/chat/completions", HEADERS, BODY, connect_timeout=0.3, first_byte_timeout=5
        )
    assert info.value.kind is FailureKind.POOL_FULL and "all 1 connections" in info.value.message
    # 0.299: uvloop's clock counts whole milliseconds, and 0.3 s as the difference of two such
    # floats can come out a hair under 0.3.
    assert 0.299 <= loop.time() - started < 1.0 and client.pool_full == 1
    holder.cancel()
    await client.close()


async def test_pool_limit_waits_for_a_free_connection(fake: FakeUpstream) -> None:
    fake.set("m", Fault(headers_delay=0.2))
    client = HttpClient(fake.openai_base_url, max_connections=2)

    async def one() -> int:
        resp = await post(client, body=b'{"model":"m"}')
        await resp.read(2)
        return resp.status

    started = asyncio.get_running_loop().time()
    assert await asyncio.gather(*(one() for _ in range(4))) == [200] * 4
    assert asyncio.get_running_loop().time() - started >= 0.39  # two waves of two
    assert fake.in_flight == 0
    await client.close()


async def test_cancel_closes_the_connection(fake: FakeUpstream) -> None:
    fake.set("m", Fault.hang())
    client = HttpClient(fake.openai_base_url)
    task = asyncio.create_task(post(client, first_byte=5))
    await eventually(lambda: fake.in_flight == 1, what="the request to reach the upstream")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not client._active and client.idle_connections == 0
    await client.close()


async def test_upstream_headers_and_bodies_are_bounded(fake: FakeUpstream) -> None:
    """Issue 10, item 3 / 11: an upstream cannot make the gateway hold unbounded headers or a whole
    unbounded body."""
    client = HttpClient(fake.openai_base_url)
    fake.set("m", Fault(headers=(("x-huge", "a" * 70_000),)))
    with pytest.raises(UpstreamFailure) as info:
        await post(client, body=b'{"model":"m"}')
    assert info.value.kind is FailureKind.PROTOCOL and "headers over" in info.value.message
    fake.set("m", Fault(text="y" * 5000))
    resp = await post(client, body=b'{"model":"m"}')
    with pytest.raises(UpstreamFailure) as info:
        await resp.read(2.0, limit=1000)
    assert info.value.kind is FailureKind.PROTOCOL and "body over 1000 bytes" in info.value.message
    assert not client._active
    await client.close()
