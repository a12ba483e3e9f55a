"""The Runtime: everything a gateway keeps across config reloads, in one typed object.

A :class:`~spillgate.gateway.core.Gateway` is built from ``(settings, runtime)``; a reload builds
a new Gateway on the same Runtime (after :meth:`Runtime.configure` applies the new settings'
tunables). The state stores (health, retry budget, in-flight counts, session affinity, client-key
limits) are typed by their interfaces (:mod:`spillgate.resilience.stores`,
:mod:`spillgate.state.stores`, :mod:`spillgate.limits.store`): in memory, or with
``state: redis://…`` the :mod:`spillgate.fleet` stores shared by every worker and instance.
The clock and the random source are injected here and nowhere else in the request path, so
tests of cooldowns move a clock instead of sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spillgate.config.schema import ClientKey, Limits, Provider, Settings
from spillgate.http.client import HttpClient
from spillgate.http.egress import tls_context
from spillgate.http.transport import Transport
from spillgate.limits.limiter import KeyLimiter
from spillgate.limits.store import LimitStore
from spillgate.observe.events import EventBus
from spillgate.observe.loops import LoopDetector
from spillgate.observe.metrics import Metrics
from spillgate.pricing.book import PriceBook
from spillgate.resilience.budget import RetryBudget
from spillgate.resilience.classify import Classifier
from spillgate.resilience.health import HealthBoard, HealthConfig
from spillgate.resilience.outage import OutageBoard
from spillgate.resilience.scoping import ScopeEvidence
from spillgate.resilience.stores import BudgetStore, HealthStore
from spillgate.state.memory import InflightCounter, SessionAffinity
from spillgate.state.stores import AffinityStore, InflightStore

if TYPE_CHECKING:
    from spillgate.fleet.store import Fleet

Clock = Callable[[], float]


@dataclass(slots=True)
class Counters:
    """Plain counts the request path keeps (exported by ``/metrics``)."""

    malformed_events: int = 0
    """Malformed upstream stream events dropped."""


@dataclass(slots=True)
class StoredKeys:
    """Client keys of the usage store (``spillgate keys create``), re-read while running."""

    keys: tuple[ClientKey, ...] = ()
    any_made: bool = False
    """Some key was ever created: the API is closed even when all are revoked."""


TransportFactory = Callable[[Provider, Limits], Transport]
"""Builds the transport to one provider (the seam tests plug an in-process mock into)."""


def http_transport(provider: Provider, limits: Limits) -> Transport:
    """The real one: a pooled HTTP/1.1 client to the provider's base URL, with its TLS settings
    (one context per pool) and its proxy."""
    return HttpClient(
        provider.base_url,
        max_connections=provider.max_connections,
        max_header_bytes=limits.max_upstream_header_bytes,
        max_body_bytes=limits.max_upstream_body_bytes,
        tls=None if provider.tls.default else tls_context(provider.tls),
        proxy=provider.proxy,
    )


@dataclass(slots=True)
class Pools:
    """Upstream transports (connection pools) per provider; a reload keeps a provider's pool when
    its URL and size are unchanged, and the retired gateway closes the ones no longer used."""

    factory: TransportFactory = http_transport
    by_provider: dict[str, tuple[Provider, Transport]] = field(default_factory=dict)

    def for_settings(self, settings: Settings) -> dict[str, Transport]:
        current: dict[str, tuple[Provider, Transport]] = {}
        for name, provider in settings.providers.items():
            old = self.by_provider.get(name)
            if old is not None and _same_pool(old[0], provider):
                current[name] = (provider, old[1])
                continue
            current[name] = (provider, self.factory(provider, settings.limits))
        self.by_provider = current
        return {name: client for name, (_, client) in current.items()}

    def in_use(self) -> set[int]:
        return {id(client) for _, client in self.by_provider.values()}


def _same_pool(old: Provider, new: Provider) -> bool:
    return (
        old.base_url == new.base_url
        and old.max_connections == new.max_connections
        and old.tls == new.tls  # its files' digest too: a rotated certificate makes a new pool
        and old.proxy == new.proxy
    )


@dataclass(slots=True)
class Runtime:
    """State that outlives a configuration. Build one with :meth:`create`."""

    clock: Clock
    """Monotonic seconds: every cooldown, deadline, window and latency of the request path."""
    wall: Clock
    """Wall-clock seconds (budget periods, timestamps)."""
    rng: random.Random
    health: HealthStore
    scopes: ScopeEvidence
    outages: OutageBoard
    budget: BudgetStore
    inflight: InflightStore
    affinity: AffinityStore
    events: EventBus
    metrics: Metrics
    loops: LoopDetector
    limiter: LimitStore
    classifier: Classifier
    """The current configuration's error rules; its hit counters carry over a reload."""
    prices: PriceBook = field(default_factory=PriceBook)
    """What tokens cost (``pricing``); its unknown-price counts carry over a reload."""
    counters: Counters = field(default_factory=Counters)
    stored_keys: StoredKeys = field(default_factory=StoredKeys)
    pools: Pools = field(default_factory=Pools)
    fleet: Fleet | None = None
    """The shared state store (``state: redis://…``); ``None``: everything in this process."""

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        rng: random.Random | None = None,
        transport: TransportFactory = http_transport,
    ) -> Runtime:
        """``transport``: how to reach a provider (tests pass an in-process mock)."""
        res = settings.resilience
        board = HealthBoard(health_config(settings), clock=clock)
        budget = RetryBudget(
            ratio=res.budget_ratio, floor=res.budget_floor, window=res.budget_window, clock=clock
        )
        health: HealthStore = board
        inflight: InflightStore = InflightCounter()
        affinity: AffinityStore = SessionAffinity(settings.limits.session_bindings)
        scopes = ScopeEvidence(res.widen_window, clock=clock)
        outages = OutageBoard(res.stop_retries_after, clock=clock)
        loops = LoopDetector(clock=clock)
        limiter: LimitStore = KeyLimiter(clock=clock, wall=wall)
        fleet: Fleet | None = None
        if settings.state.shared:
            # Imported here: a gateway on memory state never loads the Redis client (~5 MiB).
            from spillgate.fleet.observations import SharedEvidence, SharedLoops, SharedOutages
            from spillgate.fleet.store import Fleet

            fleet = Fleet(
                settings.state, board, budget, settings.limits.session_bindings, wall=wall, clock=clock
            )
            health, inflight, affinity = fleet.health, fleet.inflight, fleet.affinity
            link = fleet.link
            scopes = SharedEvidence(link, res.widen_window, clock)
            outages = SharedOutages(link, res.stop_retries_after, clock)
            loops = SharedLoops(link, clock)
            limiter = fleet.limiter
        runtime = cls(
            clock=clock,
            wall=wall,
            rng=rng or random.Random(),
            health=health,
            scopes=scopes,
            outages=outages,
            budget=budget,
            inflight=inflight,
            affinity=affinity,
            events=EventBus(),
            metrics=Metrics(),
            loops=loops,
            limiter=limiter,
            classifier=Classifier(settings.error_rules),
            pools=Pools(transport),
            fleet=fleet,
            prices=PriceBook(settings.pricing),
        )
        if settings.metrics:
            runtime.events.subscribe(runtime.metrics)
            runtime.events.subscribe(runtime.loops)
        return runtime

    def configure(self, settings: Settings) -> None:
        """Apply a reloaded configuration's tunables to the state that carries over. The retry
        budget's window, the affinity table's size and whether metrics are on need a restart."""
        res = settings.resilience
        self.health.config = health_config(settings)
        self.scopes.window = res.widen_window
        self.outages.stop_after = res.stop_retries_after
        self.budget.ratio, self.budget.floor = res.budget_ratio, res.budget_floor
        classifier = Classifier(settings.error_rules)
        classifier.carry_hits(self.classifier)
        self.classifier = classifier
        self.prices.configure(settings.pricing)


def health_config(settings: Settings) -> HealthConfig:
    res = settings.resilience
    c, b = res.cooldowns, res.breaker
    return HealthConfig(
        capacity_cooldown=c.capacity,
        capacity_cooldown_max=c.capacity_max,
        overloaded_cooldown=c.overloaded,
        overloaded_cooldown_max=c.overloaded_max,
        rate_limit_cooldown=c.rate_limited,
        quota_cooldown=c.quota_exhausted,
        not_found_cooldown=c.not_found,
        failure_threshold=b.failures,
        error_rate_threshold=b.error_rate,
        error_rate_window=b.window,
        error_rate_min_requests=b.min_requests,
        breaker_cooldown=b.cooldown,
        breaker_cooldown_max=b.cooldown_max,
        probe_ttl=b.probe_ttl,
    )
