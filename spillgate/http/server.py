"""A small HTTP/1.1 server on asyncio protocols and httptools.

One handler signature: ``async def handler(request, writer) -> None``. The handler
answers with :meth:`ResponseWriter.send` (a whole body) or with
:meth:`ResponseWriter.start` / :meth:`ResponseWriter.write` / :meth:`ResponseWriter.end`
(a chunked stream, written as it is produced). Keep-alive and pipelining are handled
here; a client that disconnects cancels the task running its handler.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

import httptools

from spillgate.http.sockets import adopt, linger_zero

log = logging.getLogger("spillgate.http")

Headers = Iterable[tuple[str, str]]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers are joined with ``", "``."""
    body: bytes
    keep_alive: bool
    remote: str
    http10: bool = False


class ClientDisconnected(ConnectionError):
    """The client went away while its response was being written."""


ErrorResponder = Callable[[int, str, str], tuple[Headers, bytes]]
"""(status, message, request path) -> (headers, body) for errors the server answers itself."""

Handler = Callable[[Request, "ResponseWriter"], Awaitable[None]]


def _plain_error(status: int, message: str, path: str) -> tuple[Headers, bytes]:
    return [("content-type", "text/plain; charset=utf-8")], message.encode() + b"\n"


_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[529] = b"Site Overloaded"


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


def _header_block(status: int, headers: Headers, extra: bytes) -> bytes:
    parts = [_status_line(status)]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(extra)
    return b"".join(parts)


