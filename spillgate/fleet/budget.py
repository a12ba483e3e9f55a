"""The retry budget's window shared by every instance.

Each instance counts its own client requests and extra attempts (the
:class:`~spillgate.resilience.budget.RetryBudget` answers ``try_spend`` locally, no round trip),
and every :data:`SYNC_EVERY` seconds one pipeline adds its new counts to the window's time slices
in Redis (``<ns>:budget:<slice>``, a hash with a field per instance, a TTL of two windows) and
reads the slices back: what the other instances counted becomes the budget's ``others``. The
budget is then a fleet's: two instances facing one outage spend one budget, not two.
"""

from __future__ import annotations

import math
from typing import Any

from spillgate.fleet.link import Every, RedisLink
from spillgate.resilience.budget import RetryBudget

SYNC_EVERY = 0.2
SLICES = 10


class SharedBudget:
    def __init__(self, budget: RetryBudget, link: RedisLink) -> None:
        self.budget = budget
        self.link = link
        self._sent = (budget.requests_total, budget.extra_total)
        self._every = Every("spillgate-budget-sync", SYNC_EVERY, self.sync)

    def start(self) -> None:
        self._every.start()

    async def close(self) -> None:
        await self._every.close()

    async def sync(self) -> None:
        budget, link = self.budget, self.link
        width = budget.window / SLICES
        now_slice = math.floor(link.wall() / width)
        requests, extra = budget.requests_total, budget.extra_total
        dr, de = requests - self._sent[0], extra - self._sent[1]
        me = link.instance
        ttl_ms = max(1, int(budget.window * 2 * 1000))
        names = [link.key("budget", str(s)) for s in range(now_slice - SLICES + 1, now_slice + 1)]

        async def run(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            if dr or de:
                pipe.hincrby(names[-1], f"{me}|r", dr)
                pipe.hincrby(names[-1], f"{me}|e", de)
                pipe.pexpire(names[-1], ttl_ms)
            for name in names:
                pipe.hgetall(name)
            result: list[Any] = await pipe.execute()
            return result

        result = await link.call("budget", run)
        if result is None:
            budget.others = (0, 0)  # the store is away: this instance's window alone
            return
        self._sent = (requests, extra)
        others_r = others_e = 0
        for fields in result[-len(names) :]:
            for field, value in (fields or {}).items():
                name = field.decode() if isinstance(field, bytes) else str(field)
                owner, _, which = name.rpartition("|")
                if owner == me:
                    continue
                if which == "r":
                    others_r += int(value)
                elif which == "e":
                    others_e += int(value)
        budget.others = (others_r, others_e)
