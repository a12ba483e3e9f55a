"""One client connection: parsing requests and their limits, serving them in order.

Its phases, deadlines, refusals and closing are :mod:`spillgate.http.lifecycle`'s."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httptools

from spillgate.http.lifecycle import (
    BODY,
    BUSY,
    CLOSED,
    EXPIRE_BATCH,
    HEAD,
    IDLE,
    INF,
    LINGER,
    LINGER_SECONDS,
    STOPPED,
    ConnectionLifecycle,
)
from spillgate.http.messages import ClientDisconnected, Request
from spillgate.http.response import ResponseWriter, header_block
from spillgate.http.sockets import adopt, limit_send_buffer

if TYPE_CHECKING:
    from spillgate.http.server import HttpServer

log = logging.getLogger("spillgate.http")

__all__ = ["EXPIRE_BATCH", "LINGER_SECONDS", "Connection"]

_MAX_PIPELINED = 16
"""Requests queued behind the one being served. Reading stops at the first queued one; more can
only come from the same read (at most this many), beyond which the rest are left unanswered and
the connection is closed after the queued ones (a client retries unanswered pipelined requests)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request has been refused."""


class Connection(ConnectionLifecycle):
    """An :class:`asyncio.Protocol` for one client: httptools' callbacks build the requests,
    one task serves them in order (pipelined ones queued)."""

    __slots__ = ("parser",)

    def __init__(self, server: HttpServer) -> None:
        super().__init__(server)
        self.parser = httptools.HttpRequestParser(self)

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport)
        peer = transport.get_extra_info("peername")
        self._remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        server = self.server
        if len(server.connections) >= server.max_connections:
            self._phase = CLOSED
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
        if phase >= STOPPED:
            if phase == LINGER:
                self._discarded += len(data)
                if self._discarded > self.server.max_body_bytes:
                    self.abort(False)
            return
        if phase != BODY:
            self._head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrade_refused", "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            if self._phase < STOPPED:
                self._refuse(400, "malformed", f"malformed HTTP request: {exc}")
            return
        if self._head_raw > self.server.max_header_bytes and self._phase < BODY:
            self._refuse_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._phase = CLOSED
        self._deadline = self._write_deadline = INF
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
        self._phase = HEAD
        self._deadline = INF if self._paused else self._loop.time() + self.server.header_timeout

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
        self._phase = BODY
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            if self._task is None:
                self.transport.write(_CONTINUE)
            else:
                # Only for the request served next; this one waits its turn (and its body's clock
                # starts with the 100 Continue).
                self._continue_pending = True
                self._deadline = INF
                return
        self._deadline = INF if self._paused else self._loop.time() + server.body_timeout

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.server.max_body_bytes:
            self._refuse_too_large()
            raise _Stop
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._phase >= STOPPED:
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
        self._phase = BUSY
        self._deadline = INF
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
                if not self._queue and self._phase < STOPPED:
                    self._resume()
        finally:
            self._task = None
            if self._phase < LINGER:
                self._served()

    def _served(self) -> None:
        """The handler task is done and no request is queued: what the connection does next."""
        if self._phase == STOPPED:
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
            if self._phase == BODY:
                self._deadline = self._loop.time() + self.server.body_timeout
        elif self._phase == BUSY:
            self._phase = IDLE
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
            if self._phase >= LINGER:
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
        return self._phase < LINGER

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
            if self._phase < LINGER:
                self._write_deadline = INF
        if self.closed:
            raise ClientDisconnected("client disconnected")

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
