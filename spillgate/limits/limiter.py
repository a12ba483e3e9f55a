"""Decides whether a client key may start one more request, and keeps what that takes.

Per key: the models it may call, a requests-per-minute and a tokens-per-minute bucket, a count of
requests in flight, and the tokens and the money (USD) used in the current budget period. Tokens
and cost are taken when a request ends (only then are they known); the buckets may go into debt,
which refuses the next request until the refill has paid it back, and a budget may be overrun by
the requests running when it is reached. Money is counted in whole nano-dollars (:func:`nano_usd`),
here as in the shared store: sums are exact whatever the order of the requests, and both stores
decide alike at the budget's edge. State is per process (documented: with several instances each
enforces its own share, and budgets are re-read from the shared usage store).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from spillgate.config.schema import ClientKey, KeyLimits
from spillgate.limits.bucket import TokenBucket
from spillgate.limits.periods import period_bounds
from spillgate.observe.events import Event, RequestFinished

LimitName = Literal["model", "budget", "spend", "concurrency", "rpm", "tpm"]

SPENT: frozenset[LimitName] = frozenset({"budget", "spend"})
"""The limits that refuse for the rest of a budget period (tokens, money): a refusal clients must
take as final."""

NANO = 1_000_000_000
"""Nano-dollars per USD: the unit budgets' money is counted in."""


def nano_usd(usd: float) -> int:
    """``usd`` in whole nano-dollars (rounded: a request's error is half a nano-dollar at most)."""
    return round(usd * NANO)


def spend_limit(limits: KeyLimits) -> int | None:
    """The key's spend budget in nano-dollars (at least 1: a budget is never "unlimited"), if any."""
    return None if limits.spend_budget is None else max(1, nano_usd(limits.spend_budget))


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: LimitName
    message: str
    retry_after: int | None
    """Whole seconds until the request could be admitted; ``None`` when waiting will not help."""


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """One key's live state, for the admin API."""

    name: str
    in_flight: int
    requests_available: float | None
    tokens_available: float | None
    budget_used: int
    """Tokens used in the current budget period (counted while the key has a token budget)."""
    spend_used: float
    """USD used in the current budget period (counted while the key has a spend budget)."""
    budget_period_start: float | None


@dataclass(frozen=True, slots=True)
class Spent:
    """What one finished request takes from its client key's limits."""

    name: str
    """The key's name."""
    tokens: int
    """Input + output tokens."""
    usd: float
    """What it cost, every attempt included (0 when unknown)."""


class _State:
    __slots__ = ("budget_start", "budget_used", "inflight", "limits", "rpm", "spend_used", "tpm")

    def __init__(self, limits: KeyLimits, now: float) -> None:
        self.limits = limits
        self.inflight = 0
        self.budget_used = 0
        self.spend_used = 0
        """Nano-dollars."""
        self.budget_start: float | None = None
        self.rpm = TokenBucket(limits.rpm, now) if limits.rpm else None
        self.tpm = TokenBucket(limits.tpm, now) if limits.tpm else None

    def roll(self, wall: float) -> float | None:
        """Start counting afresh when a new budget period has begun; when the current one ends."""
        start, end = period_bounds(self.limits.budget_period, wall)
        if self.budget_start != start:
            self.budget_start, self.budget_used, self.spend_used = start, 0, 0
        return end

    def update(self, limits: KeyLimits, now: float) -> None:
        if limits.rpm != self.limits.rpm:
            self.rpm = TokenBucket(limits.rpm, now) if limits.rpm else None
        if limits.tpm != self.limits.tpm:
            self.tpm = TokenBucket(limits.tpm, now) if limits.tpm else None
        if limits.budget_period != self.limits.budget_period:
            self.budget_start = None
        self.limits = limits


def spent(event: Event) -> Spent | None:
    """What a finished request takes from its client key's limits, if anything."""
    if isinstance(event, RequestFinished) and event.client_key is not None:
        tokens = (event.input_tokens or 0) + (event.output_tokens or 0)
        cost = event.cost_usd
        usd = cost if cost is not None and math.isfinite(cost) and cost > 0 else 0.0
        if tokens or usd:
            return Spent(event.client_key, tokens, usd)
    return None


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


