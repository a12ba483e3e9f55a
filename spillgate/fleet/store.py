"""The shared state of one instance, assembled: its link to Redis and every store that uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from spillgate.config.schema import SharedState
from spillgate.fleet.affinity import SharedAffinity
from spillgate.fleet.budget import SharedBudget
from spillgate.fleet.events import SharedEvents
from spillgate.fleet.health import SharedHealth
from spillgate.fleet.limits import SharedLimiter
from spillgate.fleet.link import RedisLink, ping
from spillgate.fleet.metrics import Exports, SharedMetrics, WorkerSlot
from spillgate.fleet.slots import SharedInflight
from spillgate.limits.limiter import KeyLimiter
from spillgate.observe.events import Observer
from spillgate.resilience.budget import RetryBudget
from spillgate.resilience.health import HealthBoard


class Fleet:
    """Health, retry budget, concurrency slots and session bindings shared through one Redis."""

    def __init__(
        self,
        settings: SharedState,
        board: HealthBoard,
        budget: RetryBudget,
        session_bindings: int,
        *,
        instance: str | None = None,
        wall: Callable[[], float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.link = RedisLink(settings, instance=instance, **({"wall": wall} if wall else {}))
        self.health = SharedHealth(board, self.link)
        self.budget = SharedBudget(budget, self.link)
        self.inflight = SharedInflight(self.link, settings.slot_ttl)
        self.affinity = SharedAffinity(self.link, session_bindings, settings.session_ttl)
        local = KeyLimiter(clock=clock, wall=self.link.wall) if clock is not None else None
        self.limiter = SharedLimiter(self.link, settings.slot_ttl, local)
        self._keys_changed: list[Callable[[], None]] = []
        self.metrics: SharedMetrics | None = None
        self.events: SharedEvents | None = None
        """Set when this process is one worker of several (:meth:`join_workers`)."""
        self.link.on("keys", self._on_keys)

    def join_workers(self, slot: WorkerSlot, exports: Exports, failures: Sequence[Observer]) -> Observer:
        """This process is worker ``slot.index`` of ``slot.count``: share ``exports`` (metrics,
        timeline) with the others and feed their failed requests and attempts to ``failures``.
        Returns the observer to subscribe to this worker's events."""
        self.metrics = SharedMetrics(self.link, exports, slot)
        self.events = SharedEvents(self.link, slot.group, failures)
        return self.events

    async def start(self) -> None:
        await self.link.start()
        self.budget.start()
        self.inflight.start()
        self.limiter.start()
        if self.metrics is not None:
            self.metrics.start()
        if self.events is not None:
            self.events.start()

    async def close(self) -> None:
        if self.metrics is not None:
            await self.metrics.close()
        if self.events is not None:
            await self.events.close()
        await self.limiter.close()
        await self.budget.close()
        await self.inflight.close()
        await self.link.close()

    # -- stored client keys ---------------------------------------------------------------------

    def on_keys_changed(self, callback: Callable[[], None]) -> None:
        """``callback`` runs when another process says the stored keys changed."""
        self._keys_changed.append(callback)

    def _on_keys(self, body: dict[str, Any]) -> None:
        for callback in self._keys_changed:
            callback()


async def announce_keys_changed(settings: SharedState) -> bool:
    """Tell every running instance on ``settings``' store that stored keys changed (the ``keys``
    commands call it after a create or revoke). Whether the store took the message."""
    link = RedisLink(settings)
    try:
        await asyncio.wait_for(ping(link.client), settings.timeout * 8)
        await link.client.publish(link.channel, link.message("keys"))
        return True
    except Exception:
        return False
    finally:
        await link.client.aclose()
