"""Health per scope: cooldowns and a circuit breaker, one board per gateway process.

A scope is an opaque string key built by :mod:`spillgate.resilience.keys` (``account:oa-1``,
``account:oa-1|gpt-5``, ``provider_model:openai|gpt-5``, ``provider:openai``). Each key is

- closed: requests go through (a healthy key has no entry at all: ``admit`` is a dict lookup);
- open: refused until a time, set by the failure class (capacity and overloaded with short
  cooldowns that double while the condition persists, rate limits and quotas until the
  upstream's reset time, the breaker for counted failures; a timeout trips it at once, since
  every further try of a silent route costs the whole wait);
- half-open: the open period is over and exactly one caller, the probe, is let through; its
  success closes the key, its failure reopens it with the next longer cooldown, counted from
  when the probe started: however long a probe waited (a silent route), probes of a key start at
  most one capped period apart, so a route that recovers is found within about that period;
- disabled: refused until an operator re-enables it (auth failures, ``disable``).

Nothing is admitted while a key is open, so an outcome reported while it is open (before its
time is up) comes from a request admitted before it opened: such a stale success does not
close the key, and a stale failure neither grows the cooldown nor counts as a probe.

Pure logic on an injected clock; not thread-safe (one event loop).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from spillgate.resilience.budget import SlidingCounts
from spillgate.resilience.types import ErrorClass

INF = math.inf

ScopeState = Literal["closed", "open", "half_open", "disabled"]

_REQUEST_SCOPED = frozenset({ErrorClass.CONTEXT_TOO_LONG, ErrorClass.CONTENT_POLICY, ErrorClass.BAD_REQUEST})
_OWN_COOLDOWN = frozenset(
    {
        ErrorClass.CAPACITY,
        ErrorClass.OVERLOADED,
        ErrorClass.RATE_LIMITED,
        ErrorClass.QUOTA_EXHAUSTED,
        ErrorClass.AUTH,
        ErrorClass.NOT_FOUND,
    }
)
"""Classes that open a key at once; every other (non request-scoped) class feeds the breaker."""
_TRIP_AT_ONCE = frozenset({ErrorClass.TIMEOUT})
"""Breaker classes that open the breaker at the first failure: a silent route costs a whole
timeout per try, so it is not tried again before the breaker's cooldown."""

_MAX_EXPONENT = 32


@dataclass(frozen=True, slots=True)
class HealthConfig:
    capacity_cooldown: float = 2.0
    """First cooldown after a capacity error; doubles while it persists."""
    capacity_cooldown_max: float = 20.0
    overloaded_cooldown: float = 5.0
    overloaded_cooldown_max: float = 20.0
    rate_limit_cooldown: float = 10.0
    """When the upstream announced no reset time."""
    quota_cooldown: float = 600.0
    """When the upstream announced no reset time."""
    not_found_cooldown: float = 300.0
    failure_threshold: int = 3
    """Consecutive counted failures (the classes without their own cooldown) that open the breaker."""
    error_rate_threshold: float = 0.5
    """...or this failure share over ``error_rate_window``..."""
    error_rate_window: float = 30.0
    error_rate_min_requests: int = 10
    """...once the window holds at least this many outcomes."""
    breaker_cooldown: float = 5.0
    """First open period of a breaker trip; doubles on each failed probe."""
    breaker_cooldown_max: float = 20.0
    probe_ttl: float = 120.0
    """A probe that never reports is given up after this long and the next caller probes."""
    forget_after: float = 3600.0
    """A key with no outcome (and, if open, past its time) for this long is forgotten."""

    def __post_init__(self) -> None:
        for name in (
            "capacity_cooldown",
            "capacity_cooldown_max",
            "overloaded_cooldown",
            "overloaded_cooldown_max",
            "rate_limit_cooldown",
            "quota_cooldown",
            "not_found_cooldown",
            "error_rate_window",
            "breaker_cooldown",
            "breaker_cooldown_max",
            "probe_ttl",
            "forget_after",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"health.{name} must be >= 0, got {value!r}")
        if self.error_rate_window <= 0:
            raise ValueError("health.error_rate_window must be positive")
        if self.failure_threshold < 1:
            raise ValueError(f"health.failure_threshold must be >= 1, got {self.failure_threshold!r}")
        if not 0 < self.error_rate_threshold <= 1:
            raise ValueError(
                f"health.error_rate_threshold must be in (0, 1], got {self.error_rate_threshold!r}"
            )
        if self.error_rate_min_requests < 1:
            raise ValueError("health.error_rate_min_requests must be >= 1")


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    probe: bool
    """The caller is the single probe of a half-open key: it must report an outcome or
    ``release_probe``."""
    until: float | None
    """When refused: the clock time the key opens again (``inf``: disabled; a time already past:
    half-open with a probe in flight). ``None`` when allowed."""
    reason: str
    error_class: ErrorClass | None = None
    """When refused: the class that opened (or disabled) the key."""