# -- refusals: one wording for every store (the in-memory limiter here, the shared one in fleet/) --


def model_refusal(limits: KeyLimits, requested: str, alias: str) -> Refusal | None:
    """The model allow-list (``requested`` or the ``alias`` it resolves to): ``None`` when allowed."""
    if limits.models is None or requested in limits.models or alias in limits.models or "*" in limits.models:
        return None
    allowed = ", ".join(sorted(limits.models)) or "none"
    return Refusal("model", f"this API key may not use model {requested!r} (allowed: {allowed})", None)


def budget_refusal(limits: KeyLimits, end: float | None, wall: float) -> Refusal:
    """The token budget is used up; the current period ends at ``end`` (``None``: never)."""
    return _spent_refusal("budget", f"token budget ({limits.token_budget} tokens", limits, end, wall)


def usd_text(amount: float) -> str:
    """``$50.00``; an amount finer than cents keeps its digits (``$0.005``)."""
    if round(amount, 2) == amount:
        return f"${amount:,.2f}"
    return f"${amount:,.9f}".rstrip("0")


def spend_refusal(limits: KeyLimits, end: float | None, wall: float) -> Refusal:
    """The spend budget is used up; the current period ends at ``end`` (``None``: never)."""
    return _spent_refusal("spend", f"spend budget ({usd_text(limits.spend_budget or 0.0)}", limits, end, wall)


def _spent_refusal(
    limit: LimitName, budget: str, limits: KeyLimits, end: float | None, wall: float
) -> Refusal:
    """``budget``: what was used up, its amount (``token budget (50 tokens``), completed here with
    the period and when it resets (a ``total`` budget never does: no ``retry_after``)."""
    if end is None:
        return Refusal(limit, f"this API key has used its {budget} in total)", None)
    wait = _seconds(end - wall)
    return Refusal(
        limit, f"this API key has used its {budget} per {limits.budget_period}); it resets in {wait} s", wait
    )


def concurrency_refusal(in_flight: int, limit: int) -> Refusal:
    return Refusal(
        "concurrency",
        f"this API key already has {in_flight} requests in flight "
        f"(limit {limit}); retry when one has finished",
        1,
    )


def rpm_refusal(rpm: int, wait: float) -> Refusal:
    return Refusal(
        "rpm",
        f"this API key is limited to {rpm} requests per minute; retry in {_seconds(wait)} s",
        _seconds(wait),
    )


def tpm_refusal(tpm: int, wait: float) -> Refusal:
    return Refusal(
        "tpm",
        f"this API key is limited to {tpm} tokens per minute; retry in {_seconds(wait)} s",
        _seconds(wait),
    )


