"""The usage store's typed records (what is written) and rows (what the queries return)."""

from __future__ import annotations

from dataclasses import dataclass

from spillgate.observe.events import AttemptFinished, RequestFinished


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One client request, as it ended."""

    time: float
    """Unix time (seconds) the request arrived."""
    request_id: str
    client_key: str | None = None
    """The client key's *name* from the configuration, never the key itself."""
    client_app: str | None = None
    """The client's user agent, or Codex's ``originator``."""
    session: str | None = None
    public_model: str
    route: str | None = None
    """The route that answered, if any."""
    account: str | None = None
    upstream_model: str | None = None
    api: str
    """The client's protocol (``openai-chat``, ``openai-responses``, ``anthropic-messages``)."""
    stream: bool
    status: int
    error_class: str | None = None
    attempts: int
    latency_ms: float
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    recovered: str | None = None
    """After a mid-stream failure: ``continuation``, ``replay`` or ``in_band_error``."""

    @property
    def failed(self) -> bool:
        """What the store counts as an error: an error class, or an HTTP status >= 400."""
        return self.error_class is not None or self.status >= 400

    @classmethod
    def from_event(cls, event: RequestFinished, *, time: float) -> RequestRecord:
        return cls(
            time=time,
            request_id=event.request_id,
            client_key=event.client_key,
            client_app=event.client_app,
            session=event.session,
            public_model=event.public_model,
            route=event.route,
            account=event.account,
            upstream_model=event.upstream_model,
            api=event.api,
            stream=event.stream,
            status=event.status,
            error_class=event.error_class,
            attempts=event.attempts,
            latency_ms=event.latency * 1000.0,
            ttft_ms=None if event.first_token is None else event.first_token * 1000.0,
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cached_tokens=event.cached_tokens,
            recovered=event.recovered,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One upstream attempt of a request (``attempt`` is 1 for the first)."""

    time: float
    """Unix time (seconds) the attempt was sent."""
    request_id: str
    attempt: int
    route: str
    provider: str
    account: str | None = None
    upstream_model: str
    ok: bool
    status: int | None = None
    error_class: str | None = None
    scope: str | None = None
    rule: str | None = None
    phase: str | None = None
    kind: str = "attempt"
    """``attempt``, ``retry``, ``failover``, ``probe``, ``continuation`` or ``replay``."""
    latency_ms: float
    first_byte_ms: float | None = None

    @classmethod
    def from_event(cls, event: AttemptFinished, *, time: float) -> AttemptRecord:
        return cls(
            time=time,
            request_id=event.request_id,
            attempt=event.attempt,
            route=event.route,
            provider=event.provider,
            account=event.account,
            upstream_model=event.upstream_model,
            ok=event.ok,
            status=event.status,
            error_class=event.error_class,
            scope=event.scope,
            rule=event.rule,
            phase=event.phase,
            kind=event.kind,
            latency_ms=event.latency * 1000.0,
            first_byte_ms=None if event.first_byte is None else event.first_byte * 1000.0,
        )


Record = RequestRecord | AttemptRecord

StampedEvent = tuple[float, AttemptFinished | RequestFinished]
"""An event and the unix time it was observed (when the request or attempt ended)."""

Pending = RequestRecord | AttemptRecord | StampedEvent
"""What the recorder buffers. Events are turned into records on the store's thread, not on the
event loop: the loop only pairs the event with the time."""


def as_record(item: Pending) -> Record:
    if not isinstance(item, tuple):
        return item
    ended, event = item
    if isinstance(event, RequestFinished):
        return RequestRecord.from_event(event, time=ended - event.latency)
    return AttemptRecord.from_event(event, time=ended - event.latency)


REQUEST_COLUMNS: tuple[str, ...] = tuple(RequestRecord.__dataclass_fields__)
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(AttemptRecord.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one group (``key`` is None for requests without that attribute)."""

    key: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    avg_latency_ms: float
    p50_latency_ms: float
    """Nearest-rank median (the lower middle value for an even count)."""


@dataclass(frozen=True, slots=True)
class MinuteRow:
    """Requests and errors of one model in one time bucket starting at ``start`` (unix seconds)."""

    start: int
    public_model: str
    requests: int
    errors: int
