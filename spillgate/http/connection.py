"""One client connection: parsing requests, their limits and deadlines, serving them in order."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING

import httptools

from spillgate.http.messages import ClientDisconnected, EarlyReply, Headers, Request
from spillgate.http.response import ResponseWriter, header_block
from spillgate.http.sockets import adopt, limit_send_buffer, linger_zero

if TYPE_CHECKING:
    from spillgate.http.server import HttpServer

log = logging.getLogger("spillgate.http")

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
LINGER_SECONDS = 2.0
_MAX_PIPELINED = 16
"""Requests queued behind the one being served. Reading stops at the first queued one; more can
only come from the same read (at most this many), beyond which the rest are left unanswered and
the connection is closed after the queued ones (a client retries unanswered pipelined requests)."""
EXPIRE_BATCH = 16
"""Connections a sweep expires per event-loop iteration (a 408, a close or a reset each)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request has been refused."""


class Connection(asyncio.Protocol):
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

    # -- what the server's sweep and shutdown ask -------------------------------------------
    def due(self, now: float) -> bool:
        """A read or write deadline has passed."""
        return self._deadline <= now or self._write_deadline <= now

    @property
    def serving(self) -> bool:
        """A handler is running for one of this connection's requests."""
        return self._task is not None

    @property
    def idle(self) -> bool:
        """Between requests, nothing running: safe to close without losing an answer."""
        return self._task is None and self._phase == _IDLE

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
            head = header_block(503, headers, b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
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
        head = header_block(status, headers, b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport.write(head + body)
        self.closed = True
        self._queue.clear()
        now = self._loop.time()
        self._phase = _LINGER
        self._discarded = 0
        self._deadline = now + LINGER_SECONDS
        self._write_deadline = now + self.server.write_timeout
        if transport.can_write_eof():
            transport.write_eof()
            if self._paused:
                self._paused = False
                transport.resume_reading()
        else:
            transport.close()
