"""Operator actions on health scopes: drain and re-enable an account or a provider's own key.

The key names come from :mod:`spillgate.resilience.keys`, as the dispatcher's do.

Draining disables the owner's key on the health board with :data:`DRAIN_REASON`: the planner
admits nothing new on it, while requests already running on it finish (their outcomes do not
change a disabled key). Enabling forgets every scope of the owner, so it is closed afresh.
"""

from __future__ import annotations

import time

from spillgate.resilience.health import ScopeSnapshot
from spillgate.resilience.keys import account_key as account_key
from spillgate.resilience.keys import provider_key as provider_key
from spillgate.resilience.keys import provider_model_key as provider_model_key
from spillgate.resilience.keys import provider_scope_key as provider_scope_key
from spillgate.resilience.stores import HealthStore

DRAIN_REASON = "drained by operator"


def is_drained(scope: ScopeSnapshot) -> bool:
    return scope.state == "disabled" and scope.reason.startswith(DRAIN_REASON)


def drain(board: HealthStore, owner_key: str, now: float | None = None) -> None:
    """No new request goes to ``owner_key``; those in flight finish."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    board.disable(owner_key, f"{DRAIN_REASON} at {stamp}")


def enable(board: HealthStore, owner_key: str, *, provider: str | None = None) -> list[str]:
    """Close ``owner_key`` and its per-model keys (with ``provider``: that provider's own scopes
    too); returns the keys that were not closed before, sorted."""
    starts = [owner_key + "|"]
    exact = {owner_key}
    if provider is not None:
        starts.append(provider_model_key(provider, ""))
        exact.add(provider_scope_key(provider))
    prefixes = tuple(starts)
    found = [s for s in board.snapshot() if s.key in exact or s.key.startswith(prefixes)]
    for scope in found:
        board.enable(scope.key)
    return [s.key for s in found if s.state != "closed"]
