"""Run one attempt against its upstream; the result is an Outcome (data), never an exception.

A streamed attempt is read up to its first content event (the commit point): everything
before that is held back, so a failure there can still be retried or failed over
invisibly. The caller decides what to do with the Outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from spillgate.config.schema import Limits
from spillgate.http.client import FailureKind, UpstreamFailure
from spillgate.http.transport import Reply
from spillgate.http.transport import Transport as Upstream
from spillgate.protocols.events import Kind, StreamTracker, parse_event, split_events
from spillgate.protocols.request import ParsedRequest
from spillgate.protocols.sse import EventTooLarge, SseSplitter
from spillgate.protocols.translate.codec import Malformed
from spillgate.protocols.translate.translator import AnswerTranslator
from spillgate.resilience.extract import error_fields, event_error_fields
from spillgate.resilience.types import Phase, Signal, Transport, Verdict

from .attempt import Attempt
from .translation import TranslatedReply

log = logging.getLogger("spillgate.dispatch")

_LIMITS = Limits()

_ERROR_BODY_LIMIT = 1 << 20
_ERROR_BODY_TIMEOUT = 10.0

_TRANSPORT = {
    FailureKind.CONNECT: Transport.CONNECT,
    FailureKind.CONNECT_TIMEOUT: Transport.CONNECT_TIMEOUT,
    FailureKind.RESET: Transport.RESET,
    FailureKind.FIRST_BYTE_TIMEOUT: Transport.FIRST_BYTE_TIMEOUT,
    FailureKind.IDLE_TIMEOUT: Transport.IDLE_TIMEOUT,
    FailureKind.TOTAL_TIMEOUT: Transport.TOTAL_TIMEOUT,
    FailureKind.PROTOCOL: Transport.MALFORMED,
    FailureKind.SILENT_CLOSE: Transport.SILENT_CLOSE,
    FailureKind.POOL_FULL: Transport.POOL_FULL,
}


@dataclass(slots=True)
class Committed:
    """A stream read up to its commit point and still open: the live part of a streamed attempt,
    owned by whoever relays it (the stream session)."""

    response: Reply
    """Positioned after ``pending``."""
    pending: list[bytes]
    """The stream's events up to and including its first content event."""
    leftover: list[bytes]
    """Events read in the same chunk after the commit event, not yet looked at."""
    tracker: StreamTracker
    splitter: SseSplitter
    probes: tuple[str, ...] = ()
    """Half-open probes the stream holds until it ends (success or failure)."""
    settled: bool = False
    """Its outcome was reported to the health board."""
    on_close: Callable[[], None] | None = None
    """Called once when the upstream response is done with."""
    number: int = 0
    """The attempt's number in its request, for its report when the stream ends
    (``AttemptService.report_streams``)."""
    kind: str = "attempt"
    omitted: tuple[str, ...] = ()
    committed_at: float = 0.0
    """The runtime clock's time the attempt reached its commit point."""

    def close(self) -> None:
        """Done with the upstream response (kept alive if it ended); run ``on_close`` once."""
        self.response.finish()
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to (data, never an exception); immutable. A judged failure is a new
    Outcome with its ``verdict`` (and its redacted signal and body)."""

    attempt: Attempt
    ok: bool
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    """A non-streamed body (success or error), or a streamed request's error body."""
    signal: Signal | None = None
    """What went wrong, for the classifier."""
    retry_in: float | None = None
    """Seconds the upstream asked us to wait (Retry-After, reset headers, the message)."""
    stream: Committed | None = None
    """A stream ready to commit (``ok`` streamed attempts only)."""
    first_byte: float | None = None
    latency: float = 0.0
    malformed: int = 0
    payload: dict[str, Any] | None = None
    """A non-streamed success's decoded body."""
    verdict: Verdict | None = None
    """Set (by judging) when the attempt failed."""

    def signal_message(self) -> str:
        return self.signal.message if self.signal is not None else ""


@dataclass(slots=True)
class _Draft:
    """An attempt's outcome while it is being read."""

    attempt: Attempt
    ok: bool = False
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    signal: Signal | None = None
    retry_in: float | None = None
    stream: Committed | None = None
    first_byte: float | None = None
    latency: float = 0.0
    malformed: int = 0
    payload: dict[str, Any] | None = None

    def freeze(self) -> Outcome:
        return Outcome(
            attempt=self.attempt,
            ok=self.ok,
            status=self.status,
            headers=self.headers,
            body=self.body,
            signal=self.signal,
            retry_in=self.retry_in,
            stream=self.stream,
            first_byte=self.first_byte,
            latency=self.latency,
            malformed=self.malformed,
            payload=self.payload,
        )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def transport_signal(failure: UpstreamFailure, phase: Phase) -> Signal:
    return Signal(phase=phase, transport=_TRANSPORT[failure.kind], message=failure.message)


