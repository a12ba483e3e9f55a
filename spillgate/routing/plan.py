"""Order an alias's routes for one request (pure: no I/O, randomness passed in)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import groupby

from spillgate.config.schema import ModelAlias, Provider, Route
from spillgate.protocols.apis import Api


def compatible_routes(alias: ModelAlias, api: Api, providers: dict[str, Provider]) -> tuple[Route, ...]:
    """The routes whose provider speaks the protocol family of ``api``."""
    return tuple(r for r in alias.routes if providers[r.provider].protocol == api.family)


def order_routes(routes: Sequence[Route], rng: random.Random) -> list[Route]:
    """Routes by priority; within one priority, a weighted random order.

    ``routes`` must already be sorted by priority (the loader does that).
    """
    ordered: list[Route] = []
    for _, tier_iter in groupby(routes, key=lambda r: r.priority):
        tier = list(tier_iter)
        if len(tier) == 1:
            ordered.append(tier[0])
            continue
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        keyed = sorted(tier, key=lambda r: rng.random() ** (1.0 / r.weight), reverse=True)
        ordered.extend(keyed)
    return ordered