class KeyLimiter:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._keys: dict[str, _State] = {}
        self.refusals: dict[tuple[str, LimitName], int] = {}
        """Requests refused, per (key name, limit)."""

    def _state(self, key: ClientKey) -> _State:
        state = self._keys.get(key.name)
        if state is None:
            state = self._keys[key.name] = _State(key.limits, self._clock())
        elif state.limits is not key.limits and state.limits != key.limits:
            state.update(key.limits, self._clock())
        return state

    def admit(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        """``None`` and the request counts as started (call :meth:`release` when it ends), or why not."""
        if key.limits.unlimited:
            return None
        refusal = self._admit(key, requested, alias)
        if refusal is not None:
            self.refused(key.name, refusal)
        return refusal

    async def check(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        """:meth:`admit`, awaitable like a shared store's."""
        return self.admit(key, requested, alias)

    def refused(self, name: str, refusal: Refusal) -> None:
        """Count a refusal of key ``name`` (a shared store counts its own decisions here too)."""
        counted = (name, refusal.limit)
        self.refusals[counted] = self.refusals.get(counted, 0) + 1

    def started(self, key: ClientKey) -> None:
        """A request another store admitted (the shared one): counted in flight and its request token
        taken here too, without a check, so that this replica is warm when it has to decide alone."""
        if key.limits.unlimited:
            return
        state = self._state(key)
        if state.rpm is not None:
            state.rpm.take(1.0, self._clock())
        state.inflight += 1

    def _admit(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        limits = key.limits
        refusal = model_refusal(limits, requested, alias)
        if refusal is not None:
            return refusal
        state = self._state(key)
        now = self._clock()
        if limits.budgeted:
            refusal = self._check_budgets(state)
            if refusal is not None:
                return refusal
        if limits.max_concurrent is not None and state.inflight >= limits.max_concurrent:
            return concurrency_refusal(state.inflight, limits.max_concurrent)
        if state.rpm is not None and limits.rpm is not None:
            wait = state.rpm.wait_for(1.0, now)
            if wait > 0:
                return rpm_refusal(limits.rpm, wait)
        if state.tpm is not None and limits.tpm is not None:
            # Tokens are taken when a request ends: admit while the bucket is not in debt.
            wait = state.tpm.wait_for(0.0, now)
            if wait > 0:
                return tpm_refusal(limits.tpm, wait)
        if state.rpm is not None:
            state.rpm.take(1.0, now)
        state.inflight += 1
        return None

    def _check_budgets(self, state: _State) -> Refusal | None:
        """The token budget first, then the spend budget (the shared store's order too)."""
        wall = self._wall()
        end = state.roll(wall)
        limits = state.limits
        if limits.token_budget is not None and state.budget_used >= limits.token_budget:
            return budget_refusal(limits, end, wall)
        spend = spend_limit(limits)
        if spend is not None and state.spend_used >= spend:
            return spend_refusal(limits, end, wall)
        return None

    def release(self, key: ClientKey) -> None:
        if key.limits.unlimited:
            return
        state = self._keys.get(key.name)
        if state is not None and state.inflight > 0:
            state.inflight -= 1

    def spend(self, name: str, tokens: int, usd: float = 0.0) -> None:
        """Take ``tokens`` from the key's per-minute bucket and its token budget, ``usd`` from its
        spend budget."""
        state = self._keys.get(name)
        tokens, nanos = max(0, tokens), max(0, nano_usd(usd))
        if state is None or not (tokens or nanos):
            return
        limits = state.limits
        if state.tpm is not None and tokens:
            state.tpm.take(float(tokens), self._clock())
        if limits.budgeted:
            state.roll(self._wall())
            if limits.token_budget is not None:
                state.budget_used += tokens
            if limits.spend_budget is not None:
                state.spend_used += nanos

    def __call__(self, event: Event) -> None:
        """Event observer: a finished request's tokens and cost count against its key."""
        taken = spent(event)
        if taken is not None:
            self.spend(taken.name, taken.tokens, taken.usd)

    # -- budgets shared through the usage store --------------------------------------------------

    def budget_periods(self, keys: tuple[ClientKey, ...]) -> list[tuple[str, float]]:
        """``(key name, period start)`` of every key with a token or spend budget: what to sum in
        the store."""
        wall = self._wall()
        return [(k.name, period_bounds(k.limits.budget_period, wall)[0]) for k in keys if k.limits.budgeted]

    def set_budget_used(self, key: ClientKey, start: float, tokens: int, usd: float) -> None:
        """The store's count of the key's tokens and cost (USD) since ``start`` (every instance's
        requests).

        For each, the larger of it and this process's own count is kept: the store lags by the
        records not yet flushed, this process does not see the other instances. A count whose budget
        the key does not have is not kept (as :meth:`spend` does not count it).
        """
        state = self._state(key)
        limits = key.limits
        tokens = max(0, tokens) if limits.token_budget is not None else 0
        nanos = max(0, nano_usd(usd)) if limits.spend_budget is not None else 0
        if state.budget_start != start:
            state.budget_start, state.budget_used, state.spend_used = start, tokens, nanos
        else:
            state.budget_used = max(state.budget_used, tokens)
            state.spend_used = max(state.spend_used, nanos)

    def usage(self) -> list[KeyUsage]:
        now = self._clock()
        return [
            KeyUsage(
                name=name,
                in_flight=s.inflight,
                requests_available=None if s.rpm is None else round(s.rpm.level(now), 2),
                tokens_available=None if s.tpm is None else round(s.tpm.level(now), 1),
                budget_used=s.budget_used,
                spend_used=s.spend_used / NANO,
                budget_period_start=s.budget_start,
            )
            for name, s in sorted(self._keys.items())
        ]
