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
import socket

from spillgate.http.connection import EXPIRE_BATCH, LINGER_SECONDS, Connection
from spillgate.http.messages import (
    REFUSAL_REASONS,
    ClientDisconnected,
    EarlyCheck,
    EarlyReply,
    ErrorResponder,
    Handler,
    Headers,
    Request,
    plain_error,
)
from spillgate.http.response import ResponseWriter

__all__ = [
    "REFUSAL_REASONS",
    "ClientDisconnected",
    "EarlyCheck",
    "EarlyReply",
    "ErrorResponder",
    "Handler",
    "Headers",
    "HttpServer",
    "Request",
    "ResponseWriter",
]

log = logging.getLogger("spillgate.http")


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
        error_responder: ErrorResponder = plain_error,
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
        self.connections: set[Connection] = set()
        self.refusals: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        """Refused requests and closed connections by reason, since the start."""
        self._logged: dict[str, tuple[float, int]] = {}
        """Per reason: when its last line was logged, and how many were not logged since."""
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        shortest = min(header_timeout, body_timeout, idle_timeout, write_timeout, LINGER_SECONDS)
        self.sweep_interval = min(1.0, max(0.01, shortest / 4))
        """How often deadlines are checked: a timeout fires up to this much late."""

    async def start(
        self, host: str, port: int, *, sock: socket.socket | None = None, reuse_port: bool = False
    ) -> None:
        """Listen on ``host:port`` (or ``sock``); ``reuse_port``: with ``SO_REUSEPORT``, beside the
        other workers listening on the same port."""
        loop = self.loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(
                lambda: Connection(self),
                host,
                port,
                backlog=1024,
                reuse_address=True,
                reuse_port=reuse_port or None,
            )
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        expired = [c for c in self.connections if c.due(now)]
        if expired:
            self._expire(expired, now)
        self._sweeper = self.loop.call_later(self.sweep_interval, self._sweep)

    def _expire(self, due: list[Connection], now: float) -> None:
        """Expire ``due`` a batch at a time, other callbacks running in between: a thousand
        connections timing out together never stall the requests being served."""
        for conn in due[:EXPIRE_BATCH]:
            if conn.due(now):  # still due
                conn.expire(now)
        if len(due) > EXPIRE_BATCH:
            self.loop.call_soon(self._expire, due[EXPIRE_BATCH:], now)

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
        while any(c.serving for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            if conn.idle:
                conn.close_gracefully()
            else:
                conn.abort(False)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
