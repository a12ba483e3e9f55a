"""What the client is told when no route answered: which class, why each route did not answer,
and whether the model has been out so long that the client should stop and tell its user."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spillgate.config.durations import format_wait
from spillgate.config.schema import WILDCARD, Account, Route, Settings
from spillgate.protocols.apis import Api
from spillgate.resilience.outage import OutageBoard
from spillgate.resilience.policy import most_informative
from spillgate.resilience.stores import HealthStore
from spillgate.resilience.types import ErrorClass, Verdict
from spillgate.routing.plan import serving_api

from .attempt import Attempt
from .call import Outcome

if TYPE_CHECKING:
    from .exchange import Exchange
    from .planner import RequestPlan

MAX_LISTED = 8
"""Healthy models named in a stop message at most."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The failure a final error reports."""

    error_class: ErrorClass
    verdict: Verdict | None
    """The attempt's verdict; ``None`` when the class comes from a health scope that kept the
    routes out (no attempt of this request failed that way)."""
    outcome: Outcome | None
    detail: str


def reported_failure(ex: Exchange, plan: RequestPlan) -> Failure:
    """The most informative real failure. A "too long for every route" is reported only when no
    larger route was kept out by its health: then the health scope's class is the truth."""
    classes = [v.error_class for v, _ in ex.failures]
    chosen = most_informative(classes) if classes else None
    if chosen is None or chosen is ErrorClass.CONTEXT_TOO_LONG:
        tried = {o.attempt.route.label for _, o in ex.failures}
        fits = {r.label for r in plan.routes if plan.misfit(r) is None}
        refused = [
            r for label, r in plan.refusals.items() if label in fits and label not in tried and r.error_class
        ]
        if refused:
            best = most_informative([r.error_class for r in refused if r.error_class is not None])
            refusal = next(r for r in refused if r.error_class is best)
            return Failure(best, None, None, refusal.reason)
    if chosen is None:
        return Failure(ErrorClass.UPSTREAM_ERROR, None, None, "")
    verdict, outcome = next((v, o) for v, o in ex.failures if v.error_class is chosen)
    return Failure(chosen, verdict, outcome, outcome.signal_message())


def route_report(ex: Exchange, plan: RequestPlan, stopped: str, now: float) -> str:
    """Route by route, why none answered: ``coder[0]: failed (rate_limited); coder[1]: skipped: …``."""
    failed: dict[str, list[str]] = {}
    for verdict, outcome in ex.failures:
        account = outcome.attempt.account
        who = f"{account.id}: " if account is not None and len(outcome.attempt.route.accounts) > 1 else ""
        failed.setdefault(outcome.attempt.route.label, []).append(who + verdict.error_class.value)
    parts = []
    for route in ex.routes:
        label = route.label
        if label in failed:
            parts.append(f"{label}: failed ({', '.join(failed[label])})")
        elif label in plan.refusals:
            parts.append(f"{label}: {plan.refusals[label].describe(now)}")
        elif label in plan.notes:
            parts.append(f"{label}: {plan.notes[label]}")
        else:
            parts.append(f"{label}: not tried ({stopped or 'no attempt left'})")
    return "; ".join(parts)


def outage_key(ex: Exchange) -> str:
    """What an outage is tracked for: the alias, or under ``*`` the model name asked for."""
    return ex.parsed.model if ex.alias.name == WILDCARD else ex.alias.name


def stop_message(
    model: str,
    out_for: float,
    settings: Settings,
    health: HealthStore,
    outages: OutageBoard,
    api: Api,
) -> str:
    """What the user reads when the client is told to stop."""
    healthy = list(healthy_models(settings, health, outages, api, exclude=model))
    if healthy:
        shown = ", ".join(healthy[:MAX_LISTED]) + (", …" if len(healthy) > MAX_LISTED else "")
        others = f"models that answer now: {shown}"
    else:
        others = "no other model of this gateway answers now"
    return (
        f"model '{model}' has been unavailable for {format_wait(out_for)} (every route failed); "
        f"not retrying further: {others}"
    )


def healthy_models(
    settings: Settings, health: HealthStore, outages: OutageBoard, api: Api, *, exclude: str
) -> Iterable[str]:
    """Public model names (aliases) with a route that serves ``api`` and whose health admits it
    now: those served natively first (the client's own API's models), then those served
    through translation."""
    translated: list[str] = []
    for name, alias in settings.models.items():
        if name in (exclude, WILDCARD) or outages.out_for(name) is not None:
            continue
        native = False
        serves = False
        for route in alias.routes:
            provider = settings.providers[route.provider]
            upstream = serving_api(route, provider, api)
            if upstream is None or not route_admitted(settings, health, route):
                continue
            serves = True
            if upstream is api:
                native = True
                break
        if native:
            yield name
        elif serves:
            translated.append(name)
    yield from translated


def route_admitted(settings: Settings, health: HealthStore, route: Route) -> bool:
    """Whether some account of ``route`` (or its provider's key) has every health scope closed."""
    provider = settings.providers[route.provider]
    accounts: list[Account | None] = [settings.accounts[a] for a in route.accounts]
    for account in accounts or [None]:
        keys = Attempt(route, provider, account, route.model, provider.apis[0]).health_keys()
        if all(health.reopens_at(k) is None for k in keys):
            return True
    return False
