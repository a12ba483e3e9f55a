"""The dashboard's recent failures of a gateway run as several workers: each worker passes its
failed requests and attempts to the others of its group, in one message every
:data:`FLUSH_EVERY` seconds, and feeds theirs to its own record of recent failures — so whichever
worker answers the dashboard's poll lists them all. Only failures travel (successes, the bulk,
cost nothing here); the timeline's counts are shared as buckets (:mod:`spillgate.fleet.metrics`),
metrics, limits, usage records and the loop signal their own ways."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from spillgate.fleet.link import Every, RedisLink
from spillgate.observe.events import AttemptFinished, Event, Observer, RequestFinished

FLUSH_EVERY = 0.1
MAX_BATCH = 5000
"""Events held between two flushes at most (the oldest are dropped past it)."""

_KINDS: dict[str, type[AttemptFinished] | type[RequestFinished]] = {
    "attempt": AttemptFinished,
    "request": RequestFinished,
}
_FIELDS = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in _KINDS.items()}


class SharedEvents:
    def __init__(self, link: RedisLink, group: str, views: Sequence[Observer]) -> None:
        self.link = link
        self.group = group
        self.views = list(views)
        self._batch: list[tuple[str, Event]] = []
        self._every = Every("spillgate-event-share", FLUSH_EVERY, self.flush)
        link.on("events", self._received)

    def __call__(self, event: Event) -> None:
        """Event observer: keep a failed ``event`` for the next batch to the other workers."""
        if event.ok:
            return
        if len(self._batch) >= MAX_BATCH:
            del self._batch[0]
        self._batch.append(("attempt" if isinstance(event, AttemptFinished) else "request", event))

    def start(self) -> None:
        self._every.start()

    async def close(self) -> None:
        await self._every.close()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self.link.publish("events", {"g": self.group, "e": batch})

    def _received(self, body: dict[str, Any]) -> None:
        if body.get("g") != self.group:
            return
        for kind, fields in body["e"]:
            cls = _KINDS[kind]
            event = cls(**{k: v for k, v in fields.items() if k in _FIELDS[kind]})
            for view in self.views:
                view(event)
