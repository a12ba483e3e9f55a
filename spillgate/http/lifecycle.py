"""One connection's phases and deadlines, flow control, refusals and closing.

:class:`~spillgate.http.connection.Connection` adds the parsing and the serving; the state both
share is declared here, once (the parse loop reads it as plain slots, no indirection)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from typing import TYPE_CHECKING

from spillgate.http.messages import EarlyReply, Headers, Request
from spillgate.http.response import header_block
from spillgate.http.sockets import linger_zero

if TYPE_CHECKING:
    from spillgate.http.server import HttpServer

# Connection phases, in order: a phase from STOPPED on reads no more requests.
IDLE = 0
"""Between requests, or a new connection: ``idle_timeout``."""
HEAD = 1
"""The request line and headers are arriving: ``header_timeout``."""
BODY = 2
"""The body is arriving: ``body_timeout``."""
BUSY = 3
"""The last request read is complete (served or queued); no read deadline."""
STOPPED = 4
"""A request was refused while a response was unfinished: the refusal is answered after it."""
LINGER = 5
"""A refusal was answered and the write side shut: input is read and dropped until the client
closes (so the answer is not lost to a reset while the client is still sending) or a deadline."""
CLOSING = 6
"""Closing once the last response is written (within ``write_timeout``)."""
CLOSED = 7

INF = math.inf
LINGER_SECONDS = 2.0
EXPIRE_BATCH = 16
"""Connections a sweep expires per event-loop iteration (a 408, a close or a reset each)."""


class ConnectionLifecycle(asyncio.Protocol):
    """The state of one client connection and what changes its phase other than parsing."""

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
        "server",
        "transport",
        "write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
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
        self._phase = IDLE
        self._deadline = INF
        """When the current read phase expires (loop time); checked by :meth:`HttpServer._sweep`."""
        self._write_deadline = INF
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
        return self._task is None and self._phase == IDLE

    # -- flow control, deadlines and closing -------------------------------------------------
    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pause_reading()
            if self._phase == HEAD or self._phase == BODY:
                self._deadline = INF  # the client cannot send while we do not read

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
            phase = self._phase
            if phase == HEAD:
                self._deadline = self._loop.time() + self.server.header_timeout
            elif phase == BODY and not self._continue_pending:
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
        if phase == IDLE:
            server.refused("idle_timeout", self._remote, "", level=logging.DEBUG)
            self.close_gracefully()
        elif phase == HEAD:
            self._refuse(
                408,
                "header_timeout",
                f"the request headers did not arrive within {server.header_timeout:g} s",
            )
        elif phase == BODY:
            self._refuse(
                408, "body_timeout", f"the request body did not arrive within {server.body_timeout:g} s"
            )
        elif phase == LINGER:
            self.abort(False)
        else:
            self._deadline = INF

    def close_gracefully(self) -> None:
        """Close once what is written has been sent; a client that does not read it is dropped
        after ``write_timeout``."""
        if self._phase >= LINGER:
            return
        self._phase = CLOSING
        self._queue.clear()
        self._deadline = INF
        self._write_deadline = self._loop.time() + self.server.write_timeout
        self.transport.close()

    def abort(self, reset: bool) -> None:
        if self._phase == CLOSED:
            return
        self.closed = True
        self._phase = CLOSED
        self._deadline = self._write_deadline = INF
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
        if self._phase >= STOPPED:
            return
        server = self.server
        server.refused(reason, self._remote, message)
        if answer and reply is None:
            path = self._path or self._url.decode("latin-1").partition("?")[0]
            headers, body = server.error_responder(status, message, path)
            reply = (status, headers, body)
        self._continue_pending = False
        if self._task is not None:
            self._phase = STOPPED
            self._deadline = INF
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
        self._phase = LINGER
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
