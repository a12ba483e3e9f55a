"""An in-process transport for unit tests: a handler function answers each request with a
:class:`MockReply` (status, headers, body chunks, and optionally a failure or a silence after
them), so the dispatcher and the stream session run without sockets. Scenario and end-to-end
tests use the loopback fake upstream (:mod:`spillgate.fake`) instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from spillgate.http.client import FailureKind, UpstreamFailure


@dataclass(frozen=True, slots=True)
class MockRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class MockReply:
    """What the mock upstream answers: ``chunks`` in order, then the end of the body — or,
    when set, ``fail_with`` (a cut: ``RESET``) or a silence (``hang_after``: the reader's idle
    timeout fires)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Sequence[bytes] = ()
    fail_with: FailureKind | None = None
    hang_after: bool = False
    _next: int = 0
    finished: bool = False
    closed: bool = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    async def next_chunk(self, idle_timeout: float) -> bytes | None:
        await asyncio.sleep(0)  # a real read yields to the loop: so does this one
        if self._next < len(self.chunks):
            chunk = self.chunks[self._next]
            self._next += 1
            return chunk
        if self.fail_with is not None:
            raise UpstreamFailure(self.fail_with, "the mock upstream cut the response")
        if self.hang_after:
            raise UpstreamFailure(FailureKind.IDLE_TIMEOUT, f"no data from upstream for {idle_timeout:g}s")
        return None

    async def read(self, timeout: float, limit: int | None = None) -> bytes:
        parts = []
        while (chunk := await self.next_chunk(timeout)) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        self.closed = True


Handler = Callable[[MockRequest], MockReply | FailureKind]
"""Answers a request with a reply, or fails it before headers with a :class:`FailureKind`."""


class MockTransport:
    """A :class:`~spillgate.http.transport.Transport` that calls ``handler`` per request and
    keeps every request it saw in :attr:`requests`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[MockRequest] = []
        self.pool_full = 0
        self.closed = False

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
    ) -> MockReply:
        request = MockRequest(method, path, headers, body)
        self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, FailureKind):
            raise UpstreamFailure(answer, f"the mock upstream failed the request ({answer.value})")
        return answer

    async def close(self) -> None:
        self.closed = True
