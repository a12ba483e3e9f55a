"""The interfaces of the routing state a gateway shares between its requests (and, with a shared
store, between processes): health per scope and the retry budget.

:class:`~spillgate.resilience.health.HealthBoard` and
:class:`~spillgate.resilience.budget.RetryBudget` are the in-memory implementations; a store
that shares state between instances implements the same methods (see docs/architecture.md,
"State stores: memory and Redis"). Everything in the request path reaches this state through these
interfaces, never through an implementation's internals.
"""

from __future__ import annotations

from typing import Protocol

from spillgate.resilience.budget import BudgetSnapshot
from spillgate.resilience.health import Admission, HealthConfig, ScopeSnapshot
from spillgate.resilience.types import ErrorClass


class HealthStore(Protocol):
    """Cooldowns, breakers and half-open probes per scope key (keys from :mod:`.keys`)."""

    config: HealthConfig

    def admit(self, key: str) -> Admission:
        """May a request use ``key`` now? In half-open, the first caller becomes the probe."""
        ...

    def peek(self, key: str) -> Admission:
        """What :meth:`admit` would answer, without claiming the probe."""
        ...

    def reopens_at(self, key: str) -> float | None:
        """Clock time ``key`` may be tried again (``None``: closed; ``inf``: disabled)."""
        ...

    def record_success(self, key: str) -> None: ...

    def record_failure(
        self,
        key: str,
        error_class: ErrorClass,
        retry_at: float | None = None,
        reason: str = "",
        trip: bool = False,
    ) -> None: ...

    def release_probe(self, key: str) -> None:
        """A probe ended without an outcome: the next caller may probe."""
        ...

    def disable(self, key: str, reason: str) -> None: ...

    def enable(self, key: str) -> None: ...

    def snapshot(self) -> list[ScopeSnapshot]:
        """Every key that is not plainly healthy, sorted by key."""
        ...


class BudgetStore(Protocol):
    """The retry budget: extra attempts as a share of client requests over a window."""

    ratio: float
    floor: int
    rejected_total: int

    def record_request(self, in_flight: int = 0) -> None: ...

    def try_spend(self) -> bool:
        """Whether one more extra attempt is allowed (counted as spent when it is)."""
        ...

    def snapshot(self) -> BudgetSnapshot: ...
