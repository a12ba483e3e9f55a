"""The admin health report: every route of every model with its accounts, and why each is out.

Pure: built from the settings, one health-board snapshot, the in-flight counts and the recent
failures. A route member (an account, or the provider's own key) is as unavailable as the worst
of the scopes its attempts need (provider, provider+model, owner, owner+model, as in
``Attempt.health_keys``); a route is as available as its best member.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from spillgate.admin.scopes import is_drained
from spillgate.config.schema import WILDCARD, Route, Settings
from spillgate.observe.recent import FailedAttempt, RecentFailures
from spillgate.resilience.health import ScopeSnapshot
from spillgate.resilience.keys import (
    account_key,
    owner_model_key,
    provider_key,
    provider_model_key,
    provider_scope_key,
)

State = Literal["closed", "half_open", "open", "disabled", "drained"]

_RANK: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2, "disabled": 3, "drained": 4}


@dataclass(frozen=True, slots=True)
class ScopeView:
    key: str
    state: State
    cooldown_s: float | None
    """Seconds until it may be tried again: 0 half-open, ``None`` closed or until an operator acts."""
    reason: str
    error_class: str | None
    consecutive_failures: int
    opens: int
    probe_in_flight: bool


@dataclass(frozen=True, slots=True)
class RecentError:
    time: float
    error_class: str | None
    status: int | None
    kind: str
    rule: str | None
    phase: str | None
    upstream_model: str


@dataclass(frozen=True, slots=True)
class MemberHealth:
    account: str | None
    """``None``: the route uses its provider's own key."""
    key: str
    """The owner's health key (``account:<id>`` or ``provider-key:<provider>``)."""
    state: State
    cooldown_s: float | None
    reason: str
    error_class: str | None
    scope: str | None
    """The health key that decides the state (``None`` when closed)."""
    inflight: int
    max_concurrency: int | None
    recent_errors: list[RecentError]


@dataclass(frozen=True, slots=True)
class RouteHealth:
    label: str
    provider: str
    protocol: str
    model: str
    """The upstream model (``*``: the requested name)."""
    priority: int
    weight: int
    state: State
    cooldown_s: float | None
    reason: str
    error_class: str | None
    members: list[MemberHealth]


@dataclass(frozen=True, slots=True)
class ModelHealth:
    name: str
    deprecated_names: list[str]
    routes: list[RouteHealth]


