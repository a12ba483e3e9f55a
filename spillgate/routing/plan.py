"""Order an alias's routes for one request (pure: no I/O, randomness passed in)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from itertools import groupby

from spillgate.config.schema import WILDCARD, ModelAlias, Provider, Route
from spillgate.protocols.apis import Api


def serving_api(route: Route, provider: Provider, api: Api) -> Api | None:
    """The upstream API an attempt on ``route`` speaks for a client of ``api``: ``api`` itself
    where the provider serves it; else (translated) the provider's first API of the client's
    own family, else its first; ``None`` when the route may not translate (``translate:
    false``, or a ``*`` route, whose model name is the client's own API's)."""
    if provider.serves(api):
        return api
    if not route.translate or route.model == WILDCARD or not provider.apis:
        return None
    return next((a for a in provider.apis if a.family == api.family), provider.apis[0])


def route_tier(route: Route, providers: Mapping[str, Provider], api: Api) -> tuple[int, bool]:
    """Where ``route`` stands for a client of ``api``: its priority, and within one priority
    the routes that serve the API natively first."""
    return route.priority, not providers[route.provider].serves(api)


def compatible_routes(alias: ModelAlias, api: Api, providers: Mapping[str, Provider]) -> tuple[Route, ...]:
    """The routes that can serve a client of ``api``, natively or translated, in
    :func:`route_tier` order."""
    usable = [r for r in alias.routes if serving_api(r, providers[r.provider], api) is not None]
    usable.sort(key=lambda r: route_tier(r, providers, api))
    return tuple(usable)


def order_routes(
    routes: Sequence[Route], rng: random.Random, tier: Callable[[Route], object] = lambda r: r.priority
) -> list[Route]:
    """Routes by ``tier`` (priority); within one tier, a weighted random order.

    ``routes`` must already be sorted by tier (:func:`compatible_routes` does that).
    """
    ordered: list[Route] = []
    for _, tier_iter in groupby(routes, key=tier):
        group = list(tier_iter)
        if len(group) == 1:
            ordered.append(group[0])
            continue
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        keyed = sorted(group, key=lambda r: rng.random() ** (1.0 / r.weight), reverse=True)
        ordered.extend(keyed)
    return ordered