class ResponseWriter:
    """Writes exactly one response on a connection."""

    __slots__ = ("_chunked", "_conn", "_head", "_http10", "_keep_alive", "finished", "started", "status")

    def __init__(self, conn: _Connection, keep_alive: bool, http10: bool = False, head: bool = False) -> None:
        self._conn = conn
        self._keep_alive = keep_alive
        self._http10 = http10
        self._head = head
        """A response to HEAD: headers only, never a body."""
        self.started = False
        self.finished = False
        self.status = 0
        self._chunked = True

    @property
    def disconnected(self) -> bool:
        return self._conn.closed

    def _connection_header(self) -> bytes:
        return b"connection: keep-alive\r\n\r\n" if self._keep_alive else b"connection: close\r\n\r\n"

    async def send(self, status: int, headers: Headers, body: bytes) -> None:
        """Send a complete response with a Content-Length."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.finished = True
        self.status = status
        head = _header_block(
            status, headers, b"content-length: %d\r\n" % len(body) + self._connection_header()
        )
        conn = self._conn
        if conn.closed:
            raise ClientDisconnected("client disconnected")
        if self._head:
            conn.transport.write(head)
        elif len(body) < 65536:
            conn.transport.write(head + body)
        else:
            conn.transport.write(head)
            conn.transport.write(body)
        await conn.drain()

    def start(self, status: int, headers: Headers, first: bytes = b"", final: bool = False) -> None:
        """Send the status line and headers of a streamed (chunked) response, and ``first``
        (the first piece of the body, if any) in the same write; with ``final`` that piece is
        the whole body and the response ends there too."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        conn = self._conn
        if conn.closed:
            raise ClientDisconnected("client disconnected")
        if self._head:
            self._chunked = False
            self.finished = final
            conn.transport.write(_header_block(status, headers, self._connection_header()))
        elif self._http10:
            # HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection.
            self._chunked = False
            self._keep_alive = False
            conn.transport.write(_header_block(status, headers, self._connection_header()) + first)
            if final:
                self.finished = True
                conn.transport.close()
        else:
            head = _header_block(
                status, headers, b"transfer-encoding: chunked\r\n" + self._connection_header()
            )
            body = b"%x\r\n%s\r\n" % (len(first), first) if first else b""
            if final:
                self.finished = True
                body += b"0\r\n\r\n"
            conn.transport.write(head + body)

    async def write(self, data: bytes) -> None:
        """Send one piece of a streamed body as soon as possible."""
        if not data or self._head:
            return
        conn = self._conn
        if conn.closed:
            raise ClientDisconnected("client disconnected")
        if self._chunked:
            conn.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            conn.transport.write(data)
        if conn.write_paused:
            await conn.drain()

    async def end(self, last: bytes = b"") -> None:
        """Finish a streamed body, writing ``last`` (the final piece, if any) in the same write."""
        if self.finished:
            return
        self.finished = True
        conn = self._conn
        if conn.closed or self._head:
            return
        if self._chunked:
            conn.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last) if last else b"0\r\n\r\n")
        else:
            if last:
                conn.transport.write(last)
            conn.transport.close()
        await conn.drain()

    def abort(self, reset: bool = False) -> None:
        """Drop the connection now; with ``reset`` the peer sees a TCP RST."""
        self.finished = True
        self._conn.abort(reset)

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_drain_waiter",
        "_headers",
        "_queue",
        "_remote",
        "_task",
        "_too_large",
        "_url",
        "closed",
        "parser",
        "server",
        "transport",
        "write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._remote = ""

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport)
        peer = transport.get_extra_info("peername")
        self._remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._too_large:
                self._fail(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writer()

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        limit = self.server.max_body_bytes
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._reject_too_large()
            return
        if self._task is None and self._headers.get("expect", "").lower() == "100-continue":
            # Only for the request served next; a pipelined one waits its turn.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._reject_too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._too_large or self.closed:
            return
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        request = Request(
            method=self.parser.get_method().decode("ascii"),
            path=path,
            query=query,
            headers=self._headers,
            body=b"".join(self._body) if len(self._body) != 1 else self._body[0],
            keep_alive=self.parser.should_keep_alive(),
            remote=self._remote,
            http10=self.parser.get_http_version() == "1.0",
        )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(request))
        else:
            self._queue.append(request)
            if len(self._queue) > 16:
                self.transport.pause_reading()

    # -- serving ----------------------------------------------------------------------
    async def _serve(self, request: Request) -> None:
        try:
            while await self._serve_one(request) and self._queue:
                request = self._queue.popleft()
                if len(self._queue) <= 4:
                    self.transport.resume_reading()
        finally:
            self._task = None

    async def _serve_one(self, request: Request) -> bool:
        """Run the handler for one request; whether the connection can serve another."""
        head = request.method == "HEAD"
        writer = ResponseWriter(self, request.keep_alive, request.http10, head)
        try:
            try:
                await self.server.handler(request, writer)
            except (ClientDisconnected, asyncio.CancelledError):
                self.abort(False)
                return False
            except Exception:
                log.exception("unhandled error in handler for %s %s", request.method, request.path)
                if writer.started:
                    self.abort(False)
                    return False
                headers, body = self.server.error_responder(500, "internal gateway error", request.path)
                writer = ResponseWriter(self, False, request.http10, head)
                await writer.send(500, headers, body)
            if self.closed:
                return False
            if not writer.finished:
                if writer.started:
                    await writer.end()
                else:
                    headers, body = self.server.error_responder(500, "handler sent no response", request.path)
                    await writer.send(500, headers, body)
        except (ClientDisconnected, RuntimeError, OSError):
            self.abort(False)
            return False
        if not writer.keep_alive:
            self.transport.close()
            return False
        return True

    async def drain(self) -> None:
        if self.closed:
            raise ClientDisconnected("client disconnected")
        if not self.write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        await waiter
        if self.closed:
            raise ClientDisconnected("client disconnected")

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def abort(self, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if reset:
            linger_zero(self.transport)
        self.transport.abort()

    def _reject_too_large(self) -> None:
        self._too_large = True
        limit = self.server.max_body_bytes
        path = self._url.decode("latin-1").partition("?")[0]
        self._respond_and_close(
            413, f"request body is larger than the gateway's limit of {limit} bytes", path
        )

    def _fail(self, status: int, message: str) -> None:
        path = self._url.decode("latin-1").partition("?")[0]
        self._respond_and_close(status, message, path)

    def _respond_and_close(self, status: int, message: str, path: str) -> None:
        if self.closed:
            return
        if self._task is not None:
            # A response is being written: an error reply cannot be spliced into it.
            self.abort(False)
            return
        headers, body = self.server.error_responder(status, message, path)
        head = _header_block(status, headers, b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(head + body)
        self.transport.close()
        self.closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


class HttpServer:
    """Owns the listening socket and the live connections."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        error_responder: ErrorResponder = _plain_error,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.error_responder = error_responder
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self), host, port, backlog=1024, reuse_address=True
            )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        assert self._server is not None and self._server.sockets
        return str(self._server.sockets[0].getsockname()[0])

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish for ``grace`` seconds, then drop the rest."""
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c._task is not None for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn._task is None and not conn.closed:
                conn.transport.close()
            else:
                conn.abort(False)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
