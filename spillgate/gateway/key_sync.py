"""Keeps the running gateway's stored client keys and budget counts in step with the usage store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from spillgate.store.keys import NOTHING_USED, KeyRegistry

if TYPE_CHECKING:
    from spillgate.gateway.core import Gateway

log = logging.getLogger("spillgate.keys")


class KeySync:
    """Re-reads the active keys (made / revoked by ``spillgate keys``) and the tokens and money each
    key with a budget has used, every ``interval`` seconds. A store that cannot be read leaves the
    last keys in force and is logged once per outage."""

    def __init__(self, registry: KeyRegistry, gateway: Callable[[], Gateway], interval: float) -> None:
        self.registry = registry
        self._gateway = gateway
        self.interval = interval
        self.refreshes = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def refresh(self) -> None:
        gateway = self._gateway()
        stored = await self.registry.active()
        gateway.set_stored_keys(stored, any_made=bool(stored) or await self.registry.made_any())
        keys = gateway.auth.keys
        periods = gateway.limiter.budget_periods(keys)
        if periods:
            used = await self.registry.budget_used(periods)
            by_name = {k.name: k for k in keys}
            for name, start in periods:
                use = used.get(name, NOTHING_USED)
                gateway.limiter.set_budget_used(by_name[name], start, use.tokens, use.usd)
        self.refreshes += 1

    async def refresh_logged(self) -> None:
        """:meth:`refresh`, a failure logged (a push from another process asked for it)."""
        try:
            await self.refresh()
        except Exception as exc:
            self.failures += 1
            log.warning("cannot re-read client keys from the usage store (keeping the last): %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="spillgate-key-sync")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:
                self.failures += 1
                if not self._failing:
                    log.warning("cannot re-read client keys from the usage store (keeping the last): %s", exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("client keys re-read from the usage store again")
                self._failing = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
