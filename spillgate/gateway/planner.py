"""Which attempt comes next for one request: route order, account choice, health, exclusions.

The plan also remembers why it passed each route over (too small, a health scope open, no
account), so that a final error can say, route by route, why none of them answered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from spillgate.config.schema import Account, Route, Settings
from spillgate.protocols.apis import Api
from spillgate.protocols.translate.canonical import Uncarriable
from spillgate.resilience.health import Admission
from spillgate.resilience.stores import HealthStore
from spillgate.resilience.types import ErrorClass
from spillgate.routing.plan import serving_api
from spillgate.routing.selection import choose_account
from spillgate.state.stores import AffinityStore, InflightStore

from .attempt import Attempt
from .exchange import estimate_tokens
from .translation import Translation

AttemptCache = dict[tuple[int, str | None, str, Api], Attempt]
"""(id of the route, account id, upstream model, upstream API) -> its Attempt, shared by one
gateway's requests: an Attempt is immutable and building its health keys is most of a plan's work."""
MAX_CACHED = 4096
"""Attempts kept at most (a wildcard route forwards any model name); then the cache starts over."""


@dataclass(slots=True)
class Candidate:
    attempt: Attempt
    probes: tuple[str, ...] = ()
    """Health keys whose single half-open probe this attempt holds."""
    rebind: bool = False
    session: str | None = None
    forced: bool = False
    """Tried although every route is open (the least-bad route)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A health scope that kept a route out of this request."""

    key: str
    error_class: ErrorClass | None
    until: float
    """Clock time it may be tried again (``inf``: disabled)."""
    reason: str

    def describe(self, now: float) -> str:
        what = self.error_class.value if self.error_class is not None else "an operator"
        if math.isinf(self.until):
            return f"skipped: {self.key} disabled ({what})"
        left = self.until - now
        if left <= 0:
            return f"skipped: {self.key} half-open for {what}, its probe is in flight"
        return f"skipped: {self.key} open for {what}, {left:.0f}s left"


@dataclass(slots=True)
class RequestPlan:
    """The attempts one request may still make, in order, given health and what already failed."""

    settings: Settings
    routes: Sequence[Route]
    api: Api
    """The client's API."""
    translation: Translation
    requested_model: str
    session_key: str | None
    estimated_tokens: int
    health: HealthStore
    inflight: InflightStore
    affinity: AffinityStore
    rotation: Callable[[], int]
    clock: Callable[[], float]
    cache: AttemptCache = field(default_factory=dict)
    tried: set[tuple[str, str]] = field(default_factory=set)
    avoid: set[str] = field(default_factory=set)
    """Health keys that failed in this request: not tried again in it."""
    min_context: int = 0
    """After context_length_exceeded: only routes with a larger declared window."""
    skipped_models: set[tuple[str, str]] = field(default_factory=set)
    """(provider, upstream model) pairs that cannot take this request."""
    notes: dict[str, str] = field(default_factory=dict)
    """Route label -> why this request last passed the route over (unless it was its health)."""
    refusals: dict[str, Refusal] = field(default_factory=dict)
    """Route label -> the health scope that last kept it out of this request."""
    uncarried: set[str] = field(default_factory=set)
    """Labels of the routes whose API cannot carry this request (see :meth:`misfit`)."""

    def upstream_api(self, route: Route) -> Api:
        """The API an attempt on ``route`` speaks (routes reach a plan only if they have one)."""
        api = serving_api(route, self.settings.providers[route.provider], self.api)
        assert api is not None, f"route {route.label} cannot serve {self.api}"
        return api

    def misfit(self, route: Route) -> str | None:
        """Why ``route`` cannot take this request at all, or ``None`` when it can."""
        tokens = self.estimated_tokens
        api = self.upstream_api(route)
        try:
            if api is self.api:
                self.translation.check_native(route)
            else:
                encoded = self.translation.encoded(api, route.upstream_model(self.requested_model), route)
                tokens = estimate_tokens(encoded.body)
        except Uncarriable as why:
            self.uncarried.add(route.label)
            return f"skipped: cannot carry the request to {api.title}: {why}"
        window = route.context_window
        if window is not None and tokens > window:
            return f"too small: context_window {window} < about {tokens} tokens"
        if self.min_context and (window is None or window <= self.min_context):
            return f"too small: needs a context window above {self.min_context} tokens"
        if (route.provider, route.upstream_model(self.requested_model)) in self.skipped_models:
            return "too small: its model said the request is too long"
        return None

    def _attempts_of(self, route: Route, rotation: int | None) -> Iterator[tuple[Attempt, bool, str | None]]:
        """Candidate attempts of a route: (attempt, rebind, session) in preference order.
        ``rotation`` ``None`` draws the next tie-break from the gateway's rotation."""
        upstream_model = route.upstream_model(self.requested_model)
        if not route.accounts:
            yield self._attempt(route, None, upstream_model), False, None
            return
        pool = [self.settings.accounts[a] for a in route.accounts]
        session = f"{route.label}|{self.session_key}" if self.session_key else None
        excluded: set[str] = set()
        while True:
            choice = choose_account(
                [a for a in pool if a.id not in excluded],
                upstream_model,
                bound=self.affinity.get(session) if session else None,
                healthy=lambda _id: True,
                inflight=self.inflight.counts,
                rotation=self.rotation() if rotation is None else rotation,
            )
            if choice.account is None:
                if not excluded and choice.reason and rotation is None:
                    self._note(route, f"skipped: {choice.reason}")
                return
            excluded.add(choice.account.id)
            yield self._attempt(route, choice.account, upstream_model), choice.rebind, session

    def _attempt(self, route: Route, account: Account | None, upstream_model: str) -> Attempt:
        api = self.upstream_api(route)
        key = (id(route), account.id if account is not None else None, upstream_model, api)
        attempt = self.cache.get(key)
        if attempt is None:
            if len(self.cache) >= MAX_CACHED:
                self.cache.clear()
            provider = self.settings.providers[route.provider]
            attempt = self.cache[key] = Attempt(route, provider, account, upstream_model, api)
        return attempt

    def next(self) -> Candidate | None:
        """The best attempt not yet tried whose health admits it (claiming probes), else None."""
        now = self.clock()
        for route in self.routes:
            misfit = self.misfit(route)
            if misfit is not None:
                self._note(route, misfit)
                continue
            for attempt, rebind, session in self._attempts_of(route, None):
                if attempt.identity in self.tried:
                    continue
                keys = attempt.health_keys()
                avoided = next((k for k in keys if k in self.avoid), None)
                if avoided is not None:
                    self._note(route, f"skipped: {avoided} failed earlier in this request")
                    continue
                peeks = [self.health.peek(k) for k in keys]
                refused = next(((k, p) for k, p in zip(keys, peeks, strict=True) if not p.allowed), None)
                if refused is not None:
                    self._refused(route, *refused, now)
                    continue
                probes = []
                for key, peek in zip(keys, peeks, strict=True):
                    if peek.probe:
                        admission = self.health.admit(key)
                        if not admission.allowed:
                            self._refused(route, key, admission, now)
                            break
                        probes.append(key)
                else:
                    return Candidate(attempt, tuple(probes), rebind, session)
                for key in probes:
                    self.health.release_probe(key)
        return None

    def _note(self, route: Route, why: str) -> None:
        self.notes[route.label] = why
        self.refusals.pop(route.label, None)

    def _refused(self, route: Route, key: str, admission: Admission, now: float) -> None:
        """Remember the refusal; its words are only made if a final error needs them."""
        until = admission.until if admission.until is not None else now
        self.refusals[route.label] = Refusal(key, admission.error_class, until, admission.reason)
        self.notes.pop(route.label, None)

    def has_other(self, current: Attempt) -> bool:
        """Whether an attempt other than ``current`` could still follow it in this request: not
        tried, not avoided, fitting and admitted by health now (nothing is claimed). An attempt
        with nothing after it is the last possible one and keeps its whole timeouts."""
        if len(self.routes) == 1 and len(self.routes[0].accounts) <= 1:
            return False  # the common single-route alias: nothing to scan
        for route in self.routes:
            if self.misfit(route) is not None:
                continue
            for attempt, _, _ in self._attempts_of(route, 0):
                if attempt.identity == current.identity or attempt.identity in self.tried:
                    continue
                keys = attempt.health_keys()
                if any(k in self.avoid for k in keys):
                    continue
                if all(self.health.peek(k).allowed for k in keys):
                    return True
        return False

    def least_bad(self) -> Candidate | None:
        """With every route open: the untried attempt whose scopes reopen soonest (never a disabled one)."""
        best: tuple[float, Attempt, bool, str | None] | None = None
        for route in self.routes:
            if self.misfit(route) is not None:
                continue
            for attempt, rebind, session in self._attempts_of(route, None):
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
            if self.misfit(route) is not None:
                continue
            for attempt, _, _ in self._attempts_of(route, 0):
                times = [self.health.reopens_at(k) for k in attempt.health_keys()]
                ready = max((t for t in times if t is not None), default=now)
                if not math.isinf(ready) and (soonest is None or ready < soonest):
                    soonest = ready
        return None if soonest is None else max(0.0, soonest - now)
