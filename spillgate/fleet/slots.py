"""Per-account in-flight counts and ``max_concurrency`` slots held across instances.

The planner reads in-flight counts synchronously (least loaded first, full accounts skipped):
:attr:`SharedInflight.counts` is this instance's own count plus, for accounts with a limit, what
the other instances hold as last seen. An attempt on an account with ``max_concurrency`` first
reserves a slot (:meth:`reserve`): one script on Redis's own clock drops expired slots, refuses when the
account is full fleet-wide and otherwise adds a slot (``<ns>:slots:{acct:<id>}``, a sorted set
of slot → expiry). Slots held by streams are renewed every third of ``state.slot_ttl``; a dead
instance's slots expire after it. Accounts without a limit write nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from spillgate.fleet.link import Every, RedisLink, pipeline_script
from spillgate.state.memory import InflightCounter

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, n + 1}
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
"""


_RESTORE = _RENEW.replace("'XX', ", "")
"""The renewal without ``XX``: slots that the store lost are added again."""


class SharedInflight:
    """An :class:`~spillgate.state.stores.InflightStore` with fleet-wide ``max_concurrency``."""

    def __init__(self, link: RedisLink, slot_ttl: float) -> None:
        self.link = link
        self.slot_ttl = slot_ttl
        self.local = InflightCounter()
        self._held: dict[str, list[str]] = {}
        """Account → the slots this instance holds on it."""
        self._others: dict[str, int] = {}
        """Account → slots the other instances held when last seen."""
        self._serial = itertools.count()
        self._reserve = link.client.register_script(_RESERVE)
        self._renew = link.client.register_script(_RENEW)
        self._restore = link.client.register_script(_RESTORE)
        self._every = Every("spillgate-slot-renewal", self.slot_ttl / 3, self.renew)
        link.on_resync(self.resync)

    @property
    def counts(self) -> Mapping[str, int]:
        if not self._others:
            return self.local.counts
        merged = dict(self.local.counts)
        for account, n in self._others.items():
            merged[account] = merged.get(account, 0) + n
        return merged

    @property
    def local_counts(self) -> Mapping[str, int]:
        return self.local.counts

    def acquire(self, key: str) -> None:
        self.local.acquire(key)

    def release(self, key: str) -> None:
        self.local.release(key)
        held = self._held.get(key)
        if held:
            slot = held.pop()
            if not held:
                del self._held[key]
            zset = self._zset(key)
            self.link.write(lambda p: p.zrem(zset, slot))

    async def reserve(self, account: str, limit: int) -> bool:
        """Take one of ``account``'s ``limit`` slots fleet-wide (call before :meth:`acquire`;
        :meth:`release` frees it). With the store away: this instance's own count decides."""
        slot = f"{self.link.instance}:{next(self._serial)}"
        zset = self._zset(account)
        ttl_ms = max(1, int(self.slot_ttl * 1000))
        answer = await self.link.call(
            "slot", lambda r: self._reserve(keys=[zset], args=[slot, limit, ttl_ms], client=r)
        )
        mine = len(self._held.get(account, ()))
        if answer is None:
            self._others.pop(account, None)
            return self.local.counts.get(account, 0) < limit
        granted, total = int(answer[0]), int(answer[1])
        if not granted:
            self._others[account] = max(0, total - mine)
            return False
        self._held.setdefault(account, []).append(slot)
        self._set_others(account, total - mine - 1)
        return True

    def _set_others(self, account: str, n: int) -> None:
        if n > 0:
            self._others[account] = n
        else:
            self._others.pop(account, None)

    def _zset(self, account: str) -> str:
        return self.link.key("slots", tag=f"acct:{account}")

    async def resync(self) -> None:
        """The store is back (perhaps restarted, empty): put this instance's held slots back."""
        if not self._held:
            return
        ttl_ms = max(1, int(self.slot_ttl * 1000))
        pipe = self.link.client.pipeline(transaction=False)
        for account, slots in self._held.items():
            pipeline_script(pipe, self._restore, [self._zset(account)], [ttl_ms, *slots])
        await pipe.execute()

    # -- renewal --------------------------------------------------------------------------------

    def start(self) -> None:
        self._every.start()

    async def close(self) -> None:
        await self._every.close()

    async def renew(self) -> None:
        """Push the expiry of every slot held here; refresh what the others hold."""
        if not self._held and not self._others:
            return
        accounts = sorted(set(self._held) | set(self._others))
        ttl_ms = max(1, int(self.slot_ttl * 1000))

        async def run(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for account in accounts:
                pipeline_script(
                    pipe, self._renew, [self._zset(account)], [ttl_ms, *self._held.get(account, ())]
                )
            result: list[Any] = await pipe.execute()
            return result

        result = await self.link.call("slot_renew", run)
        if result is None:
            return
        for account, total in zip(accounts, result, strict=True):
            self._set_others(account, int(total) - len(self._held.get(account, ())))
