"""A small HTTP/1.1 server on asyncio protocols and httptools.

One handler signature: ``async def handler(request, writer) -> None``. The handler
answers with :meth:`ResponseWriter.send` (a whole body) or with
:meth:`ResponseWriter.start` / :meth:`ResponseWriter.write` / :meth:`ResponseWriter.end`
(a chunked stream, written as it is produced). Keep-alive and pipelining are handled
here; a client that disconnects cancels the task running its handler.

What a client may cost is bounded: the request line and headers (size, count, time to arrive),
the body (size, time to arrive), an idle keep-alive connection, a response the client does not
read (the kernel's send buffer is fixed, so the write stalls soon; after the write timeout the
connection is dropped and its handler cancelled), pipelined requests (reading stops
once one is queued) and the number of open connections. An optional early check sees the
headers before the body is read (and before ``100 Continue``), so a request without a valid
key is answered without buffering its body. Every refusal is a clean HTTP error or a closed
connection, logged (at most one line a second per reason) and counted in
:attr:`HttpServer.refusals`. The deadlines are checked by one periodic sweep of the
connections; the hot path only stores a deadline per phase.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

import httptools

from spillgate.http.sockets import adopt, limit_send_buffer, linger_zero

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

EarlyReply = tuple[int, Headers, bytes]
"""A complete error response: status, headers, body."""

EarlyCheck = Callable[[str, str, dict[str, str]], EarlyReply | None]
"""(method, path, headers) -> the error to answer instead of reading the body, or ``None`` to go on.

