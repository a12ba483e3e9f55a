"""Pick an account from a route's pool: sticky sessions first, then the least loaded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from spillgate.config.schema import Account


@dataclass(frozen=True, slots=True)
class Choice:
    account: Account | None
    """``None`` when no account of the pool can take the request now."""
    rebind: bool
    """Whether the session's binding should now point at ``account``."""
    reason: str = ""


def choose_account(
    pool: Sequence[Account],
    upstream_model: str,
    *,
    bound: str | None,
    healthy: Callable[[str], bool],
    inflight: Mapping[str, int],
    rotation: int = 0,
) -> Choice:
    """Soft affinity over least-in-flight selection.

    - A session bound to a healthy account with room keeps it.
    - A session bound to an account that is healthy but full borrows another account for
      this request and keeps its binding (the cache stays warm once the account has room).
    - A session bound to an unhealthy account moves, and the binding follows it.
    - Otherwise the healthy account with the fewest in-flight requests wins; ties are broken
      by ``rotation`` so that idle traffic spreads over the pool.
    """
    serving = [a for a in pool if a.serves(upstream_model)]
    candidates = [a for a in serving if healthy(a.id)]
    if not candidates:
        return Choice(None, False, "no healthy account in the pool serves this model")
    with_room = [
        a for a in candidates if a.max_concurrency is None or inflight.get(a.id, 0) < a.max_concurrency
    ]
    bound_account = next((a for a in candidates if a.id == bound), None)
    if bound_account is not None and bound_account in with_room:
        return Choice(bound_account, False)
    if not with_room:
        return Choice(None, False, "every healthy account of the pool is at its max_concurrency")
    n = len(with_room)
    start = rotation % n
    rotated = with_room[start:] + with_room[:start]
    best = min(rotated, key=lambda a: inflight.get(a.id, 0))
    return Choice(best, rebind=bound_account is None)
