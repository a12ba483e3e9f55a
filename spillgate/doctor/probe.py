"""Send one minimal request and capture what came back as a classified :class:`ProbeResult`.

The request goes through the gateway's own pieces: its pooled HTTP client, its upstream headers
(credential, ``anthropic-version``, provider headers), its SSE tracker (a stream counts as
answering at its first content event, as the gateway's commit point does), the error-field
extractor, the ``Retry-After`` / reset-header reader and the one classifier.

Every request is minimal: one short user message and at most
:data:`~spillgate.doctor.target.MAX_OUTPUT_TOKENS` output tokens. An answer's reported usage is kept
(what the probe cost: :mod:`spillgate.doctor.cost`); a stream that answered is read on for a moment
for the usage it reports at its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson

from spillgate import __version__
from spillgate.doctor.target import MAX_OUTPUT_TOKENS
from spillgate.doctor.types import BodyKind, Probe, ProbeResult, Role
from spillgate.gateway.call import transport_signal
from spillgate.gateway.forward import upstream_headers
from spillgate.http.client import FailureKind, HttpClient, UpstreamFailure, UpstreamResponse
from spillgate.protocols.apis import Api
from spillgate.protocols.events import Kind, StreamTracker, parse_event, split_events
from spillgate.protocols.sse import SseSplitter
from spillgate.protocols.usage import from_usage_object
from spillgate.resilience.backoff import retry_after
from spillgate.resilience.classify import Classifier
from spillgate.resilience.extract import error_fields, event_error_fields
from spillgate.resilience.types import ErrorClass, Phase, Signal, Transport

PROMPT = "Reply with the single word OK."
USAGE_WAIT = 2.0
"""Seconds a stream that answered is read on for the usage it reports at its end (a probe's answer
is a few tokens: it has usually ended by then); what has not come by then is not waited for."""
CONNECT_TIMEOUT = 10.0
"""Connecting never waits longer than this (or the probe's timeout, when shorter)."""
_ERROR_BODY_LIMIT = 64 * 1024
_LISTED_LIMIT = 500

_KEPT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "x-spillgate-")
_KEPT_NAMES = frozenset(
    {
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "content-type",
        "server",
        "via",
        "x-request-id",
        "request-id",
        "cf-ray",
        "deprecation",
    }
)


def token_limit_field(api: Api, model: str) -> str:
    """The output-limit field a minimal request uses (OpenAI reasoning models reject ``max_tokens``)."""
    return api.adapter.token_limit_field(model)


def request_body(probe: Probe) -> bytes:
    """The smallest request that makes the model answer: one short user message, a few tokens."""
    if probe.role is Role.LIST:
        return b""
    return orjson.dumps(probe.api.adapter.probe_body(probe.model, PROMPT, MAX_OUTPUT_TOKENS, probe.stream))


def request_headers(probe: Probe) -> list[tuple[str, str]]:
    """The endpoint's credential and provider headers, as the gateway sends them upstream."""
    sent = {"user-agent": f"spillgate-doctor/{__version__}"}
    if probe.role is not Role.LIST:
        sent["content-type"] = "application/json"
        sent["accept"] = "text/event-stream" if probe.stream else "application/json"
    endpoint = probe.endpoint
    return upstream_headers(sent, endpoint.provider, endpoint.account)


def body_kind(body: bytes, content_type: str | None) -> BodyKind:
    """JSON, SSE, HTML, other text or nothing: tells an API's error from a proxy's page."""
    stripped = body.strip()
    if not stripped:
        return BodyKind.EMPTY
    if stripped[:1] in (b"{", b"["):
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
        else:
            return BodyKind.JSON
    if stripped.startswith((b"event:", b"data:")):
        return BodyKind.SSE
    if stripped.startswith(b"<") or (content_type or "").lower().startswith("text/html"):
        return BodyKind.HTML
    return BodyKind.TEXT


def kept_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The response headers worth showing: rate limits and resets, Spillgate's, who answered."""
    return tuple(
        (name, value) for name, value in headers if name in _KEPT_NAMES or name.startswith(_KEPT_PREFIXES)
    )