Called once a request's headers are in, before its body is read and before ``100 Continue``.
A refused request is answered and its connection closed; the body is never buffered."""

REFUSAL_REASONS = (
    "malformed",
    "url_too_long",
    "header_too_large",
    "too_many_headers",
    "header_timeout",
    "body_timeout",
    "body_too_large",
    "length_required",
    "connect_refused",
    "upgrade_refused",
    "early_reject",
    "idle_timeout",
    "write_timeout",
    "too_many_connections",
    "pipeline_overflow",
)
"""The keys of :attr:`HttpServer.refusals` (each also a ``reason`` label in /metrics)."""


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
                conn.close_gracefully()
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
            await conn.drain()
        else:
            if last:
                conn.transport.write(last)
            conn.close_gracefully()

    def abort(self, reset: bool = False) -> None:
        """Drop the connection now; with ``reset`` the peer sees a TCP RST."""
        self.finished = True
        self._conn.abort(reset)

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive


# Connection phases, in order: a phase from _STOPPED on reads no more requests.
_IDLE = 0
"""Between requests, or a new connection: ``idle_timeout``."""
_HEAD = 1
"""The request line and headers are arriving: ``header_timeout``."""
_BODY = 2
"""The body is arriving: ``body_timeout``."""
_BUSY = 3
"""The last request read is complete (served or queued); no read deadline."""
_STOPPED = 4
"""A request was refused while a response was unfinished: the refusal is answered after it."""
_LINGER = 5
"""A refusal was answered and the write side shut: input is read and dropped until the client
closes (so the answer is not lost to a reset while the client is still sending) or a deadline."""
_CLOSING = 6
"""Closing once the last response is written (within ``write_timeout``)."""
_CLOSED = 7

_INF = math.inf
_LINGER_SECONDS = 2.0
_MAX_PIPELINED = 16
"""Requests queued behind the one being served. Reading stops at the first queued one; more can
only come from the same read (at most this many), beyond which the rest are left unanswered and
the connection is closed after the queued ones (a client retries unanswered pipelined requests)."""
_EXPIRE_BATCH = 16
"""Connections a sweep expires per event-loop iteration (a 408, a close or a reset each)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request has been refused."""


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_continue_pending",
        "_deadline",
        "_deferred",
        "_discarded",
        "_drain_waiter",
        "_head_raw",
        "_head_size",
        "_header_count",
        "_headers",
        "_loop",
        "_method",
        "_path",
        "_paused",
        "_phase",
        "_query",
        "_queue",
        "_remote",
        "_repeated",
        "_task",
        "_url",
        "_write_deadline",
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
        self._loop = server.loop
        self._url = b""
        self._method = ""
        self._path = ""
        self._query = ""
        self._headers: dict[str, str] = {}
        self._repeated: dict[str, list[str]] | None = None
        self._head_size = 0
        """Bytes of the request line and headers parsed so far (names, values, separators)."""
        self._head_raw = 0
        """Bytes received since the last request ended while no body was being read: bounds a
        header that httptools is still assembling (it hands a header over only once complete)."""
        self._header_count = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._remote = ""
        self._phase = _IDLE
        self._deadline = _INF
        """When the current read phase expires (loop time); checked by :meth:`HttpServer._sweep`."""
        self._write_deadline = _INF
        """When a write waiting to drain (or a close waiting to flush) gives up."""
        self._paused = False
        self._continue_pending = False
        self._deferred: tuple[int, Headers, bytes] | None = None
        self._discarded = 0

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport)
        peer = transport.get_extra_info("peername")
        self._remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        server = self.server
        if len(server.connections) >= server.max_connections:
            self._phase = _CLOSED
            self.closed = True
            server.refused(
                "too_many_connections", self._remote, f"{server.max_connections} open", level=logging.WARNING
            )
            headers, body = server.error_responder(
                503, f"too many open connections (the gateway's limit is {server.max_connections})", ""
            )
            head = _header_block(503, headers, b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
            self.transport.write(head + body)
            self.transport.close()
            return
        server.connections.add(self)
        limit_send_buffer(transport, server.send_buffer)
        self._deadline = self._loop.time() + server.idle_timeout

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase >= _STOPPED:
            if phase == _LINGER:
                self._discarded += len(data)
                if self._discarded > self.server.max_body_bytes:
                    self.abort(False)
            return
        if phase != _BODY:
            self._head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrade_refused", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            if self._phase < _STOPPED:
                self._refuse(400, "malformed", f"malformed HTTP request: {exc}")
            return
        if self._head_raw > self.server.max_header_bytes and self._phase < _BODY:
            self._refuse_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._phase = _CLOSED
        self._deadline = self._write_deadline = _INF
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
        self._path = ""
        self._headers = {}
        self._head_size = 0
        self._header_count = 0
        self._body = []
        self._body_size = 0
        self._phase = _HEAD
        self._deadline = _INF if self._paused else self._loop.time() + self.server.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if len(self._url) > self.server.max_header_bytes:
            self._refuse(
                414,
                "url_too_long",
                f"the URL is longer than the gateway's limit of {self.server.max_header_bytes} bytes",
            )
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        server = self.server
        self._head_size += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_count > server.max_headers or self._head_size > server.max_header_bytes:
            self._refuse_headers()
            raise _Stop
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        old = headers.get(key)
        if old is None:
            headers[key] = text
            return
        # Repeated: collected, joined once at the end of the headers (linear in their number).
        repeated = self._repeated
        if repeated is None:
            repeated = self._repeated = {}
        values = repeated.get(key)
        if values is None:
            repeated[key] = [old, text]
        else:
            values.append(text)

    def on_headers_complete(self) -> None:
        headers = self._headers
        if self._repeated is not None:
            for key, values in self._repeated.items():
                headers[key] = ", ".join(values)
            self._repeated = None
        parser = self.parser
        server = self.server
        method = self._method = parser.get_method().decode("ascii")
        path, _, self._query = self._url.decode("latin-1").partition("?")
        self._path = path
        if parser.should_upgrade():
            if method == "CONNECT":
                self._refuse(501, "connect_refused", "CONNECT is not supported: Spillgate is not a proxy")
            else:
                self._refuse(400, "upgrade_refused", "protocol upgrades are not supported")
            raise _Stop
        length = headers.get("content-length")
        if length is not None:
            # httptools has checked the digits but leaves trailing whitespace in the value.
            length = headers["content-length"] = length.strip(" \t")
            if not (length.isascii() and length.isdigit()):
                self._refuse(400, "malformed", "malformed HTTP request: invalid Content-Length")
                raise _Stop
        elif (
            method in _BODY_METHODS
            and "transfer-encoding" not in headers
            and parser.get_http_version() == "1.0"
        ):
            # HTTP/1.0 has no other framing: the body would run to the end of the connection.
            self._refuse(411, "length_required", f"an HTTP/1.0 {method} needs a Content-Length")
            raise _Stop
        early = server.early_check
        if early is not None:
            try:
                reply = early(method, path, headers)
            except Exception:
                log.exception("unhandled error in the early check for %s %s", method, path)
                self._refuse(500, "early_reject", "internal gateway error")
                raise _Stop from None
            if reply is not None:
                self._refuse(reply[0], "early_reject", f"{reply[0]} for {method} {path}", reply)
                raise _Stop
        if length is not None and int(length) > server.max_body_bytes:
            self._refuse_too_large()
            raise _Stop
        self._phase = _BODY
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            if self._task is None:
                self.transport.write(_CONTINUE)
            else:
                # Only for the request served next; this one waits its turn (and its body's clock
                # starts with the 100 Continue).
                self._continue_pending = True
                self._deadline = _INF
                return
        self._deadline = _INF if self._paused else self._loop.time() + server.body_timeout

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._refuse_too_large()
            raise _Stop
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._phase >= _STOPPED:
            return
        parser = self.parser
        request = Request(
            method=self._method,
            path=self._path,
            query=self._query,
            headers=self._headers,
            body=b"".join(self._body) if len(self._body) != 1 else self._body[0],
            keep_alive=parser.should_keep_alive(),
            remote=self._remote,
            http10=parser.get_http_version() == "1.0",
        )
        self._phase = _BUSY
        self._deadline = _INF
        self._head_raw = 0
        if self._task is None:
            self._task = self._loop.create_task(self._serve(request))
            return
        queue = self._queue
        if len(queue) >= _MAX_PIPELINED:
            self._refuse(
                0, "pipeline_overflow", f"more than {_MAX_PIPELINED} pipelined requests", answer=False
            )
            raise _Stop
        queue.append(request)
        # One request waits at most: the rest stays in the client's socket until it is served.
        self._pause()

    # -- serving ----------------------------------------------------------------------
    async def _serve(self, request: Request) -> None:
        try:
            while await self._serve_one(request) and self._queue:
                request = self._queue.popleft()
                if not self._queue and self._phase < _STOPPED:
                    self._resume()
        finally:
            self._task = None
            if self._phase < _LINGER:
                self._served()

    def _served(self) -> None:
        """The handler task is done and no request is queued: what the connection does next."""
        if self._phase == _STOPPED:
            reply = self._deferred
            self._deferred = None
            if reply is not None:
                self._answer_and_linger(reply)
            else:
                self.close_gracefully()
            return
        self._resume()
        if self._continue_pending:
            self._continue_pending = False
            self.transport.write(_CONTINUE)
            if self._phase == _BODY:
                self._deadline = self._loop.time() + self.server.body_timeout
        elif self._phase == _BUSY:
            self._phase = _IDLE
            self._deadline = self._loop.time() + self.server.idle_timeout

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
            if self._phase >= _LINGER:
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
            self.close_gracefully()
            return False
        return self._phase < _LINGER

    async def drain(self) -> None:
        if self.closed:
            raise ClientDisconnected("client disconnected")
        if not self.write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        self._write_deadline = self._loop.time() + self.server.write_timeout
        try:
            await waiter
        finally:
            if self._phase < _LINGER:
                self._write_deadline = _INF
        if self.closed:
            raise ClientDisconnected("client disconnected")

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control, deadlines and closing -------------------------------------------------
    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()
            if self._phase == _HEAD or self._phase == _BODY:
                self._deadline = _INF  # the client cannot send while we do not read

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
            phase = self._phase
            if phase == _HEAD:
                self._deadline = self._loop.time() + self.server.header_timeout
            elif phase == _BODY and not self._continue_pending:
                self._deadline = self._loop.time() + self.server.body_timeout

    def expire(self, now: float) -> None:
        """A deadline has passed (called by the server's sweep)."""
        server = self.server
        if self._write_deadline <= now:
            server.refused(
                "write_timeout", self._remote, f"a write did not drain in {server.write_timeout:g} s"
            )
            task = self._task
            # Reset, not closed: a FIN would wait behind the unread bytes in the kernel's send
            # buffer (held for as long as the client takes to read them); a reset frees them now.
            self.abort(True)
            if task is not None and not task.done():
                task.cancel()
            return
        phase = self._phase
        if phase == _IDLE:
            server.refused("idle_timeout", self._remote, "", level=logging.DEBUG)
            self.close_gracefully()
        elif phase == _HEAD:
            self._refuse(
                408,
                "header_timeout",
                f"the request headers did not arrive within {server.header_timeout:g} s",
            )
        elif phase == _BODY:
            self._refuse(
                408, "body_timeout", f"the request body did not arrive within {server.body_timeout:g} s"
            )
        elif phase == _LINGER:
            self.abort(False)
        else:
            self._deadline = _INF

    def close_gracefully(self) -> None:
        """Close once what is written has been sent; a client that does not read it is dropped
        after ``write_timeout``."""
        if self._phase >= _LINGER:
            return
        self._phase = _CLOSING
        self._queue.clear()
        self._deadline = _INF
        self._write_deadline = self._loop.time() + self.server.write_timeout
        self.transport.close()

    def abort(self, reset: bool) -> None:
        if self._phase == _CLOSED:
            return
        self.closed = True
        self._phase = _CLOSED
        self._deadline = self._write_deadline = _INF
        self._queue.clear()
        if reset:
            linger_zero(self.transport)
        self.transport.abort()

    def _refuse_too_large(self) -> None:
        limit = self.server.max_body_bytes
        self._refuse(
            413, "body_too_large", f"request body is larger than the gateway's limit of {limit} bytes"
        )

    def _refuse_headers(self) -> None:
        server = self.server
        if self._header_count > server.max_headers:
            self._refuse(
                431, "too_many_headers", f"more than the gateway's limit of {server.max_headers} headers"
            )
        else:
            self._refuse(
                431,
                "header_too_large",
                f"request headers are larger than the gateway's limit of {server.max_header_bytes} bytes",
            )

    def _refuse(
        self,
        status: int,
        reason: str,
        message: str,
        reply: EarlyReply | None = None,
        *,
        answer: bool = True,
    ) -> None:
        """Refuse the request being read: answer ``status`` (or ``reply``) and close. While a
        response is unfinished the answer waits for it (and for the requests queued before)."""
        if self._phase >= _STOPPED:
            return
        server = self.server
        server.refused(reason, self._remote, message)
        if answer and reply is None:
            path = self._path or self._url.decode("latin-1").partition("?")[0]
            headers, body = server.error_responder(status, message, path)
            reply = (status, headers, body)
        self._continue_pending = False
        if self._task is not None:
            self._phase = _STOPPED
            self._deadline = _INF
            self._deferred = reply
            self._pause()
            return
        if reply is None:
            self.close_gracefully()
        else:
            self._answer_and_linger(reply)

    def _answer_and_linger(self, reply: EarlyReply) -> None:
        status, headers, body = reply
        transport = self.transport
        head = _header_block(status, headers, b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport.write(head + body)
        self.closed = True
        self._queue.clear()
        now = self._loop.time()
        self._phase = _LINGER
        self._discarded = 0
        self._deadline = now + _LINGER_SECONDS
        self._write_deadline = now + self.server.write_timeout
        if transport.can_write_eof():
            transport.write_eof()
            if self._paused:
                self._paused = False
                transport.resume_reading()
        else:
            transport.close()


class HttpServer:
    """Owns the listening socket and the live connections.

    The limits (see ``limits.*`` in the README) bound what one client can hold: the size and
    count of request headers, how long the headers, the body, an idle keep-alive and a write
    that does not drain may take, and how many connections are open. ``early_check`` sees each
    request's headers before its body is read.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        error_responder: ErrorResponder = _plain_error,
        max_header_bytes: int = 64 * 1024,
        max_headers: int = 100,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
        idle_timeout: float = 60.0,
        write_timeout: float = 30.0,
        max_connections: int = 4096,
        send_buffer: int = 128 * 1024,
        early_check: EarlyCheck | None = None,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.error_responder = error_responder
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self.send_buffer = send_buffer
        """``SO_SNDBUF`` of each client connection (0: the kernel's autotuning)."""
        self.early_check = early_check
        self.connections: set[_Connection] = set()
        self.refusals: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        """Refused requests and closed connections by reason, since the start."""
        self._logged: dict[str, tuple[float, int]] = {}
        """Per reason: when its last line was logged, and how many were not logged since."""
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        shortest = min(header_timeout, body_timeout, idle_timeout, write_timeout, _LINGER_SECONDS)
        self.sweep_interval = min(1.0, max(0.01, shortest / 4))
        """How often deadlines are checked: a timeout fires up to this much late."""

    async def start(self, host: str, port: int, *, sock: socket.socket | None = None) -> None:
        loop = self.loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self), host, port, backlog=1024, reuse_address=True
            )
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        expired = [c for c in self.connections if c._deadline <= now or c._write_deadline <= now]
        if expired:
            self._expire(expired, now)
        self._sweeper = self.loop.call_later(self.sweep_interval, self._sweep)

    def _expire(self, due: list[_Connection], now: float) -> None:
        """Expire ``due`` a batch at a time, other callbacks running in between: a thousand
        connections timing out together never stall the requests being served."""
        for conn in due[:_EXPIRE_BATCH]:
            if conn._deadline <= now or conn._write_deadline <= now:  # still due
                conn.expire(now)
        if len(due) > _EXPIRE_BATCH:
            self.loop.call_soon(self._expire, due[_EXPIRE_BATCH:], now)

    def refused(self, reason: str, remote: str, detail: str, level: int = logging.INFO) -> None:
        """Count a refusal; log it (one line a second per reason at most, saying how many more)."""
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        if not log.isEnabledFor(level):
            return
        now = self.loop.time() if self.loop is not None else 0.0
        last = self._logged.get(reason)
        if last is not None and now - last[0] < 1.0:
            self._logged[reason] = (last[0], last[1] + 1)
            return
        more = f" (and {last[1]} more since the last line)" if last is not None and last[1] else ""
        self._logged[reason] = (now, 0)
        log.log(level, "http: %s from %s%s%s", reason, remote or "?", f": {detail}" if detail else "", more)

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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            if conn._task is None and conn._phase == _IDLE:
                conn.close_gracefully()
            else:
                conn.abort(False)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
