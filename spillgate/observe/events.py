"""Typed events. Observers are called in order; a failing observer is logged, never propagated."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("spillgate.events")


RECOVERY_KINDS = frozenset({"continuation", "replay"})
"""The attempt kinds that finish a stream another attempt started (``AttemptFinished.kind``)."""
IN_BAND_ENDINGS = frozenset({"in_band_error", "not_replayable"})
"""How a request ends whose client got an error inside its stream (``RequestFinished.recovered``)."""


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    request_id: str
    attempt: int
    """1 for the first attempt of the request."""
    api: str
    public_model: str
    route: str
    provider: str
    account: str | None
    upstream_model: str
    stream: bool
    ok: bool
    status: int | None
    error_class: str | None
    scope: str | None
    rule: str | None
    phase: str | None
    latency: float
    """Seconds from sending the attempt to its outcome."""
    first_byte: float | None
    kind: str = "attempt"
    """``attempt``, ``retry`` (same route), ``failover``, ``probe``, ``continuation`` or ``replay``."""
    upstream_api: str | None = None
    """The API the attempt spoke upstream (``api`` when native; another when translated)."""
    omitted: str | None = None
    """What a translated request could not give the upstream (hosted tools…), ``; ``-separated."""
    input_tokens: int | None = None
    """Tokens the upstream reported (or, ``estimated``, that were guessed) for this attempt alone, in
    the price book's convention: input counts cache reads and writes too."""
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    cost_usd: float | None = None
    """What the attempt cost: 0.0 when the upstream bills nothing for it (a refusal before any
    output); ``None`` when its price is unknown or pricing is off."""
    wasted_usd: float | None = None
    """The part of ``cost_usd`` the client got nothing from (:mod:`spillgate.pricing.waste`)."""
    estimated: bool = False
    """The tokens are an estimate (a cut stream has no usage report)."""
    streamed: float | None = None
    """Seconds a committed stream ran after ``latency`` (its commit point) until it ended."""


@dataclass(frozen=True, slots=True)
class RequestFinished:
    request_id: str
    api: str
    public_model: str
    client_key: str | None
    stream: bool
    ok: bool
    status: int
    attempts: int
    route: str | None
    """The route that answered, if any."""
    account: str | None
    upstream_model: str | None
    error_class: str | None
    latency: float
    first_token: float | None
    recovered: str | None = None
    """After a mid-stream failure: ``continuation``, ``replay`` or ``in_band_error``
    (``not_replayable``: an in-band error because the stream had passed ``limits.max_replay_text``)."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    session: str | None = None
    client_app: str | None = None
    """The client's user agent, or Codex's ``originator``."""
    fingerprint: int | None = None
    """A checksum of the request body: the same body again (a client replaying a turn) has the same one."""
    upstream_api: str | None = None
    """The API the answering attempt spoke upstream."""
    cost_usd: float | None = None
    """The sum of the attempts' costs; ``None`` when some billed attempt's price is unknown (or
    pricing is off)."""
    wasted_usd: float | None = None
    """The sum of the attempts' wasted costs (``None`` as ``cost_usd``)."""
    cost_estimated: bool = False
    """Some attempt's tokens were estimated."""


Event = AttemptFinished | RequestFinished
Observer = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self.failures = 0

    def subscribe(self, observer: Observer) -> None:
        """Add ``observer`` (once: subscribing it again changes nothing)."""
        if observer not in self._observers:
            self._observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    @property
    def active(self) -> bool:
        """Whether anyone listens (events need not even be built otherwise)."""
        return bool(self._observers)

    def emit(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                self.failures += 1
                log.exception("event observer %r failed", observer)