async def call(
    attempt: Attempt,
    parsed: ParsedRequest,
    body: bytes,
    headers: list[tuple[str, str]],
    client: Upstream,
    bound: float | None = None,
    limits: Limits = _LIMITS,
    *,
    answers: AnswerTranslator | None = None,
    on_malformed: Callable[[int], None] = lambda n: None,
) -> Outcome:
    """``bound``: the longest this try may wait for response headers and for its first content
    event, so that a failover can still start in time (``None``: the route's timeouts alone).
    ``limits``: the stream's event size and kept replay text. ``answers``: a translated
    attempt's answers, turned into the client's API here (the outcome, its stream included, is
    the client's from then on); ``on_malformed`` counts the upstream events it could not read."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    clock = time.perf_counter()  # uvloop's loop.time() has millisecond resolution
    timeouts = attempt.timeouts
    outcome = _Draft(attempt)
    header_wait = timeouts.first_byte if parsed.stream else timeouts.total
    first_token = timeouts.first_token
    if bound is not None:
        header_wait, first_token = min(header_wait, bound), min(first_token, bound)
    try:
        response: Reply = await client.request(
            "POST",
            attempt.api.upstream_suffix,
            headers,
            body,
            connect_timeout=min(timeouts.connect, header_wait),
            first_byte_timeout=header_wait,
        )
    except UpstreamFailure as failure:
        outcome.signal = transport_signal(failure, Phase.BEFORE_HEADERS)
        outcome.latency = time.perf_counter() - clock
        return outcome.freeze()
    outcome.first_byte = time.perf_counter() - clock
    outcome.status = response.status
    outcome.headers = response.headers
    try:
        if not 200 <= response.status < 300:
            await _read_error(outcome, response)
        elif parsed.stream and (response.header("content-type") or "").startswith("text/event-stream"):
            if answers is not None:
                response = TranslatedReply(response, answers.stream(limits.max_event_bytes), on_malformed)
            await _read_to_commit(outcome, response, parsed, started, started + first_token, limits)
        else:
            remaining = max(timeouts.total - (loop.time() - started), 0.001)
            outcome.body = await response.read(remaining)
            if answers is not None:
                outcome.body = _translated_body(outcome, answers)
            outcome.payload = _json_object(outcome.body)
            if outcome.payload is None:
                # Nothing a client could use: a failure like any other, so the next route answers.
                outcome.signal = Signal(
                    phase=Phase.BEFORE_CONTENT,
                    status=response.status,
                    transport=Transport.MALFORMED,
                    message=f"the upstream's {response.status} body is not a JSON object "
                    f"({len(outcome.body)} bytes)",
                )
            else:
                outcome.ok = True
    except UpstreamFailure as failure:
        phase = Phase.BEFORE_CONTENT
        outcome.signal = transport_signal(failure, phase)
        outcome.ok = False
    finally:
        if outcome.stream is None:
            response.close()
        outcome.latency = time.perf_counter() - clock
    return outcome.freeze()


def _translated_body(outcome: _Draft, answers: AnswerTranslator) -> bytes:
    """A translated attempt's whole answer in the client's API (``b""`` when it cannot be read:
    then it fails like any body that is not JSON)."""
    try:
        return answers.response(outcome.body)
    except Malformed as exc:
        log.warning("a translated answer could not be read: %s", str(exc)[:200])
        return b""


async def _read_error(outcome: _Draft, response: Reply) -> None:
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(_ERROR_BODY_TIMEOUT):
            while (chunk := await response.next_chunk(_ERROR_BODY_TIMEOUT)) is not None:
                parts.append(chunk)
                size += len(chunk)
                if size > _ERROR_BODY_LIMIT:
                    break
    except (UpstreamFailure, TimeoutError):
        pass  # the status says enough
    outcome.body = b"".join(parts)
    fields = error_fields(outcome.body)
    headers = dict(response.headers)
    outcome.signal = fields.signal(Phase.BEFORE_CONTENT, response.status, headers=headers)
    outcome.retry_in = _retry_in(headers, fields.retry_hint)


def _retry_in(headers: dict[str, str], hint: float | None) -> float | None:
    from spillgate.resilience.backoff import retry_after

    announced = retry_after(headers)
    return announced if announced is not None else hint


async def _read_to_commit(
    outcome: _Draft,
    response: Reply,
    parsed: ParsedRequest,
    started: float,
    deadline: float,
    limits: Limits,
) -> None:
    loop = asyncio.get_running_loop()
    tracker = StreamTracker(parsed.api, replay_limit=limits.max_replay_text)
    splitter = SseSplitter(limits.max_event_bytes)
    pending: list[bytes] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UpstreamFailure(FailureKind.FIRST_BYTE_TIMEOUT, "no content from upstream in time")
        try:
            chunk = await response.next_chunk(remaining)
        except UpstreamFailure as failure:
            if failure.kind is FailureKind.IDLE_TIMEOUT:
                outcome.signal = Signal(
                    phase=Phase.BEFORE_CONTENT,
                    transport=Transport.FIRST_CONTENT_TIMEOUT,
                    message=f"no content from upstream within {deadline - started:.3g}s",
                )
                return
            raise
        if chunk is None:
            outcome.signal = Signal(
                phase=Phase.BEFORE_CONTENT,
                transport=Transport.RESET,
                message="the upstream stream ended before any content",
            )
            return
        try:
            blob = splitter.feed(chunk)
        except EventTooLarge as exc:
            raise UpstreamFailure(FailureKind.PROTOCOL, str(exc)) from None
        if not blob:
            continue
        events = split_events(blob)
        for i, raw in enumerate(events):
            event = parse_event(raw)
            kind = tracker.observe(event)
            if kind is Kind.MALFORMED:
                outcome.malformed += 1
                continue
            if kind is Kind.ERROR:
                fields = event_error_fields(event.name, event.data)
                if fields is None:
                    fields = error_fields(event.data)
                outcome.signal = fields.signal(
                    Phase.BEFORE_CONTENT, response.status, in_stream=True, headers=dict(response.headers)
                )
                outcome.retry_in = fields.retry_hint
                return
            pending.append(raw)
            if kind in (Kind.CONTENT, Kind.TERMINAL):
                outcome.stream = Committed(response, pending, events[i + 1 :], tracker, splitter)
                outcome.ok = True
                return
