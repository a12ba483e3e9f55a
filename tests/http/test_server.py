"""The HTTP/1.1 server on raw sockets: keep-alive, pipelining, framing, limits, disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from spillgate.http.server import HttpServer, Request, ResponseWriter
from tests.eventually import eventually

cancelled: list[str] = []


async def handler(request: Request, writer: ResponseWriter) -> None:
    if request.path == "/stream":
        writer.start(200, [("content-type", "text/event-stream")])
        for i in range(3):
            await writer.write(b"data: %d\n\n" % i)
        await writer.end()
    elif request.path == "/slow":
        try:
            await asyncio.get_running_loop().create_future()  # never answers: only a cancel ends it
        except asyncio.CancelledError:
            cancelled.append(request.path)
            raise
    elif request.path == "/abort":
        writer.abort(reset=True)
    elif request.path == "/boom":
        raise ValueError("bug")
    elif request.path == "/silent":
        return
    else:
        await writer.send(
            200, [("content-type", "text/plain")], request.method.encode() + b" " + request.body
        )


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    srv = HttpServer(handler, max_body_bytes=1000)
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.close(grace=0.5)


async def exchange(server: HttpServer, raw: bytes, *, until_close: bool = True, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    data = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        if until_close:
            raise
    writer.close()
    return data


async def test_keep_alive_and_pipelining(server: HttpServer) -> None:
    raw = (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = await exchange(server, raw)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b"POST one") < data.index(b"POST two") < data.index(b"GET ")
    assert data.endswith(b"GET ")


async def test_chunked_request_body_and_chunked_stream(server: HttpServer) -> None:
    raw = (
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert (await exchange(server, raw)).endswith(b"POST abc")
    stream = await exchange(server, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in stream
    assert stream.endswith(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")


async def test_http10_stream_ends_with_the_connection(server: HttpServer) -> None:
    data = await exchange(server, b"GET /stream HTTP/1.0\r\n\r\n")
    assert b"transfer-encoding" not in data and b"connection: close" in data
    assert data.endswith(b"data: 0\n\ndata: 1\n\ndata: 2\n\n")


async def test_expect_100_continue(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"body")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_body_limit_and_malformed_request(server: HttpServer) -> None:
    big = await exchange(server, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    assert big.startswith(b"HTTP/1.1 413") and b"limit of 1000 bytes" in big
    chunked = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"
    big2 = await exchange(
        server, b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    )
    assert big2.startswith(b"HTTP/1.1 413")
    bad = await exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in bad


async def test_handler_bug_is_a_500_without_details(server: HttpServer) -> None:
    data = await exchange(server, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")  # closed after the 500
    assert data.startswith(b"HTTP/1.1 500") and b"internal gateway error" in data
    assert b"ValueError" not in data and b"Traceback" not in data
    # Read to the close the request asks for, not to a timeout.
    silent = await exchange(server, b"GET /silent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert silent.startswith(b"HTTP/1.1 500") and b"handler sent no response" in silent


async def test_abort_drops_pipelined_requests(server: HttpServer) -> None:
    raw = b"GET /abort HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        data = await exchange(server, raw)
    except ConnectionResetError:
        data = b""
    assert b"HTTP/1.1" not in data


async def test_client_disconnect_cancels_the_handler(server: HttpServer) -> None:
    cancelled.clear()
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await eventually(lambda: any(c.serving for c in server.connections), what="the handler to start")
    writer.close()
    await eventually(lambda: cancelled, what="the handler to be cancelled")
    assert cancelled == ["/slow"]
    assert not server.connections


async def test_head_responses_have_no_body(server: HttpServer) -> None:
    raw = (
        b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data = await exchange(server, raw)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200") and b"content-length: 5" in first  # "HEAD " would be the body
    second, _, third = rest.partition(b"\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200") and b"text/event-stream" in second
    assert third.startswith(b"HTTP/1.1 200") and third.endswith(b"GET ")
