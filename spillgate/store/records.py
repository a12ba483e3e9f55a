"""The usage store's typed records (what is written) and rows (what the queries return)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    """After a mid-stream failure: ``continuation``, ``replay`` or ``in_band_error``
    (``not_replayable``: an in-band error because the stream had passed ``limits.max_replay_text``)."""
    upstream_api: str | None = None
    """The API the answering attempt spoke upstream (``api`` when native; another when translated)."""
    cost_usd: float | None = None
    """The sum of the attempts' costs (``None``: some billed attempt's price is unknown, or pricing off)."""
    wasted_usd: float | None = None
    """The part of ``cost_usd`` the client got nothing from (a cut stream's replayed part…)."""
    cost_estimated: bool = False
    """Some attempt's tokens were estimated (a cut stream has no usage report)."""

    @property
    def failed(self) -> bool:
        """What the store counts as an error: an error class, or an HTTP status >= 400."""
        return self.error_class is not None or self.status >= 400

    @classmethod
    def from_event(cls, event: RequestFinished, *, time: float) -> RequestRecord:
        row = request_row(time, functools.partial(getattr, event))
        return cls(**dict(zip(REQUEST_COLUMNS, row, strict=True)))


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
    api: str | None = None
    """The client's API."""
    upstream_api: str | None = None
    """The API the attempt spoke upstream."""
    omitted: str | None = None
    """What a translated request could not give the upstream (``; ``-separated)."""
    input_tokens: int | None = None
    """This attempt's own tokens (input counts cache reads and writes too)."""
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    """0.0: not billed (failed before any output); ``None``: price unknown or pricing off."""
    wasted_usd: float | None = None
    estimated: bool = False
    """Tokens estimated: a cut stream has no usage report."""
    stream_ms: float | None = None
    """How long a committed stream ran after its commit point."""

    @classmethod
    def from_event(cls, event: AttemptFinished, *, time: float) -> AttemptRecord:
        row = attempt_row(time, functools.partial(getattr, event))
        return cls(**dict(zip(ATTEMPT_COLUMNS, row, strict=True)))


Record = RequestRecord | AttemptRecord

REQUEST_COLUMNS: tuple[str, ...] = tuple(RequestRecord.__dataclass_fields__)
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(AttemptRecord.__dataclass_fields__)

Field = Callable[[str], Any]
"""Reads one field of an event by name: from the event object, or from its JSON in the writer."""


def request_row(time: float, f: Field) -> tuple[Any, ...]:
    """The ``requests`` row (:data:`REQUEST_COLUMNS` order) of a :class:`RequestFinished`: the one
    place that maps the event to the table."""
    first = f("first_token")
    return (
        time,
        f("request_id"),
        f("client_key"),
        f("client_app"),
        f("session"),
        f("public_model"),
        f("route"),
        f("account"),
        f("upstream_model"),
        f("api"),
        f("stream"),
        f("status"),
        f("error_class"),
        f("attempts"),
        f("latency") * 1000.0,
        None if first is None else first * 1000.0,
        f("input_tokens"),
        f("output_tokens"),
        f("cached_tokens"),
        f("recovered"),
        f("upstream_api"),
        f("cost_usd"),
        f("wasted_usd"),
        f("cost_estimated"),
    )


def attempt_row(time: float, f: Field) -> tuple[Any, ...]:
    """The ``attempts`` row (:data:`ATTEMPT_COLUMNS` order) of an :class:`AttemptFinished`."""
    first = f("first_byte")
    streamed = f("streamed")
    return (
        time,
        f("request_id"),
        f("attempt"),
        f("route"),
        f("provider"),
        f("account"),
        f("upstream_model"),
        f("ok"),
        f("status"),
        f("error_class"),
        f("scope"),
        f("rule"),
        f("phase"),
        f("kind"),
        f("latency") * 1000.0,
        None if first is None else first * 1000.0,
        f("api"),
        f("upstream_api"),
        f("omitted"),
        f("input_tokens"),
        f("output_tokens"),
        f("cached_tokens"),
        f("cache_write_tokens"),
        f("cost_usd"),
        f("wasted_usd"),
        f("estimated"),
        None if streamed is None else streamed * 1000.0,
    )


StampedEvent = tuple[float, AttemptFinished | RequestFinished]
"""An event and the unix time it was observed (when the request or attempt ended)."""

Pending = RequestRecord | AttemptRecord | StampedEvent | bytes
"""What the recorder buffers: records, stamped events, or either encoded by ``spillgate.store.wire``
(what the gateway's usage observer submits). Rows are made off the event loop."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one group (``key`` is None for requests without that attribute)."""

    key: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    """The sum of the known costs."""
    wasted_usd: float
    unpriced: int
    """Requests with tokens but no known cost (left out of ``cost_usd``)."""
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