@dataclass(frozen=True, slots=True)
class AccountHealth:
    id: str
    provider: str
    state: State
    """The account scope's own state (``drained`` after an operator's drain)."""
    cooldown_s: float | None
    reason: str
    error_class: str | None
    inflight: int
    max_concurrency: int | None
    routes: list[str]
    scopes: list[ScopeView]
    """Every scope of the account that is not closed (the account's and its per-model ones)."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    time: float
    models: list[ModelHealth]
    accounts: list[AccountHealth]
    scopes: list[ScopeView]
    """Every health-board scope that is not closed."""


def scope_view(s: ScopeSnapshot) -> ScopeView:
    state: State = "drained" if is_drained(s) else s.state
    cooldown = None if s.until is None or math.isinf(s.until) else round(s.until, 3)
    return ScopeView(
        key=s.key,
        state=state,
        cooldown_s=cooldown,
        reason=s.reason,
        error_class=s.last_error.value if s.last_error else None,
        consecutive_failures=s.consecutive_failures,
        opens=s.opens,
        probe_in_flight=s.probe_in_flight,
    )


def health_report(
    settings: Settings,
    snapshot: Sequence[ScopeSnapshot],
    inflight: Mapping[str, int],
    recent: RecentFailures | None,
    now: float,
) -> HealthReport:
    views = {s.key: scope_view(s) for s in snapshot if s.state != "closed"}
    models = [
        ModelHealth(
            name=alias.name,
            deprecated_names=sorted(old for old, new in settings.deprecated.items() if new == alias.name),
            routes=[_route(settings, route, views, inflight, recent) for route in alias.routes],
        )
        for alias in settings.models.values()
    ]
    accounts = [_account(settings, account_id, views, inflight) for account_id in sorted(settings.accounts)]
    return HealthReport(time=now, models=models, accounts=accounts, scopes=list(views.values()))


def _worst(scopes: list[ScopeView]) -> ScopeView | None:
    """The scope that keeps a member out longest (``None`` when all are closed)."""
    worst: ScopeView | None = None
    for s in scopes:
        if worst is None or _later(s, worst):
            worst = s
    return worst


def _later(a: ScopeView, b: ScopeView) -> bool:
    if _RANK[a.state] != _RANK[b.state]:
        return _RANK[a.state] > _RANK[b.state]
    return (a.cooldown_s or 0.0) > (b.cooldown_s or 0.0)


def _route_keys(route: Route, owner: str) -> list[str]:
    keys = [provider_scope_key(route.provider), owner]
    if route.model != WILDCARD:
        keys += [provider_model_key(route.provider, route.model), owner_model_key(owner, route.model)]
    return keys


def _route(
    settings: Settings,
    route: Route,
    views: Mapping[str, ScopeView],
    inflight: Mapping[str, int],
    recent: RecentFailures | None,
) -> RouteHealth:
    members: list[MemberHealth] = []
    owners: list[tuple[str | None, str]] = (
        [(a, account_key(a)) for a in route.accounts]
        if route.accounts
        else [(None, provider_key(route.provider))]
    )
    for account, owner in owners:
        found = [views[k] for k in _route_keys(route, owner) if k in views]
        worst = _worst(found)
        notes = recent.for_member(route.label, account) if recent is not None else []
        acc = settings.accounts.get(account) if account is not None else None
        members.append(
            MemberHealth(
                account=account,
                key=owner,
                state=worst.state if worst else "closed",
                cooldown_s=worst.cooldown_s if worst else None,
                reason=worst.reason if worst else "",
                error_class=worst.error_class if worst else None,
                scope=worst.key if worst else None,
                inflight=inflight.get(account, 0) if account is not None else 0,
                max_concurrency=acc.max_concurrency if acc is not None else None,
                recent_errors=[_recent(n) for n in notes],
            )
        )
    best = min(members, key=lambda m: (_RANK[m.state], m.cooldown_s or 0.0))
    provider = settings.providers.get(route.provider)
    return RouteHealth(
        label=route.label,
        provider=route.provider,
        protocol=provider.protocol if provider is not None else "",
        model=route.model,
        priority=route.priority,
        weight=route.weight,
        state=best.state,
        cooldown_s=best.cooldown_s,
        reason=best.reason,
        error_class=best.error_class,
        members=members,
    )


def _account(
    settings: Settings, account_id: str, views: Mapping[str, ScopeView], inflight: Mapping[str, int]
) -> AccountHealth:
    account = settings.accounts[account_id]
    key = account_key(account_id)
    own = views.get(key)
    scopes = [v for k, v in views.items() if k == key or k.startswith(key + "|")]
    routes = [
        route.label
        for alias in settings.models.values()
        for route in alias.routes
        if account_id in route.accounts
    ]
    return AccountHealth(
        id=account_id,
        provider=account.provider,
        state=own.state if own else "closed",
        cooldown_s=own.cooldown_s if own else None,
        reason=own.reason if own else "",
        error_class=own.error_class if own else None,
        inflight=inflight.get(account_id, 0),
        max_concurrency=account.max_concurrency,
        routes=routes,
        scopes=scopes,
    )


def _recent(n: FailedAttempt) -> RecentError:
    return RecentError(
        time=n.time,
        error_class=n.error_class,
        status=n.status,
        kind=n.kind,
        rule=n.rule,
        phase=n.phase,
        upstream_model=n.upstream_model,
    )
