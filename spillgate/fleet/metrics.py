"""``/metrics`` and the dashboard's timeline of a gateway run as several workers (``spillgate
serve --workers N``): whichever worker the call lands on answers for all of them.

Every :data:`SHARE_EVERY` seconds each worker stores what it counted — its metrics
(:meth:`Metrics.export`) and its timeline's buckets (:meth:`Timeline.export`) — under
``<ns>:metrics:{<group>}:<index>`` with a TTL of :data:`KEEP`; a scrape or a dashboard poll reads
the other workers' in one ``MGET`` and merges them (counters, histograms and buckets summed;
gauges of shared state, like health, taken once). ``<group>`` is the supervisor's: separate
instances are scraped separately, as Prometheus expects. A worker that died stops counting once
its entry expires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.fleet.link import Every, RedisLink

SHARE_EVERY = 1.0
KEEP = 5.0


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    index: int
    count: int
    group: str
    """The supervisor's id (host, pid): the workers of one ``spillgate serve``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerSlot | None:
        """``SPILLGATE_WORKER=i/N`` and ``SPILLGATE_GROUP``, as the supervisor sets them."""
        worker, group = env.get("SPILLGATE_WORKER", ""), env.get("SPILLGATE_GROUP", "")
        index, _, count = worker.partition("/")
        if not (index.isdigit() and count.isdigit() and group):
            return None
        return cls(int(index), int(count), group)


Exports = Mapping[str, Callable[[], Any]]
"""What a worker shares: a name (``metrics``, ``timeline``) → how to export it now."""


class SharedMetrics:
    def __init__(self, link: RedisLink, exports: Exports, slot: WorkerSlot) -> None:
        self.link = link
        self.exports = exports
        self.slot = slot
        self._every = Every("spillgate-metrics-share", SHARE_EVERY, self.share)

    def _key(self, index: int) -> str:
        return self.link.key("metrics", str(index), tag=self.slot.group)

    def start(self) -> None:
        self._every.start()

    async def close(self) -> None:
        await self._every.close()

    def share(self) -> None:
        body = {name: export() for name, export in self.exports.items()}
        key, value = self._key(self.slot.index), orjson.dumps(body)
        self.link.write(lambda p: p.set(key, value, px=int(KEEP * 1000)))

    async def others(self, name: str) -> list[Any]:
        """The other workers' last export of ``name`` (none while the store is away)."""
        names = [self._key(i) for i in range(self.slot.count) if i != self.slot.index]
        if not names:
            return []
        values = await self.link.call("metrics", lambda r: r.mget(names))
        out = []
        for value in values or ():
            if value is None:
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                body = orjson.loads(value)
                if isinstance(body, dict) and name in body:
                    out.append(body[name])
        return out
