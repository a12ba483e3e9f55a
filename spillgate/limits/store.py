"""The interface of per-client-key limit state (RPM, TPM, concurrency, token and spend budgets).
:class:`~spillgate.limits.limiter.KeyLimiter` is the in-memory implementation; a shared store
implements the same methods so that a key's limits hold across instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from spillgate.config.schema import ClientKey
from spillgate.limits.limiter import KeyUsage, LimitName, Refusal
from spillgate.observe.events import Event


class LimitStore(Protocol):
    @property
    def refusals(self) -> Mapping[tuple[str, LimitName], int]:
        """Requests refused, per (key name, limit)."""
        ...

    def admit(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        """``None``: the request counts as started (call :meth:`release` when it ends); else why not."""
        ...

    async def check(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        """:meth:`admit` for the request path: a shared store asks Redis (one round trip)."""
        ...

    def release(self, key: ClientKey) -> None: ...

    def spend(self, name: str, tokens: int, usd: float = 0.0) -> None:
        """Take ``tokens`` from the key's per-minute bucket and its token budget, ``usd`` from its
        spend budget."""
        ...

    def __call__(self, event: Event) -> None:
        """Event observer: a finished request's tokens and cost count against its key."""
        ...

    def budget_periods(self, keys: tuple[ClientKey, ...]) -> list[tuple[str, float]]:
        """``(key name, period start)`` of every key with a token or spend budget."""
        ...

    def set_budget_used(self, key: ClientKey, start: float, tokens: int, usd: float) -> None:
        """The usage store's tokens and USD for the key since ``start``; the larger count is kept."""
        ...

    def usage(self) -> list[KeyUsage]: ...
