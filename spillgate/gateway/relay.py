"""Send one attempt upstream and relay its answer to the client as it arrives."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from spillgate.config.schema import Account, Provider, Route, Timeouts
from spillgate.http.client import FailureKind, HttpClient, UpstreamFailure, UpstreamResponse
from spillgate.http.server import ResponseWriter
from spillgate.protocols.errors import ErrorKind, GatewayError
from spillgate.protocols.request import ParsedRequest, rewrite_model
from spillgate.protocols.sse import SseSplitter

from .forward import client_headers, upstream_headers

log = logging.getLogger("spillgate.relay")

_TIMEOUT_KINDS = frozenset(
    {FailureKind.CONNECT_TIMEOUT, FailureKind.FIRST_BYTE_TIMEOUT, FailureKind.TOTAL_TIMEOUT}
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a request: a route, the account it uses (if a pool) and where it goes."""

    route: Route
    provider: Provider
    account: Account | None
    upstream_model: str

    @property
    def timeouts(self) -> Timeouts:
        return self.route.timeouts or self.provider.timeouts

    def describe(self) -> str:
        via = f"account {self.account.id}" if self.account else f"provider {self.provider.name}"
        return f"route {self.route.label} ({via}, upstream model {self.upstream_model})"


def _failure_error(attempt: Attempt, failure: UpstreamFailure) -> GatewayError:
    timeout = failure.kind in _TIMEOUT_KINDS
    return GatewayError(
        504 if timeout else 502,
        ErrorKind.UPSTREAM_TIMEOUT if timeout else ErrorKind.UPSTREAM_UNAVAILABLE,
        f"upstream failed on {attempt.describe()}: {failure.message}",
        code="server_error",
        should_retry=True,
    )


async def relay(
    attempt: Attempt,
    parsed: ParsedRequest,
    request_headers: dict[str, str],
    client: HttpClient,
    writer: ResponseWriter,
    extra_headers: list[tuple[str, str]],
) -> int:
    """Forward the request; relay status, headers and body. Returns the upstream status.

    Raises GatewayError when the upstream fails before anything was sent to the client.
    After the stream has started, a failure ends the client connection without a normal
    ending, so a truncated answer never looks complete.
    """
    timeouts = attempt.timeouts
    body = rewrite_model(parsed, attempt.upstream_model)
    headers = upstream_headers(request_headers, attempt.provider, attempt.account)
    wait_headers = timeouts.first_token if parsed.stream else timeouts.total
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        response = await client.request(
            "POST",
            parsed.api.upstream_suffix,
            headers,
            body,
            connect_timeout=timeouts.connect,
            first_byte_timeout=wait_headers,
        )
    except UpstreamFailure as failure:
        raise _failure_error(attempt, failure) from None
    try:
        if not parsed.stream or response.status != 200 or not _is_event_stream(response):
            remaining = max(timeouts.total - (loop.time() - started), 0.001)
            try:
                payload = await response.read(remaining)
            except UpstreamFailure as failure:
                raise _failure_error(attempt, failure) from None
            await writer.send(response.status, client_headers(response.headers) + extra_headers, payload)
            return response.status
        await _relay_stream(attempt, response, writer, extra_headers, timeouts, started)
        return response.status
    finally:
        response.close()


def _is_event_stream(response: UpstreamResponse) -> bool:
    content_type = response.header("content-type") or ""
    return content_type.startswith("text/event-stream")


async def _relay_stream(
    attempt: Attempt,
    response: UpstreamResponse,
    writer: ResponseWriter,
    extra_headers: list[tuple[str, str]],
    timeouts: Timeouts,
    started: float,
) -> None:
    loop = asyncio.get_running_loop()
    splitter = SseSplitter()
    remaining = max(timeouts.first_token - (loop.time() - started), 0.001)
    try:
        first = await response.first_chunk(remaining)
    except UpstreamFailure as failure:
        raise _failure_error(attempt, failure) from None
    writer.start(200, client_headers(response.headers) + extra_headers)
    if first is None:
        await writer.end()
        return
    await writer.write(splitter.feed(first))
    while True:
        try:
            chunk = await response.next_chunk(timeouts.stream_idle)
        except UpstreamFailure as failure:
            log.warning("stream broke after it started on %s: %s", attempt.describe(), failure.message)
            writer.abort()
            return
        if chunk is None:
            await writer.write(splitter.tail())
            await writer.end()
            return
        events = splitter.feed(chunk)
        if events:
            await writer.write(events)