@dataclass(frozen=True, slots=True)
class ScopeSnapshot:
    key: str
    state: ScopeState
    until: float | None
    """Seconds until the key may be tried again: ``None`` closed, 0 half-open, ``inf`` disabled."""
    reason: str
    last_error: ErrorClass | None
    consecutive_failures: int
    opens: int
    """How many times the key opened (or was disabled) since it was last healthy."""
    probe_in_flight: bool


@dataclass(frozen=True, slots=True)
class SharedScope:
    """What a shared store tells the other instances about an open or disabled key (a closed key
    is ``None``): everything that decides admissions and the next cooldown's length, with times
    relative to "now" so that it carries across processes and machines."""

    disabled: bool
    until_in: float
    """Seconds from now until the key may be probed (``inf`` when disabled)."""
    reason: str
    opened_by: ErrorClass | None
    opens: int
    streaks: tuple[int, int, int]
    """Capacity, overloaded and breaker streaks: how far each cooldown has doubled."""
    changed_ago: float
    """Seconds since the change: the later change of a key wins."""


class _Mode(Enum):
    CLOSED = "closed"
    OPEN = "open"
    DISABLED = "disabled"


_ALLOWED = Admission(allowed=True, probe=False, until=None, reason="")


class _Entry:
    __slots__ = (
        "breaker_streak",
        "capacity_streak",
        "changed",
        "consecutive",
        "last_error",
        "mode",
        "opened_by",
        "opens",
        "overloaded_streak",
        "probe_at",
        "reason",
        "touched",
        "until",
        "window",
    )

    def __init__(self, window: float) -> None:
        self.mode = _Mode.CLOSED
        self.until = -INF
        self.reason = ""
        self.opened_by: ErrorClass | None = None
        self.last_error: ErrorClass | None = None
        self.probe_at: float | None = None
        self.consecutive = 0
        self.opens = 0
        self.capacity_streak = 0
        self.overloaded_streak = 0
        self.breaker_streak = 0
        self.touched = -INF
        self.changed = -INF
        """When the key last opened, reopened, lengthened or was disabled (the newer change of a
        shared key wins)."""
        self.window = SlidingCounts(window)  # a: outcomes, b: failures


