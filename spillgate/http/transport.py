"""The transport seam under the upstream HTTP client: what the request path needs from an
upstream connection, as two small interfaces (as httpx has ``AsyncBaseTransport``).

:class:`~spillgate.http.client.HttpClient` (pooled HTTP/1.1 on asyncio) is the real one;
:class:`~spillgate.http.mock.MockTransport` answers in-process for unit tests of the dispatcher
and the stream session. Every failure is an :class:`~spillgate.http.client.UpstreamFailure`.
"""

from __future__ import annotations

from typing import Protocol


class Reply(Protocol):
    """An upstream response whose headers are in; the body is read on demand."""

    status: int
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first header named ``name`` (lower case), else ``None``."""
        ...

    async def next_chunk(self, idle_timeout: float) -> bytes | None:
        """The next body bytes as they arrive (``None`` at the end); a silence of
        ``idle_timeout`` seconds raises ``UpstreamFailure(IDLE_TIMEOUT)``."""
        ...

    async def read(self, timeout: float, limit: int | None = None) -> bytes:
        """The whole body within ``timeout`` seconds and ``limit`` bytes."""
        ...

    def finish(self) -> None:
        """Done with the body (the connection is kept if the response ended)."""
        ...

    def close(self) -> None:
        """Abandon the response."""
        ...


class Transport(Protocol):
    """Sends requests to one upstream (one provider's base URL)."""

    pool_full: int
    """Requests that found every connection busy for their whole wait (``/metrics``)."""

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
    ) -> Reply:
        """Send a request; return once the response headers are in."""
        ...

    async def close(self) -> None: ...
