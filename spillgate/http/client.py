"""A pooled keep-alive HTTP/1.1 client for upstream calls, on asyncio protocols and httptools.

One :class:`HttpClient` per upstream origin. A request returns an :class:`UpstreamResponse`
as soon as the status line and headers are in; the body is then read whole
(:meth:`UpstreamResponse.read`) or piece by piece as it arrives
(:meth:`UpstreamResponse.next_chunk`). Every wait has its own timeout and fails with a
typed :class:`UpstreamFailure` naming the phase, so callers can classify it as data.
Cancelling the calling task closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from enum import Enum
from urllib.parse import urlsplit

import httptools

from spillgate.http.egress import Proxy, ProxyError, describe, open_connection
from spillgate.http.sockets import adopt


class FailureKind(Enum):
    CONNECT = "connect"
    CONNECT_TIMEOUT = "connect_timeout"
    RESET = "reset"
    """The connection closed or reset before the response was complete."""
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    PROTOCOL = "protocol"
    POOL_FULL = "pool_full"
    """Every connection of the pool to this upstream was in use for the whole wait: nothing was
    sent (the gateway's own limit, ``providers.<name>.max_connections``)."""
    SILENT_CLOSE = "silent_close"
    """The connection closed after a silence (:data:`SILENCE` seconds, or half the header
    timeout) without a byte of response: the upstream was silent, not reset."""


class UpstreamFailure(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


_MAX_BUFFER = 64 * 1024
"""Body bytes read ahead of the consumer before reading pauses (a slow client's stream costs at
most this much here)."""
MAX_HEADER_BYTES = 64 * 1024
"""Response status line + headers an upstream may send (``limits.max_upstream_header_bytes``)."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A non-streamed response body read whole (:meth:`UpstreamResponse.read`) at most
(``limits.max_upstream_body_bytes``)."""
SILENCE = 5.0
"""Seconds without a byte after which a closed connection counts as silence, not as a reset
(or half the header timeout, when that is shorter)."""


class _Conn(asyncio.Protocol):
    __slots__ = (
        "_buffered",
        "_chunks",
        "_error",
        "_header_bytes",
        "_headers_done",
        "_max_header_bytes",
        "_paused",
        "_waiter",
        "closed",
        "complete",
        "headers",
        "keep_alive",
        "parser",
        "received",
        "sent_at",
        "silence",
        "status",
        "transport",
    )

    def __init__(self, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._max_header_bytes = max_header_bytes
        self.parser: httptools.HttpResponseParser | None = None
        self.closed = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._headers_done = False
        self.complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamFailure | None = None
        self.keep_alive = True
        self._paused = False
        self.received = False
        self._header_bytes = 0
        self.sent_at = 0.0
        self.silence = SILENCE

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = adopt(transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            # Bytes on an idle connection: the server broke protocol; never reuse it.
            self.closed = True
            self.transport.abort()
            return
        self.received = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamFailure(FailureKind.PROTOCOL, f"malformed HTTP response: {exc}"))
            self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.parser is not None and not self.complete:
            detail = f": {exc}" if exc else ""
            silent = time.monotonic() - self.sent_at
            if not self.received and silent >= self.silence:
                self._fail(
                    UpstreamFailure(
                        FailureKind.SILENT_CLOSE,
                        f"connection closed after {silent:.1f}s of silence, before any response byte{detail}",
                    )
                )
                return
            phase = "after the headers" if self._headers_done else "before the response headers"
            self._fail(UpstreamFailure(FailureKind.RESET, f"connection closed {phase}{detail}"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes:
            if self._error is None:
                limit = self._max_header_bytes
                self._fail(UpstreamFailure(FailureKind.PROTOCOL, f"response headers over {limit} bytes"))
                self.transport.abort()
            return
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _MAX_BUFFER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- waiting
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: UpstreamFailure) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def _wait(self, timeout: float, on_timeout: UpstreamFailure) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        handle = loop.call_later(timeout, _expire, waiter, on_timeout)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def drop_buffered(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self.transport.resume_reading()

    def begin(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers = []
        self._header_bytes = 0
        self._chunks.clear()
        self._buffered = 0
        self._headers_done = False
        self.complete = False
        self._error = None
        self.received = False

    async def wait_headers(self, timeout: float, message: str) -> None:
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait(timeout, UpstreamFailure(FailureKind.FIRST_BYTE_TIMEOUT, message))
        if self._error is not None:  # e.g. headers over the limit, parsed to their end all the same
            raise self._error

    async def next_chunk(self, timeout: float, kind: FailureKind, message: str) -> bytes | None:
        while True:
            if self._chunks:
                if len(self._chunks) == 1:
                    data = self._chunks.popleft()
                else:
                    data = b"".join(self._chunks)
                    self._chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            await self._wait(timeout, UpstreamFailure(kind, message))


def _expire(waiter: asyncio.Future[None], error: UpstreamFailure) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class UpstreamResponse:
    """Status and headers of an upstream response; the body is read on demand."""

    __slots__ = ("_client", "_conn", "_released", "headers", "status")

    def __init__(self, client: HttpClient, conn: _Conn) -> None:
        self._client = client
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def next_chunk(self, idle_timeout: float) -> bytes | None:
        """The next body bytes as they arrive; ``None`` at the end of the body."""
        data = await self._conn.next_chunk(
            idle_timeout, FailureKind.IDLE_TIMEOUT, f"no data from upstream for {idle_timeout:g}s"
        )
        if data is None:
            self.release()
        return data

    async def first_chunk(self, timeout: float) -> bytes | None:
        """Like :meth:`next_chunk`, but a silence counts as a first-byte timeout."""
        data = await self._conn.next_chunk(
            timeout, FailureKind.FIRST_BYTE_TIMEOUT, f"no body from upstream within {timeout:g}s"
        )
        if data is None:
            self.release()
        return data

    async def read(self, timeout: float, limit: int | None = None) -> bytes:
        """The whole body, within ``timeout`` seconds in all and ``limit`` bytes (default: the
        client's ``max_body_bytes``)."""
        if limit is None:
            limit = self._client.max_body_bytes
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        parts: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.close()
                raise UpstreamFailure(FailureKind.TOTAL_TIMEOUT, f"upstream response took over {timeout:g}s")
            try:
                data = await self._conn.next_chunk(
                    remaining, FailureKind.TOTAL_TIMEOUT, f"upstream response took over {timeout:g}s"
                )
            except BaseException:
                self.close()
                raise
            if data is None:
                self.release()
                return parts[0] if len(parts) == 1 else b"".join(parts)
            size += len(data)
            if size > limit:
                self.close()
                raise UpstreamFailure(FailureKind.PROTOCOL, f"upstream response body over {limit} bytes")
            parts.append(data)

    def finish(self) -> None:
        """Done with the body: keep the connection if the response already ended, else drop it.

        A stream's last event and the end of its chunked body usually arrive together, so the
        connection can go back to the pool without waiting for anything.
        """
        conn = self._conn
        if conn.complete:
            conn.drop_buffered()
            self.release()
        else:
            self.close()

    def release(self) -> None:
        """Return the connection to the pool if the response was read to its end."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed:
            self._client._put_back(conn)
        else:
            self._client._discard(conn)

    def close(self) -> None:
        """Abandon the response; the connection is closed (not reused)."""
        if self._released:
            return
        self._released = True
        self._client._discard(self._conn)


class HttpClient:
    """Keep-alive connections to one origin, at most ``max_connections`` at a time.

    ``tls``: the context for an ``https://`` origin (and an ``https://`` proxy); by default the
    system's trust store. ``proxy``: new connections go through its ``CONNECT`` tunnel
    (:mod:`spillgate.http.egress`)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 256,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        tls: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = (parts.scheme == "https" and self.port == 443) or (
            parts.scheme == "http" and self.port == 80
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        if tls is None and (self.scheme == "https" or (proxy is not None and proxy.scheme == "https")):
            tls = ssl.create_default_context()
        self._ssl = tls if self.scheme == "https" else None
        self._proxy = proxy
        self._proxy_ssl = tls if proxy is not None and proxy.scheme == "https" else None
        self._where = f"{self.host}:{self.port}" + (f" through proxy {proxy.address}" if proxy else "")
        self._idle: deque[_Conn] = deque()
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._slots = asyncio.Semaphore(max_connections)
        self.pool_full = 0
        """Requests that found every connection busy for their whole wait."""
        self._active: set[_Conn] = set()
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
    ) -> UpstreamResponse:
        """Send a request; return once the response headers are in. Waiting for a free connection
        of the pool counts against ``connect_timeout`` (then :attr:`FailureKind.POOL_FULL`)."""
        try:
            async with asyncio.timeout(connect_timeout):
                await self._slots.acquire()
        except TimeoutError:
            self.pool_full += 1
            raise UpstreamFailure(
                FailureKind.POOL_FULL,
                f"all {self.max_connections} connections to {self.host}:{self.port} were busy "
                f"for {connect_timeout:g}s (providers.<name>.max_connections)",
            ) from None
        conn: _Conn | None = None
        try:
            conn = await self._checkout(connect_timeout)
            conn.begin()
            head = [f"{method} {self.base_path}{path} HTTP/1.1\r\nhost: {self.host_header}\r\n"]
            for name, value in headers:
                head.append(f"{name}: {value}\r\n")
            head.append(f"content-length: {len(body)}\r\n\r\n")
            payload = "".join(head).encode("latin-1")
            conn.transport.write(payload + body if len(body) < 65536 else payload)
            if len(body) >= 65536:
                conn.transport.write(body)
            conn.sent_at = time.monotonic()
            conn.silence = min(SILENCE, first_byte_timeout / 2)
            await conn.wait_headers(
                first_byte_timeout, f"no response headers from upstream within {first_byte_timeout:g}s"
            )
            return UpstreamResponse(self, conn)
        except BaseException:
            if conn is not None:
                self._discard(conn)
            else:
                self._slots.release()
            raise

    async def _checkout(self, connect_timeout: float) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                self._active.add(conn)
                return conn
        try:
            async with asyncio.timeout(connect_timeout):
                protocol = await open_connection(
                    lambda: _Conn(self.max_header_bytes),
                    self.host,
                    self.port,
                    tls=self._ssl,
                    proxy=self._proxy,
                    proxy_tls=self._proxy_ssl,
                )
        except TimeoutError:
            raise UpstreamFailure(
                FailureKind.CONNECT_TIMEOUT, f"could not connect to {self._where} within {connect_timeout:g}s"
            ) from None
        except ProxyError as exc:
            raise UpstreamFailure(FailureKind.CONNECT, str(exc)) from None
        except OSError as exc:
            raise UpstreamFailure(
                FailureKind.CONNECT, f"could not connect to {self._where}: {describe(exc)}"
            ) from None
        self._active.add(protocol)
        return protocol

    def _put_back(self, conn: _Conn) -> None:
        self._active.discard(conn)
        conn.parser = None
        if self._closed:
            conn.transport.close()
        else:
            self._idle.append(conn)
        self._slots.release()

    def _discard(self, conn: _Conn) -> None:
        if conn in self._active:
            self._active.discard(conn)
            self._slots.release()
        conn.closed = True
        if conn.transport is not None:
            conn.transport.abort()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().transport.close()
        for conn in list(self._active):
            conn.transport.abort()
        self._active.clear()
        await asyncio.sleep(0)
