"""Which attempt comes next for one request: route order, account choice, health, exclusions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from spillgate.config.schema import Route, Settings
from spillgate.resilience.health import HealthBoard
from spillgate.routing.selection import choose_account
from spillgate.state.memory import InflightCounter, SessionAffinity

from .attempt import Attempt


@dataclass(slots=True)
class Candidate:
    attempt: Attempt
    probes: tuple[str, ...] = ()
    """Health keys whose single half-open probe this attempt holds."""
    rebind: bool = False
    session: str | None = None
    forced: bool = False
    """Tried although every route is open (the least-bad route)."""


@dataclass(slots=True)
class RequestPlan:
    """The attempts one request may still make, in order, given health and what already failed."""

    settings: Settings
    routes: Sequence[Route]
    requested_model: str
    session_key: str | None
    estimated_tokens: int
    health: HealthBoard
    inflight: InflightCounter
    affinity: SessionAffinity
    rotation: Callable[[], int]
    tried: set[tuple[str, str]] = field(default_factory=set)
    avoid: set[str] = field(default_factory=set)
    """Health keys that failed in this request: not tried again in it."""
    min_context: int = 0
    """After context_length_exceeded: only routes with a larger declared window."""
    skipped_models: set[tuple[str, str]] = field(default_factory=set)
    """(provider, upstream model) pairs that cannot take this request."""
    reasons: list[str] = field(default_factory=list)

    def _route_fits(self, route: Route) -> bool:
        window = route.context_window
        if window is not None and self.estimated_tokens > window:
            return False
        if self.min_context and (window is None or window <= self.min_context):
            return False
        return (route.provider, route.upstream_model(self.requested_model)) not in self.skipped_models

    def _attempts_of(self, route: Route) -> list[tuple[Attempt, bool, str | None]]:
        """Candidate attempts of a route: (attempt, rebind, session) in preference order."""
        provider = self.settings.providers[route.provider]
        upstream_model = route.upstream_model(self.requested_model)
        if not route.accounts:
            return [(Attempt(route, provider, None, upstream_model), False, None)]
        pool = [self.settings.accounts[a] for a in route.accounts]
        session = f"{route.label}|{self.session_key}" if self.session_key else None
        out: list[tuple[Attempt, bool, str | None]] = []
        excluded: set[str] = set()
        while True:
            choice = choose_account(
                [a for a in pool if a.id not in excluded],
                upstream_model,
                bound=self.affinity.get(session) if session else None,
                healthy=lambda _id: True,
                inflight=self.inflight.counts,
                rotation=self.rotation(),
            )
            if choice.account is None:
                if not out and choice.reason:
                    self.reasons.append(f"{route.label}: {choice.reason}")
                return out
            excluded.add(choice.account.id)
            out.append((Attempt(route, provider, choice.account, upstream_model), choice.rebind, session))

    def next(self) -> Candidate | None:
        """The best attempt not yet tried whose health admits it (claiming probes), else None."""
        for route in self.routes:
            if not self._route_fits(route):
                continue
            for attempt, rebind, session in self._attempts_of(route):
                if attempt.identity in self.tried:
                    continue
                keys = attempt.health_keys()
                if any(k in self.avoid for k in keys):
                    continue
                peeks = [self.health.peek(k) for k in keys]
                if not all(p.allowed for p in peeks):
                    continue
                probes = []
                for key, peek in zip(keys, peeks, strict=True):
                    if peek.probe:
                        if not self.health.admit(key).allowed:
                            break
                        probes.append(key)
                else:
                    return Candidate(attempt, tuple(probes), rebind, session)
                for key in probes:
                    self.health.release_probe(key)
        return None

    def least_bad(self) -> Candidate | None:
        """With every route open: the untried attempt whose scopes reopen soonest (never a disabled one)."""
        best: tuple[float, Attempt, bool, str | None] | None = None
        for route in self.routes:
            if not self._route_fits(route):
                continue
            for attempt, rebind, session in self._attempts_of(route):
                if attempt.identity in self.tried or any(k in self.avoid for k in attempt.health_keys()):
                    continue
                reopen = max((self.health.reopens_at(k) or 0.0) for k in attempt.health_keys())
                if math.isinf(reopen):
                    continue
                if best is None or reopen < best[0]:
                    best = (reopen, attempt, rebind, session)
        if best is None:
            return None
        return Candidate(best[1], (), best[2], best[3], forced=True)

    def reopens_in(self, now: float) -> float | None:
        """Seconds until one of this request's attempts has every scope healthy again, if known."""
        soonest: float | None = None
        for route in self.routes:
            if not self._route_fits(route):
                continue
            for attempt, _, _ in self._attempts_of(route):
                times = [self.health.reopens_at(k) for k in attempt.health_keys()]
                ready = max((t for t in times if t is not None), default=now)
                if not math.isinf(ready) and (soonest is None or ready < soonest):
                    soonest = ready
        return None if soonest is None else max(0.0, soonest - now)