class HealthBoard:
    """Cooldowns and circuit breakers for every scope key of one gateway process."""

    def __init__(
        self, config: HealthConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config if config is not None else HealthConfig()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._next_sweep = -INF
        self.on_change: Callable[[str], None] | None = None
        """Called with a key whenever its state changes here (a shared store publishes it); not
        for changes applied from elsewhere (:meth:`apply`)."""

    def __len__(self) -> int:
        """How many keys hold an entry (every other key is healthy)."""
        return len(self._entries)

    # -- asking ---------------------------------------------------------------------------------

    def admit(self, key: str) -> Admission:
        """May a request use ``key`` now? In half-open, the first caller becomes the probe."""
        entry = self._entries.get(key)
        if entry is None or entry.mode is _Mode.CLOSED:
            return _ALLOWED
        now = self._clock()
        answer = self._answer(entry, now)
        if answer.probe:
            entry.probe_at = now
        return answer

    def peek(self, key: str) -> Admission:
        """What ``admit`` would answer, without claiming the probe."""
        entry = self._entries.get(key)
        if entry is None or entry.mode is _Mode.CLOSED:
            return _ALLOWED
        return self._answer(entry, self._clock())

    def reopens_at(self, key: str) -> float | None:
        """Clock time the key may be tried again: ``None`` when closed, ``inf`` when disabled."""
        entry = self._entries.get(key)
        if entry is None or entry.mode is _Mode.CLOSED:
            return None
        return INF if entry.mode is _Mode.DISABLED else entry.until

    def _answer(self, entry: _Entry, now: float) -> Admission:
        if entry.mode is _Mode.DISABLED:
            return Admission(False, False, INF, entry.reason, entry.opened_by)
        if now < entry.until or self._probe_in_flight(entry, now):
            return Admission(False, False, entry.until, entry.reason, entry.opened_by)
        return Admission(True, True, None, entry.reason)

    def _probe_in_flight(self, entry: _Entry, now: float) -> bool:
        return entry.probe_at is not None and now - entry.probe_at < self.config.probe_ttl

    # -- outcomes -------------------------------------------------------------------------------

    def record_success(self, key: str) -> None:
        """A request on ``key`` succeeded: close it (the probe's success included)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
            entry = self._entries.get(key)
            if entry is None:
                return
        if entry.mode is _Mode.DISABLED:
            return
        if entry.mode is _Mode.OPEN:
            if now < entry.until:
                return  # admitted before the key opened: says nothing about now
            del self._entries[key]  # closed, with a fresh start
            self._changed(key)
            return
        entry.touched = now
        entry.consecutive = 0
        entry.window.add(now, a=1)
        if entry.window.totals(now)[1] == 0:
            del self._entries[key]

    def record_failure(
        self,
        key: str,
        error_class: ErrorClass,
        retry_at: float | None = None,
        reason: str = "",
        trip: bool = False,
    ) -> None:
        """A request on ``key`` failed with ``error_class``.

        ``retry_at`` is the clock time the upstream said to come back (Retry-After, reset
        headers), already converted to this board's clock. ``trip`` opens the breaker at once,
        whatever the class (a stream that broke after it started: the client's retry must not
        land on the same route).
        """
        if error_class in _REQUEST_SCOPED:
            return
        now = self._clock()
        self._maybe_sweep(now)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self.config.error_rate_window)
        entry.touched = now
        entry.last_error = error_class
        entry.consecutive += 1
        entry.window.add(now, a=1, b=1)
        if retry_at is not None and math.isnan(retry_at):
            retry_at = None
        why = reason or error_class.value

        if entry.mode is _Mode.DISABLED:
            return
        changed_before = entry.changed
        self._fail(entry, error_class, now, retry_at, why, trip)
        if entry.changed != changed_before:
            self._changed(key)

    def _fail(
        self, entry: _Entry, error_class: ErrorClass, now: float, retry_at: float | None, why: str, trip: bool
    ) -> None:
        if error_class is ErrorClass.AUTH:
            self._disable(entry, why, error_class)
            return
        if entry.mode is _Mode.OPEN and now < entry.until:
            self._stale_failure(entry, error_class, now, retry_at, why)
            return
        if entry.mode is _Mode.OPEN:  # half-open: the probe (or a straggler) failed
            self._open(entry, error_class, now, retry_at, why)
            return
        if error_class in _OWN_COOLDOWN or error_class in _TRIP_AT_ONCE or trip:
            self._open(entry, error_class, now, retry_at, why)
            return
        if entry.consecutive >= self.config.failure_threshold:
            self._open(entry, error_class, now, retry_at, why)
            return
        outcomes, failures = entry.window.totals(now)
        if (
            outcomes >= self.config.error_rate_min_requests
            and failures >= self.config.error_rate_threshold * outcomes
        ):
            self._open(entry, error_class, now, retry_at, f"error rate {failures}/{outcomes}: {why}")

    def release_probe(self, key: str) -> None:
        """The probe ended without an outcome (client gone): the next caller may probe."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.probe_at = None

    # -- operator -------------------------------------------------------------------------------

    def disable(self, key: str, reason: str) -> None:
        """Refuse ``key`` until ``enable``."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self.config.error_rate_window)
        if entry.mode is _Mode.DISABLED:
            if reason:
                entry.reason, entry.opened_by = reason, None
                entry.changed = self._clock()
        else:
            self._disable(entry, reason or "disabled by an operator")
        self._changed(key)

    def enable(self, key: str) -> None:
        """Forget everything about ``key``: it is closed with a fresh start."""
        if self._entries.pop(key, None) is not None:
            self._changed(key)

    # -- sharing --------------------------------------------------------------------------------

    def held(self) -> list[str]:
        """Every key holding an entry."""
        return list(self._entries)

    def exported(self, key: str) -> SharedScope | None:
        """What another instance needs to know about ``key``; ``None`` when it is closed."""
        entry = self._entries.get(key)
        if entry is None or entry.mode is _Mode.CLOSED:
            return None
        now = self._clock()
        return SharedScope(
            disabled=entry.mode is _Mode.DISABLED,
            until_in=INF if entry.mode is _Mode.DISABLED else entry.until - now,
            reason=entry.reason,
            opened_by=entry.opened_by,
            opens=entry.opens,
            streaks=(entry.capacity_streak, entry.overloaded_streak, entry.breaker_streak),
            changed_ago=now - entry.changed if entry.changed > -INF else INF,
        )

    def apply(self, key: str, scope: SharedScope | None, changed_ago: float = 0.0) -> bool:
        """Take another instance's news about ``key`` (``None``: it closed ``changed_ago`` seconds
        ago), unless this board changed the key later. Whether it was taken."""
        now = self._clock()
        entry = self._entries.get(key)
        changed = now - (scope.changed_ago if scope is not None else changed_ago)
        if entry is not None and entry.changed > changed:
            return False
        if scope is None:
            if entry is not None and entry.mode is not _Mode.CLOSED:
                del self._entries[key]
            return True
        if entry is None:
            entry = self._entries[key] = _Entry(self.config.error_rate_window)
        entry.mode = _Mode.DISABLED if scope.disabled else _Mode.OPEN
        entry.until = INF if scope.disabled else now + scope.until_in
        entry.reason = scope.reason
        entry.opened_by = scope.opened_by
        entry.last_error = entry.last_error or scope.opened_by
        entry.opens = scope.opens
        entry.capacity_streak, entry.overloaded_streak, entry.breaker_streak = scope.streaks
        entry.probe_at = None
        entry.changed = changed
        entry.touched = max(entry.touched, changed)
        return True

    def hold_probe(self, key: str) -> None:
        """Mark ``key``'s probe as in flight without a caller here (another instance holds it):
        nobody here probes it until that probe reports or ``probe_ttl`` passes."""
        entry = self._entries.get(key)
        if entry is not None and entry.mode is _Mode.OPEN:
            entry.probe_at = self._clock()

    def _changed(self, key: str) -> None:
        if self.on_change is not None:
            self.on_change(key)

    def snapshot(self) -> list[ScopeSnapshot]:
        """Every key that is not plainly healthy, sorted by key, for admin pages and metrics."""
        now = self._clock()
        self._sweep(now)
        return [self._snapshot(key, entry, now) for key, entry in sorted(self._entries.items())]

    # -- internals ------------------------------------------------------------------------------

    def _snapshot(self, key: str, entry: _Entry, now: float) -> ScopeSnapshot:
        state: ScopeState
        until: float | None
        if entry.mode is _Mode.CLOSED:
            state, until = "closed", None
        elif entry.mode is _Mode.DISABLED:
            state, until = "disabled", INF
        elif now < entry.until:
            state, until = "open", entry.until - now
        else:
            state, until = "half_open", 0.0
        return ScopeSnapshot(
            key=key,
            state=state,
            until=until,
            reason=entry.reason,
            last_error=entry.last_error,
            consecutive_failures=entry.consecutive,
            opens=entry.opens,
            probe_in_flight=entry.mode is _Mode.OPEN and self._probe_in_flight(entry, now),
        )

    def _disable(self, entry: _Entry, reason: str, error_class: ErrorClass | None = None) -> None:
        entry.mode = _Mode.DISABLED
        entry.opened_by = error_class
        entry.until = INF
        entry.reason = reason
        entry.probe_at = None
        entry.opens += 1
        entry.changed = self._clock()

    def _open(
        self, entry: _Entry, error_class: ErrorClass, now: float, retry_at: float | None, reason: str
    ) -> None:
        """Open (or reopen, after a failed probe) for the next period of the class's schedule.

        The scheduled periods count from when the failed probe started (else from now), so that
        a probe that waited long for a silent upstream does not delay the next one further."""
        cfg = self.config
        announced = retry_at if retry_at is not None else -INF
        start = entry.probe_at if entry.mode is _Mode.OPEN and entry.probe_at is not None else now
        if error_class is ErrorClass.CAPACITY:
            period = _grown(cfg.capacity_cooldown, cfg.capacity_cooldown_max, entry.capacity_streak)
            entry.capacity_streak += 1
            until = max(start + period, announced)
        elif error_class is ErrorClass.OVERLOADED:
            period = _grown(cfg.overloaded_cooldown, cfg.overloaded_cooldown_max, entry.overloaded_streak)
            entry.overloaded_streak += 1
            until = max(start + period, announced)
        elif error_class in _OWN_COOLDOWN:
            until = self._flat_until(error_class, now, retry_at)
        else:
            period = _grown(cfg.breaker_cooldown, cfg.breaker_cooldown_max, entry.breaker_streak)
            entry.breaker_streak += 1
            until = start + period
        entry.mode = _Mode.OPEN
        entry.until = until
        entry.reason = reason
        entry.opened_by = error_class
        entry.probe_at = None
        entry.opens += 1
        entry.changed = now

    def _flat_until(self, error_class: ErrorClass, now: float, retry_at: float | None) -> float:
        """Rate limits, quotas, not-found: the announced time, else the class's fixed cooldown."""
        cfg = self.config
        if error_class is ErrorClass.NOT_FOUND:
            return now + cfg.not_found_cooldown
        if retry_at is not None:
            return max(now, retry_at)
        if error_class is ErrorClass.QUOTA_EXHAUSTED:
            return now + cfg.quota_cooldown
        return now + cfg.rate_limit_cooldown

    def _stale_failure(
        self, entry: _Entry, error_class: ErrorClass, now: float, retry_at: float | None, reason: str
    ) -> None:
        """A failure reported while open: no growth, no probe; it may only lengthen the wait."""
        if error_class not in _OWN_COOLDOWN:
            return
        if error_class in (ErrorClass.CAPACITY, ErrorClass.OVERLOADED) or error_class is entry.opened_by:
            if retry_at is None:
                return
            until = retry_at
        else:
            until = self._flat_until(error_class, now, retry_at)
        if until > entry.until:
            entry.until = until
            entry.reason = reason
            entry.opened_by = error_class
            entry.changed = now

    def _maybe_sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop entries that no longer say anything: memory stays bounded by the unhealthy keys."""
        self._next_sweep = now + self.config.error_rate_window
        forget = self.config.forget_after
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.mode is not _Mode.DISABLED
            and (
                max(entry.touched, entry.until) + forget <= now
                or (
                    entry.mode is _Mode.CLOSED and entry.consecutive == 0 and entry.window.totals(now)[1] == 0
                )
            )
        ]
        for key in stale:
            del self._entries[key]


def _grown(base: float, cap: float, streak: int) -> float:
    return min(cap, base * 2.0 ** min(streak, _MAX_EXPONENT))
