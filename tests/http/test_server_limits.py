"""What one client can cost the HTTP server: each attack on raw loopback sockets, and its bound.

Limits are configured short so that every test ends within a couple of seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from spillgate.config.schema import Limits
from spillgate.http.server import REFUSAL_REASONS, EarlyReply, HttpServer, Request, ResponseWriter
from tests.eventually import eventually

events: list[str] = []
release = asyncio.Event()
written: list[int] = [0]
"""Bytes /forever handed to the writer before it was cancelled."""


async def handler(request: Request, writer: ResponseWriter) -> None:
    if request.path == "/forever":
        writer.start(200, [("content-type", "text/event-stream")])
        chunk = b"x" * 65536
        try:
            while True:
                await writer.write(chunk)
                written[0] += len(chunk)
        except asyncio.CancelledError:
            events.append("forever cancelled")
            raise
    elif request.path == "/big":
        await writer.send(200, [("content-type", "text/plain")], b"y" * 1_000_000)
    elif request.path == "/hold":
        events.append("hold started")
        await release.wait()
        await writer.send(200, [("content-type", "text/plain")], b"held")
    elif request.path == "/headers":
        body = b"%d %d" % (len(request.headers.get("x-a", "").split(", ")), len(request.body))
        await writer.send(200, [("content-type", "text/plain")], body)
    else:
        events.append(f"{request.method} {request.path} {len(request.body)}")
        await writer.send(200, [("content-type", "text/plain")], b"%d" % len(request.body))


Start = Callable[..., Awaitable[HttpServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    global release
    events.clear()
    written[0] = 0
    release = asyncio.Event()  # bound to this test's loop
    servers: list[HttpServer] = []

    async def make(**limits: Any) -> HttpServer:
        srv = HttpServer(handler, **limits)
        await srv.start("127.0.0.1", 0)
        servers.append(srv)
        return srv

    yield make
    release.set()
    for srv in servers:
        await srv.close(grace=0.2)


async def connect(
    server: HttpServer, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        return await asyncio.open_connection("127.0.0.1", server.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await asyncio.open_connection(sock=sock)


async def read_response(reader: asyncio.StreamReader, wait: float = 3.0) -> tuple[int, bytes, bytes]:
    """(status, header block, body) of one response with a Content-Length."""
    async with asyncio.timeout(wait):
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
    return status, head, body


async def read_to_eof(reader: asyncio.StreamReader, wait: float = 3.0) -> bytes:
    data = b""
    async with asyncio.timeout(wait):
        while chunk := await reader.read(65536):
            data += chunk
    return data


def test_server_defaults_are_the_config_defaults() -> None:
    srv, limits = HttpServer(handler), Limits()
    shared = [f.name for f in dataclasses.fields(Limits) if hasattr(srv, f.name)]
    assert len(shared) >= 9, shared  # max_body_bytes, the header, timeout, connection, buffer limits
    for name in shared:
        assert getattr(srv, name) == getattr(limits, name), name
    assert set(srv.refusals) == set(REFUSAL_REASONS) and not any(srv.refusals.values())


# -- slow and idle clients ------------------------------------------------------------------


async def test_slowloris_gets_408_within_the_header_timeout(start: Start) -> None:
    server = await start(header_timeout=0.6)
    reader, writer = await connect(server)
    request = b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"z" * 100

    async def trickle() -> None:
        for byte in request:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)  # the slow client under test, not synchronisation

    sender = asyncio.create_task(trickle())
    started = time.monotonic()
    status, _, body = await read_response(reader)
    elapsed = time.monotonic() - started
    sender.cancel()
    assert status == 408 and b"did not arrive within 0.6 s" in body
    assert 0.55 <= elapsed < 1.2
    assert await read_to_eof(reader) == b""  # and the connection is closed
    assert server.refusals["header_timeout"] == 1 and not events
    writer.close()


async def test_many_slowloris_sockets_are_all_dropped(start: Start) -> None:
    server = await start(header_timeout=0.5)
    clients = [await connect(server) for _ in range(200)]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"G")
        try:
            for byte in b"ET / HTTP/1.1\r\nHost: x\r\n":
                await asyncio.sleep(0.2)  # the slow clients under test, not synchronisation
                writer.write(bytes([byte]))
        except (ConnectionError, RuntimeError):
            pass
        return b""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        data = await read_to_eof(reader)
        writer.close()
        return data

    senders = [asyncio.create_task(slow(r, w)) for r, w in clients]
    started = time.monotonic()
    answers = await asyncio.gather(*(answer(r, w) for r, w in clients))
    assert time.monotonic() - started < 2.0
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
    for task in senders:
        task.cancel()
    await eventually(lambda: not server.connections)
    assert server.refusals["header_timeout"] == 200


async def test_a_mass_expiry_is_done_in_batches_between_other_callbacks(start: Start) -> None:
    """Hundreds of connections due together are expired a batch per loop iteration, so the
    requests being served run in between instead of waiting for all of them."""
    server = await start(idle_timeout=30)
    clients = [await connect(server) for _ in range(100)]
    await eventually(lambda: len(server.connections) == 100)
    now = server.loop.time() + 60  # every idle deadline has passed by then
    due = list(server.connections)
    server._expire(due, now)
    assert server.refusals["idle_timeout"] == 16  # one batch now, the rest on later iterations
    await asyncio.sleep(0)  # one loop iteration (what is under test): the next batch runs
    assert 16 < server.refusals["idle_timeout"] < 100
    await eventually(lambda: server.refusals["idle_timeout"] == 100)
    for _reader, writer in clients:
        writer.close()


async def test_idle_keep_alive_and_silent_connections_are_closed(start: Start) -> None:
    server = await start(idle_timeout=0.4)
    reader, writer = await connect(server)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    answered = time.monotonic()
    assert await read_to_eof(reader) == b""
    assert 0.35 <= time.monotonic() - answered < 1.0
    # A connection that never sends anything is closed the same way.
    silent = [await connect(server) for _ in range(300)]
    started = time.monotonic()
    assert await asyncio.gather(*(read_to_eof(r) for r, _ in silent)) == [b""] * 300
    assert time.monotonic() - started < 1.0
    await eventually(lambda: not server.connections)
    assert server.refusals["idle_timeout"] == 301
    writer.close()
    for _, w in silent:
        w.close()


async def test_a_slow_body_gets_408_within_the_body_timeout(start: Start) -> None:
    server = await start(body_timeout=0.4, max_body_bytes=10_000)
    reader, writer = await connect(server)
    writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    started = time.monotonic()
    status, _, body = await read_response(reader)
    assert status == 408 and b"request body did not arrive within 0.4 s" in body
    assert 0.35 <= time.monotonic() - started < 1.0
    assert await read_to_eof(reader) == b""
    assert server.refusals["body_timeout"] == 1 and not events
    writer.close()


async def test_a_long_response_is_not_cut_by_the_read_timeouts(start: Start) -> None:
    # The handler takes longer than every read timeout: the client is waiting, not idle.
    server = await start(header_timeout=0.2, body_timeout=0.2, idle_timeout=0.2)
    reader, writer = await connect(server)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: events == ["hold started"])
    # Asserts that nothing happens: a bounded wait, well past every read timeout (and sweep).
    await asyncio.sleep(0.5)
    release.set()
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"held")
    assert not any(server.refusals.values())
    writer.close()


# -- clients that do not read ------------------------------------------------------------------


async def test_a_client_that_never_reads_a_stream_is_dropped_and_its_handler_cancelled(
    start: Start,
) -> None:
    server = await start(write_timeout=0.3)
    _reader, writer = await connect(server, rcvbuf=4096)
    writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    await eventually(lambda: events == ["forever cancelled"], timeout=5)
    assert time.monotonic() - started < 3.0
    await eventually(lambda: not server.connections)
    assert server.refusals["write_timeout"] == 1
    writer.close()


@pytest.mark.parametrize("send_buffer", [64 * 1024, 0])
async def test_the_send_buffer_bounds_what_a_client_that_never_reads_absorbs(
    start: Start, send_buffer: int
) -> None:
    """With the kernel's autotuning (0) a loopback client that reads nothing absorbs megabytes
    before the write stalls (at an agent's token rate, minutes before the write timeout even
    starts); a fixed send buffer stalls it after a few hundred KiB."""
    server = await start(write_timeout=0.3, send_buffer=send_buffer)
    _reader, writer = await connect(server)  # the client's default receive buffer
    writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: events == ["forever cancelled"], timeout=5)
    if send_buffer:
        assert written[0] < 1024 * 1024, written[0]
    else:
        assert written[0] > 2 * 1024 * 1024, written[0]
    writer.close()


async def test_pipelined_requests_never_read_hold_one_response_and_are_dropped(start: Start) -> None:
    server = await start(write_timeout=0.3)
    _reader, writer = await connect(server, rcvbuf=4096)
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
    started = time.monotonic()
    await eventually(lambda: server.connections, what="the connection to be accepted")

    def dropped() -> bool:
        for conn in server.connections:
            assert len(conn._queue) <= 16  # what one read can hold, no more
        return not server.connections

    await eventually(dropped, timeout=3.0, what="the connection to be dropped")
    assert time.monotonic() - started < 3.0
    assert server.refusals["write_timeout"] == 1
    writer.close()


# -- pipelining --------------------------------------------------------------------------------


async def test_reading_stops_once_one_pipelined_request_is_queued(start: Start) -> None:
    server = await start(max_body_bytes=1_000_000)
    reader, writer = await connect(server)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: events == ["hold started"])
    body = b"b" * 900_000
    post = b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def send_all() -> None:
        for _ in range(20):  # 18 MB the server must not buffer
            writer.write(post)
            await writer.drain()

    sender = asyncio.create_task(send_all())
    conn = next(iter(server.connections))
    # Until reading has stopped and the client's writes back up (TCP holds it back).
    await eventually(
        lambda: conn._paused and writer.transport.get_write_buffer_size() > 0,
        what="the server to stop reading and the client's writes to back up",
    )
    assert len(conn._queue) == 1 and conn._paused
    buffered = sum(len(r.body) for r in conn._queue) + conn._body_size
    assert buffered <= 2 * len(body)
    assert not sender.done()  # the client is held back by TCP
    release.set()
    answers = [await read_response(reader) for _ in range(21)]
    await sender
    assert answers[0][2] == b"held" and all(a[:1] == (200,) and a[2] == b"900000" for a in answers[1:])
    writer.close()


async def test_more_pipelined_requests_than_the_queue_holds_close_after_the_queued_ones(
    start: Start,
) -> None:
    server = await start()
    reader, writer = await connect(server)
    writer.write(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n" * 30)
    data = await read_to_eof(reader)
    assert data.count(b"HTTP/1.1 200") == 17  # the one served and 16 queued; the rest unanswered
    assert server.refusals["pipeline_overflow"] == 1
    writer.close()


# -- headers -----------------------------------------------------------------------------------


async def test_oversized_headers_and_url_are_refused_early(start: Start) -> None:
    server = await start(max_header_bytes=64 * 1024)
    reader, writer = await connect(server)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: ")

    async def endless() -> None:
        try:
            for _ in range(500):  # 32 MB if nothing stopped it
                writer.write(b"v" * 65536)
                await writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    sender = asyncio.create_task(endless())
    status, _, body = await read_response(reader)
    sender.cancel()
    assert status == 431 and b"larger than the gateway's limit of 65536 bytes" in body
    writer.close()
    url = await read_to_eof_after(server, b"GET /" + b"u" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert url.startswith(b"HTTP/1.1 414")
    many_small = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(90))  # 90 headers, ~9 KB
    ok = await read_to_eof_after(
        server, b"GET /a HTTP/1.1\r\nHost: x\r\n" + many_small + b"Connection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200")
    assert server.refusals["header_too_large"] == 1 and server.refusals["url_too_long"] == 1


async def read_to_eof_after(server: HttpServer, raw: bytes) -> bytes:
    reader, writer = await connect(server)
    writer.write(raw)
    try:
        return await read_to_eof(reader)
    finally:
        writer.close()


async def test_repeated_headers_are_joined_in_linear_time(start: Start) -> None:
    repeated = b"X-A: b\r\n" * 100_000  # 800 KB
    raw = b"GET /headers HTTP/1.1\r\nHost: x\r\n" + repeated + b"Connection: close\r\n\r\n"
    roomy = await start(max_headers=200_000, max_header_bytes=2_000_000)
    started = time.monotonic()
    data = await read_to_eof_after(roomy, raw)
    assert time.monotonic() - started < 1.0
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"100000 0")
    # With the default limit of 100 headers the request is refused at the 101st.
    default = await start()
    refused = await read_to_eof_after(default, raw)
    assert refused.startswith(b"HTTP/1.1 431") and b"limit of 100 headers" in refused
    assert default.refusals["too_many_headers"] == 1


async def test_a_refusal_behind_a_running_response_is_answered_after_it(start: Start) -> None:
    server = await start(max_header_bytes=4096)
    reader, writer = await connect(server)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: events == ["hold started"])
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 8000 + b"\r\n\r\n")
    await eventually(lambda: server.refusals["header_too_large"] == 1, what="the refusal")
    release.set()
    first = await read_response(reader)
    second = await read_response(reader)
    assert (first[0], first[2]) == (200, b"held")
    assert second[0] == 431 and b"connection: close" in second[1]
    assert await read_to_eof(reader) == b""
    writer.close()


# -- bodies, framing, methods --------------------------------------------------------------------


def _reject_without_key(method: str, path: str, headers: dict[str, str]) -> EarlyReply | None:
    if path.startswith("/v1/") and headers.get("authorization") != "Bearer good":
        return 401, [("content-type", "application/json")], b'{"error":"no key"}'
    return None


async def test_early_check_refuses_a_huge_body_before_it_is_sent(start: Start) -> None:
    server = await start(early_check=_reject_without_key)
    reader, writer = await connect(server)
    writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n")  # no body
    status, head, body = await read_response(reader)
    assert status == 401 and body == b'{"error":"no key"}' and b"connection: close" in head
    assert await read_to_eof(reader) == b""
    writer.close()
    # Expect: 100-continue: no 100 Continue for a request that is refused.
    reader, writer = await connect(server)
    writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert (await read_to_eof(reader)).startswith(b"HTTP/1.1 401")
    writer.close()
    # With the key: 100 Continue, then the body is read and served.
    reader, writer = await connect(server)
    writer.write(
        b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
        b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    assert (await read_response(reader))[2] == b"4"
    writer.close()
    assert server.refusals["early_reject"] == 2 and events == ["POST /v1/chat 4"]


async def test_early_refusal_reaches_a_client_that_sends_its_body_at_once(start: Start) -> None:
    # Most clients send the body right after the headers: the answer must not be lost to a reset.
    server = await start(early_check=_reject_without_key)
    for _ in range(5):
        reader, writer = await connect(server)
        body = b"x" * 2_000_000
        writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, _, answer = await read_response(reader)
        assert status == 401 and answer == b'{"error":"no key"}'
        writer.close()
    assert not events


async def test_content_length_with_trailing_whitespace(start: Start) -> None:
    server = await start(max_body_bytes=1000)
    reader, writer = await connect(server)
    writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000 \r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 413 and b"limit of 1000 bytes" in body
    writer.close()
    ok = await read_to_eof_after(
        server, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3 \t\r\nConnection: close\r\n\r\nabc"
    )
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"3")
    bad = await read_to_eof_after(server, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3 3\r\n\r\nabc")
    assert bad.startswith(b"HTTP/1.1 400")
    assert events == ["POST /a 3"]


async def test_http10_post_without_length_is_411(start: Start) -> None:
    server = await start()
    data = await read_to_eof_after(server, b"POST /a HTTP/1.0\r\nHost: x\r\n\r\nsome body")
    assert data.startswith(b"HTTP/1.1 411") and b"needs a Content-Length" in data
    ok = await read_to_eof_after(server, b"POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert ok.startswith(b"HTTP/1.1 200")
    assert server.refusals["length_required"] == 1 and events == ["POST /a 2"]


async def test_connect_and_upgrade_get_a_response(start: Start) -> None:
    server = await start()
    connect_reply = await read_to_eof_after(server, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert connect_reply.startswith(b"HTTP/1.1 501") and b"not a proxy" in connect_reply
    upgrade = await read_to_eof_after(
        server, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert upgrade.startswith(b"HTTP/1.1 400") and b"upgrades are not supported" in upgrade
    assert not events
    assert server.refusals["connect_refused"] == 1 and server.refusals["upgrade_refused"] == 1


# -- connections -------------------------------------------------------------------------------


async def test_max_connections(start: Start) -> None:
    server = await start(max_connections=3)
    held = [await connect(server) for _ in range(3)]
    await eventually(lambda: len(server.connections) == 3)
    reader, writer = await connect(server)
    refused = await read_to_eof(reader)
    assert refused.startswith(b"HTTP/1.1 503") and b"too many open connections" in refused
    writer.close()
    assert len(server.connections) == 3 and server.refusals["too_many_connections"] == 1
    held.pop()[1].close()
    await eventually(lambda: len(server.connections) == 2)
    ok = await read_to_eof_after(server, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
    for _, w in held:
        w.close()


async def test_refusals_are_logged_at_most_once_a_second_per_reason(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start()
    caplog.set_level("INFO", logger="spillgate.http")
    for _ in range(5):
        await read_to_eof_after(server, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = [r for r in caplog.records if "connect_refused" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert server.refusals["connect_refused"] == 5