def listed_models(body: bytes) -> tuple[str, ...]:
    """The ids of an OpenAI or Anthropic model listing (``{"data": [{"id": ...}]}``)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ()
    data = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(data, list):
        return ()
    names = [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]
    return tuple(names[:_LISTED_LIMIT])


async def send(probe: Probe, client: HttpClient, *, timeout: float, classifier: Classifier) -> ProbeResult:
    """Send ``probe`` and read its answer within ``timeout`` seconds; never raises for a bad answer."""
    clock = time.perf_counter()
    deadline = clock + timeout
    try:
        async with asyncio.timeout(timeout):  # connecting and waiting for the headers, together
            response = await client.request(
                probe.method,
                probe.path,
                request_headers(probe),
                request_body(probe),
                connect_timeout=min(timeout, CONNECT_TIMEOUT),
                first_byte_timeout=timeout,
            )
    except TimeoutError:
        silent = UpstreamFailure(FailureKind.FIRST_BYTE_TIMEOUT, f"no response headers within {timeout:g}s")
        return _transport_failure(probe, silent, Phase.BEFORE_HEADERS, None, (), clock, classifier)
    except UpstreamFailure as failure:
        return _transport_failure(probe, failure, Phase.BEFORE_HEADERS, None, (), clock, classifier)
    kept = kept_headers(response.headers)
    try:
        if not 200 <= response.status < 300:
            body = await _read_capped(response, deadline)
            return _http_failure(probe, response, body, kept, clock, classifier)
        content_type = response.header("content-type") or ""
        if probe.stream and content_type.startswith("text/event-stream"):
            return await _read_stream(probe, response, kept, clock, deadline, classifier)
        body = await response.read(max(deadline - time.perf_counter(), 0.001))
        return _answer(probe, response, body, kept, clock, classifier)
    except UpstreamFailure as failure:
        return _transport_failure(
            probe, failure, Phase.BEFORE_CONTENT, response.status, kept, clock, classifier
        )
    finally:
        response.close()


# -- reading ---------------------------------------------------------------------------------


async def _read_capped(response: UpstreamResponse, deadline: float) -> bytes:
    """An error body, up to a size limit; whatever arrived when time runs out (the status says enough)."""
    parts: list[bytes] = []
    size = 0
    try:
        while size <= _ERROR_BODY_LIMIT:
            chunk = await response.next_chunk(max(deadline - time.perf_counter(), 0.001))
            if chunk is None:
                break
            parts.append(chunk)
            size += len(chunk)
    except UpstreamFailure:
        pass
    return b"".join(parts)


async def _read_stream(
    probe: Probe,
    response: UpstreamResponse,
    kept: tuple[tuple[str, str], ...],
    clock: float,
    deadline: float,
    classifier: Classifier,
) -> ProbeResult:
    """Read a stream up to its first content event (the gateway's commit point) or its failure."""
    tracker = StreamTracker(probe.api)
    splitter = SseSplitter()
    while True:
        remaining = deadline - time.perf_counter()
        try:
            if remaining <= 0:
                raise UpstreamFailure(FailureKind.IDLE_TIMEOUT, "")
            chunk = await response.next_chunk(remaining)
        except UpstreamFailure as failure:
            if failure.kind is not FailureKind.IDLE_TIMEOUT:
                raise
            waited = time.perf_counter() - clock
            signal = Signal(
                phase=Phase.BEFORE_CONTENT,
                status=response.status,
                transport=Transport.FIRST_CONTENT_TIMEOUT,
                message=f"the stream started but sent no content within {waited:.0f}s",
            )
            return _classified(probe, signal, clock, classifier, kept=kept, body=BodyKind.SSE)
        if chunk is None:
            signal = Signal(
                phase=Phase.BEFORE_CONTENT,
                status=response.status,
                transport=Transport.RESET,
                message="the stream ended before any content",
            )
            return _classified(probe, signal, clock, classifier, kept=kept, body=BodyKind.SSE)
        blob = splitter.feed(chunk)
        if not blob:
            continue
        events = split_events(blob)
        for index, raw in enumerate(events):
            event = parse_event(raw)
            kind = tracker.observe(event)
            if kind is Kind.ERROR:
                fields = event_error_fields(event.name, event.data) or error_fields(event.data)
                signal = fields.signal(
                    Phase.BEFORE_CONTENT, response.status, in_stream=True, headers=dict(response.headers)
                )
                return _classified(
                    probe, signal, clock, classifier, kept=kept, body=BodyKind.SSE, retry=fields.retry_hint
                )
            if kind in (Kind.CONTENT, Kind.TERMINAL):
                elapsed = time.perf_counter() - clock
                if kind is Kind.CONTENT and not _ended(tracker, events[index + 1 :]):
                    until = min(deadline, time.perf_counter() + USAGE_WAIT)
                    await _read_tail(tracker, splitter, response, until)
                return ProbeResult(
                    probe,
                    response.status,
                    elapsed,
                    body_kind=BodyKind.SSE,
                    headers=kept,
                    first_content=elapsed,
                    usage=tracker.usage,
                )


def _ended(tracker: StreamTracker, events: Sequence[bytes]) -> bool:
    """Observe ``events`` (the rest of a blob); whether the stream ended in them (normally or not)."""
    return any(tracker.observe(parse_event(raw)) in (Kind.TERMINAL, Kind.ERROR) for raw in events)


async def _read_tail(
    tracker: StreamTracker, splitter: SseSplitter, response: UpstreamResponse, until: float
) -> None:
    """The rest of a stream that answered, for the usage it reports at its end: until its end, a
    failure (the verdict is in already) or ``until``."""
    try:
        while (remaining := until - time.perf_counter()) > 0:
            chunk = await response.next_chunk(remaining)
            if chunk is None:
                return
            blob = splitter.feed(chunk)
            if blob and _ended(tracker, split_events(blob)):
                return
    except UpstreamFailure:
        return


# -- results -----------------------------------------------------------------------------------


def _answer(
    probe: Probe,
    response: UpstreamResponse,
    body: bytes,
    kept: tuple[tuple[str, str], ...],
    clock: float,
    classifier: Classifier,
) -> ProbeResult:
    """A 2xx: an answer, a listing, or (from some proxies) an error dressed as a success."""
    kind = body_kind(body, response.header("content-type"))
    latency = time.perf_counter() - clock
    if kind is not BodyKind.JSON:
        signal = Signal(
            phase=Phase.BEFORE_CONTENT,
            status=response.status,
            transport=Transport.MALFORMED,
            message=f"answered {response.status} with {kind.value} instead of JSON: "
            + error_fields(body).message[:120],
        )
        return _classified(probe, signal, clock, classifier, kept=kept, body=kind)
    parsed: object = orjson.loads(body)
    if isinstance(parsed, dict) and parsed.get("error") not in (None, "", {}):
        return _http_failure(probe, response, body, kept, clock, classifier)
    if probe.role is Role.LIST:
        return ProbeResult(
            probe, response.status, latency, body_kind=kind, headers=kept, models=listed_models(body)
        )
    usage = from_usage_object(probe.api, parsed.get("usage")) if isinstance(parsed, dict) else None
    return ProbeResult(probe, response.status, latency, body_kind=kind, headers=kept, usage=usage)


def _http_failure(
    probe: Probe,
    response: UpstreamResponse,
    body: bytes,
    kept: tuple[tuple[str, str], ...],
    clock: float,
    classifier: Classifier,
) -> ProbeResult:
    fields = error_fields(body)
    headers = dict(response.headers)
    signal = fields.signal(Phase.BEFORE_CONTENT, response.status, headers=headers)
    announced = retry_after(headers)
    return _classified(
        probe,
        signal,
        clock,
        classifier,
        kept=kept,
        body=body_kind(body, response.header("content-type")),
        retry=announced if announced is not None else fields.retry_hint,
    )


def _transport_failure(
    probe: Probe,
    failure: UpstreamFailure,
    phase: Phase,
    status: int | None,
    kept: tuple[tuple[str, str], ...],
    clock: float,
    classifier: Classifier,
) -> ProbeResult:
    signal = transport_signal(failure, phase)
    if status is not None:
        signal = Signal(phase=phase, status=status, transport=signal.transport, message=signal.message)
    return _classified(probe, signal, clock, classifier, kept=kept)


def _classified(
    probe: Probe,
    signal: Signal,
    clock: float,
    classifier: Classifier,
    *,
    kept: tuple[tuple[str, str], ...] = (),
    body: BodyKind = BodyKind.EMPTY,
    retry: float | None = None,
) -> ProbeResult:
    verdict = classifier.classify(signal)
    error_class, rule = verdict.error_class, verdict.rule
    # Spillgate's own final errors name the class of what the upstreams said: take its word.
    told = dict(kept).get("x-spillgate-error-class")
    if told is not None and told in _ERROR_CLASSES:
        error_class, rule = ErrorClass(told), "spillgate.x-spillgate-error-class"
    return ProbeResult(
        probe,
        signal.status,
        time.perf_counter() - clock,
        error_class=error_class,
        rule=rule,
        error_type=signal.error_type,
        error_code=signal.error_code,
        message=_redact(signal.message, probe),
        transport=signal.transport,
        in_stream=signal.in_stream,
        body_kind=body,
        retry_after=retry,
        headers=kept,
    )


_ERROR_CLASSES = frozenset(c.value for c in ErrorClass)


def _redact(text: str, probe: Probe) -> str:
    """The message without the probe's own key in it (some proxies echo the key they rejected)."""
    secret = probe.endpoint.secret
    key = secret.reveal() if secret is not None else ""
    if len(key) >= 4 and key in text:
        return text.replace(key, probe.endpoint.key_hint or "…")
    return text
