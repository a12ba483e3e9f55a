"""Writing one response on a connection: a whole body, or a chunked stream as it is produced."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from spillgate.http.messages import ClientDisconnected, Headers

if TYPE_CHECKING:
    from spillgate.http.connection import Connection

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[529] = b"Site Overloaded"


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


def header_block(status: int, headers: Headers, extra: bytes) -> bytes:
    parts = [_status_line(status)]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(extra)
    return b"".join(parts)


class ResponseWriter:
    """Writes exactly one response on a connection."""

    __slots__ = ("_chunked", "_conn", "_head", "_http10", "_keep_alive", "finished", "started", "status")

    def __init__(self, conn: Connection, keep_alive: bool, http10: bool = False, head: bool = False) -> None:
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
        head = header_block(
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
            conn.transport.write(header_block(status, headers, self._connection_header()))
        elif self._http10:
            # HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection.
            self._chunked = False
            self._keep_alive = False
            conn.transport.write(header_block(status, headers, self._connection_header()) + first)
            if final:
                self.finished = True
                conn.close_gracefully()
        else:
            head = header_block(
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
