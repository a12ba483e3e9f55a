"""Client-key limits held across instances: requests and tokens per minute, concurrency, token and
spend budgets, with the same refusals as the in-memory :class:`~spillgate.limits.limiter.KeyLimiter`.

:meth:`SharedLimiter.check` costs one round trip: one script on the key's Redis keys, all tagged
``{ck:<key name>}`` (one Redis Cluster hash slot), checks in :class:`KeyLimiter`'s order (token
budget, spend budget, concurrency, requests per minute, tokens per minute) and, when all pass, takes
what admitting takes.
The allow-list of models is checked here without Redis, and a key without limits (or with nothing
but an allow-list) writes nothing. The keys, each with a TTL set by the script that writes it:

- ``<ns>:limits:{ck:NAME}:budget:<period>:<start>``: the tokens used in the budget period that
  starts at ``start`` (the gateway's wall clock picks the period, as in memory). It lives until the
  period's end plus :data:`BUDGET_MARGIN`; a ``total`` budget's counter lives :data:`TOTAL_TTL`,
  refreshed by every spend and by every reconciliation with the usage store (which keeps the
  durable count: a counter that expired or a store that restarted empty is set back from it
  within ``limits.key_refresh``);
- ``<ns>:limits:{ck:NAME}:spend:<period>:<start>``: the money used in that period, in whole
  nano-dollars (:func:`~spillgate.limits.limiter.nano_usd`), with the same lifetime and
  reconciliation as the token counter. An integer and ``INCRBY``, not ``INCRBYFLOAT``: integer sums
  are exact and the same whatever the order the instances' increments land in, the comparison with
  the budget and the reconciliation's "keep the larger" are exact, and the in-memory limiter counts
  in the same unit, so both decide alike at the budget's edge (a float counter drifts by rounding
  and prints 17 digits). A 64-bit counter holds $9.2 billion; Lua compares exactly up to 2^53
  nano-dollars ($9 million a period), past that to within a few nano-dollars;
- ``<ns>:limits:{ck:NAME}:slots``: a sorted set of request slot → expiry on Redis's clock (as the
  accounts' slots): slots held by running requests are renewed every third of ``state.slot_ttl``,
  a dead instance's expire after it;
- ``<ns>:limits:{ck:NAME}:rpm`` / ``:tpm``: token buckets (level, time on Redis's clock, capacity);
  the TPM bucket may go into debt, and a request is admitted while it is not. A bucket lives until it
  would be full again plus a minute (a missing bucket is a full one).

Tokens and cost are taken when a request ends (:meth:`SharedLimiter.spend`): one pipelined script
takes the tokens from the TPM bucket and adds tokens and nano-dollars to the budget counters, their
expiry set in the same script (an increment never outlives its TTL). Releasing a slot is a pipelined
``ZREM``; neither waits.

While the store is away (or slower than ``state.timeout``) a request is never failed: the local
:class:`KeyLimiter` inside decides, with this instance's own counts (documented: during an outage
each instance enforces the limits alone). It is kept warm: every shared admission and spend is
recorded in it too, and the budget counts it reads from the usage store are merged with the fleet's.
When the store is back, the slots of the requests still running here are put back in it.
:meth:`SharedLimiter.usage` (the admin API) is that local view; refusals are counted per instance.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spillgate.config.schema import ClientKey
from spillgate.fleet.link import Every, RedisLink, pipeline_script
from spillgate.limits.limiter import (
    NANO,
    KeyLimiter,
    KeyUsage,
    LimitName,
    Refusal,
    budget_refusal,
    concurrency_refusal,
    model_refusal,
    nano_usd,
    rpm_refusal,
    spend_limit,
    spend_refusal,
    spent,
    tpm_refusal,
)
from spillgate.limits.periods import period_bounds
from spillgate.observe.events import Event

BUDGET_MARGIN = 3600.0
"""Seconds a budget period's counter outlives the period (a late spend, a clock a little behind)."""
TOTAL_TTL = 90 * 86400.0
"""Seconds a ``total`` budget's counter lives after its last spend or reconciliation."""
MAX_ORPHANS = 1000
"""Slots of timed-out checks remembered for removal (more expire on their own after the slot TTL)."""

_BUCKET = """
local function level(key, cap, now)
  local b = redis.call('HMGET', key, 'l', 't', 'c')
  if not b[1] or tonumber(b[3]) ~= cap then return cap end
  return math.min(cap, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * cap / 60000)
end
local function put(key, l, cap, now)
  redis.call('HSET', key, 'l', l, 't', now, 'c', cap)
  redis.call('PEXPIRE', key, math.ceil((cap - l) * 60000 / cap) + 60000)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_CHECK = (
    _BUCKET
    + """
local budget, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, spend = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local used, spent = 0, '0'
if budget > 0 then used = tonumber(redis.call('GET', KEYS[1]) or '0') end
if spend > 0 then spent = redis.call('GET', KEYS[5]) or '0' end
if budget > 0 and used >= budget then return {0, 'budget', '', used, spent} end
if spend > 0 and tonumber(spent) >= spend then return {0, 'spend', '', used, spent} end
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= limit then return {0, 'concurrency', tostring(n), used, spent} end
end
local requests
if rpm > 0 then
  requests = level(KEYS[3], rpm, now)
  if requests < 1 then return {0, 'rpm', tostring((1 - requests) * 60 / rpm), used, spent} end
end
if tpm > 0 then
  local tokens = level(KEYS[4], tpm, now)
  if tokens < 0 then return {0, 'tpm', tostring(-tokens * 60 / tpm), used, spent} end
end
if rpm > 0 then put(KEYS[3], requests - 1, rpm, now) end
if limit > 0 then
  local ttl = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
end
return {1, '', '', used, spent}
"""
)
"""KEYS: token budget, slots, rpm, tpm, spend budget; ARGV: token budget, max_concurrent, slot, slot
TTL (ms), rpm, tpm, spend budget in nano-dollars (0: no such limit, its key untouched).
``{admitted, limit, detail, tokens used, nano-dollars used}`` (the last as a string: exact); the
detail is the fleet's in-flight count or the seconds to wait."""

_SPEND = (
    _BUCKET
    + """
local tokens, tpm, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nanos, spend_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if tpm > 0 and tokens > 0 then put(KEYS[2], level(KEYS[2], tpm, now) - tokens, tpm, now) end
if ttl > 0 and tokens > 0 then
  redis.call('INCRBY', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if spend_ttl > 0 and nanos > 0 then
  redis.call('INCRBY', KEYS[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], spend_ttl)
end
return 1
"""
)
"""KEYS: token budget, tpm, spend budget; ARGV: tokens, tpm (0: none), the token counter's TTL in ms
(0: no token budget), nano-dollars, the spend counter's TTL in ms (0: no spend budget). The amounts
go to ``INCRBY`` as sent (a Lua number would print as ``1e+14`` past 14 digits)."""

_SET_USED = """
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  if tonumber(ARGV[i]) > tonumber(current or '0') then
    redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl)
  elseif current then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"""
"""KEYS: budget counters (tokens, nano-dollars); ARGV: the usage store's count for each, then the TTL
in ms. Each counter keeps the larger."""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 3, #ARGV do
  if ARGV[2] == 'XX' then redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  else redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
"""
"""KEYS: slots; ARGV: TTL (ms), ``XX`` (renew only the slots still there: a released one stays gone)
or ``ADD`` (put them back, after an outage), the slots."""


@dataclass(frozen=True, slots=True)
class _Period:
    """A key's budget counters for one budget period."""

    tokens: str
    """The token counter's name."""
    usd: str
    """The spend counter's name (nano-dollars)."""
    start: float
    end: float | None
    ttl_ms: int
    """The counters' TTL (0: the period has ended)."""


class SharedLimiter:
    """A :class:`~spillgate.limits.store.LimitStore` whose limits hold fleet-wide. ``local`` (made
    here when not given) must read the link's wall clock: both pick the budget period."""

    def __init__(self, link: RedisLink, slot_ttl: float, local: KeyLimiter | None = None) -> None:
        self.link = link
        self.slot_ttl = slot_ttl
        self.local = local if local is not None else KeyLimiter(wall=link.wall)
        """Decides while the store is away; fed with every shared decision meanwhile."""
        self.refusals: Mapping[tuple[str, LimitName], int] = self.local.refusals
        """Requests refused by this instance, per (key name, limit): the local limiter's counter, which
        counts the shared decisions too."""
        self.fallbacks = 0
        """Checks decided on local state because the store was away."""
        self._keys: dict[str, ClientKey] = {}
        """Key name → the key as last seen (a spend names only the key)."""
        self._held: dict[str, list[str]] = {}
        """Key name → the concurrency slots this instance's requests hold in the store."""
        self._unslotted: dict[str, int] = {}
        """Key name → requests with a concurrency limit admitted here while the store was away."""
        self._orphans: list[tuple[str, str]] = []
        """(slots, slot) of checks that timed out: the script may have run all the same, so the store
        is told to drop them when it is back."""
        self._serial = itertools.count()
        client = link.client
        self._check = client.register_script(_CHECK)
        self._spend = client.register_script(_SPEND)
        self._set_used = client.register_script(_SET_USED)
        self._renew = client.register_script(_RENEW)
        self._every = Every("spillgate-key-slot-renewal", self.slot_ttl / 3, self.renew)
        link.on_resync(self._resync)

    # -- naming ---------------------------------------------------------------------------------

    def _name(self, key: str, what: str) -> str:
        return self.link.key("limits", what, tag=f"ck:{key}")

    def _period(self, key: ClientKey, wall: float, start: float | None = None) -> _Period:
        """The key's budget counters for the period holding ``wall`` (or the one that begins at
        ``start``), their TTL counted from ``wall``."""
        period = key.limits.budget_period
        start, end = period_bounds(period, wall if start is None else start)
        ttl = TOTAL_TTL if end is None else end - wall + BUDGET_MARGIN
        return _Period(
            tokens=self._name(key.name, f"budget:{period}:{start:.0f}"),
            usd=self._name(key.name, f"spend:{period}:{start:.0f}"),
            start=start,
            end=end,
            ttl_ms=max(0, int(ttl * 1000)),
        )

    # -- the request path -----------------------------------------------------------------------

    async def check(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        limits = key.limits
        if limits.unlimited:
            return None
        refusal = model_refusal(limits, requested, alias)
        if refusal is not None:
            self.local.refused(key.name, refusal)
            return refusal
        self._keys[key.name] = key
        budget, spend, limit, rpm, tpm = (
            limits.token_budget or 0,
            spend_limit(limits) or 0,
            limits.max_concurrent or 0,
            limits.rpm or 0,
            limits.tpm or 0,
        )
        if not (budget or spend or limit or rpm or tpm):
            self.local.started(key)  # an allow-list alone: nothing to share
            return None
        wall = self.link.wall()
        if budget or spend:
            period = self._period(key, wall)
            tokens_key, usd_key, start, end = period.tokens, period.usd, period.start, period.end
        else:  # not touched
            tokens_key, usd_key = self._name(key.name, "budget"), self._name(key.name, "spend")
            start, end = 0.0, None
        slots = self._name(key.name, "slots")
        slot = f"{self.link.instance}:{next(self._serial)}" if limit else ""
        keys = [tokens_key, slots, self._name(key.name, "rpm"), self._name(key.name, "tpm"), usd_key]
        args: list[int | str] = [budget, limit, slot, max(1, int(self.slot_ttl * 1000)), rpm, tpm, spend]
        asked = self.link.up
        try:
            answer = await self.link.call("limits", lambda r: self._check(keys=keys, args=args, client=r))
        except BaseException:
            if slot:  # cancelled while the script may have run: give the slot back
                self.link.write(lambda p: p.zrem(slots, slot))
            raise
        if answer is None:
            if slot and asked and len(self._orphans) < MAX_ORPHANS:
                self._orphans.append((slots, slot))
            return self._decide_locally(key, requested, alias)
        admitted, which, detail, used = int(answer[0]), _text(answer[1]), _text(answer[2]), int(answer[3])
        if budget or spend:
            self.local.set_budget_used(key, start, used, int(_text(answer[4])) / NANO)
        if admitted:
            self.local.started(key)
            if slot:
                self._held.setdefault(key.name, []).append(slot)
            return None
        if which == "budget":
            refusal = budget_refusal(limits, end, wall)
        elif which == "spend":
            refusal = spend_refusal(limits, end, wall)
        elif which == "concurrency":
            refusal = concurrency_refusal(int(detail), limit)
        elif which == "rpm":
            refusal = rpm_refusal(rpm, float(detail))
        else:
            refusal = tpm_refusal(tpm, float(detail))
        self.local.refused(key.name, refusal)
        return refusal

    def _decide_locally(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        self.fallbacks += 1
        refusal = self.local.admit(key, requested, alias)
        if refusal is None and key.limits.max_concurrent:
            self._unslotted[key.name] = self._unslotted.get(key.name, 0) + 1
        return refusal

    def admit(self, key: ClientKey, requested: str, alias: str) -> Refusal | None:
        """This instance's own decision (no round trip): the protocol's synchronous method."""
        if key.limits.unlimited:
            return None
        self._keys[key.name] = key
        refusal = self.local.admit(key, requested, alias)
        if refusal is None and key.limits.max_concurrent:
            self._unslotted[key.name] = self._unslotted.get(key.name, 0) + 1
        return refusal

    def release(self, key: ClientKey) -> None:
        if key.limits.unlimited:
            return
        self.local.release(key)
        name = key.name
        unslotted = self._unslotted.get(name, 0)
        if unslotted:  # a request admitted without a slot ended (which one does not matter)
            if unslotted > 1:
                self._unslotted[name] = unslotted - 1
            else:
                del self._unslotted[name]
            return
        held = self._held.get(name)
        if held:
            slot = held.pop()
            if not held:
                del self._held[name]
            slots = self._name(name, "slots")
            self.link.write(lambda p: p.zrem(slots, slot))

    def spend(self, name: str, tokens: int, usd: float = 0.0) -> None:
        """Take ``tokens`` from the key's per-minute bucket and add them to its token budget, ``usd``
        to its spend budget (pipelined)."""
        self.local.spend(name, tokens, usd)
        key = self._keys.get(name)
        tokens, nanos = max(0, tokens), max(0, nano_usd(usd))
        if key is None:
            return
        limits = key.limits
        tpm = (limits.tpm or 0) if tokens else 0
        count_tokens = limits.token_budget is not None and tokens > 0
        count_usd = limits.spend_budget is not None and nanos > 0
        if not (tpm or count_tokens or count_usd):
            return
        period = self._period(key, self.link.wall())
        keys = [period.tokens, self._name(name, "tpm"), period.usd]
        ttl = period.ttl_ms
        args: list[object] = [tokens, tpm, ttl if count_tokens else 0, nanos, ttl if count_usd else 0]
        self.link.write(lambda p: pipeline_script(p, self._spend, keys, args))

    def __call__(self, event: Event) -> None:
        """Event observer: a finished request's tokens and cost count against its key."""
        taken = spent(event)
        if taken is not None:
            self.spend(taken.name, taken.tokens, taken.usd)

    # -- budgets reconciled with the usage store ------------------------------------------------

    def budget_periods(self, keys: tuple[ClientKey, ...]) -> list[tuple[str, float]]:
        return self.local.budget_periods(keys)

    def set_budget_used(self, key: ClientKey, start: float, tokens: int, usd: float) -> None:
        """The usage store's tokens and USD since ``start``: each of the fleet's counters keeps the
        larger of it and its own (the store lags by the records not yet flushed, the counter
        forgets on a restart)."""
        self.local.set_budget_used(key, start, tokens, usd)
        limits = key.limits
        if not limits.budgeted:
            return
        self._keys[key.name] = key
        period = self._period(key, self.link.wall(), start)
        if period.ttl_ms <= 0:
            return
        keys: list[str] = []
        args: list[object] = []
        if limits.token_budget is not None:
            keys.append(period.tokens)
            args.append(max(0, tokens))
        if limits.spend_budget is not None:
            keys.append(period.usd)
            args.append(max(0, nano_usd(usd)))
        args.append(period.ttl_ms)
        self.link.write(lambda p: pipeline_script(p, self._set_used, keys, args))

    def usage(self) -> list[KeyUsage]:
        """This instance's view (its own requests in flight and buckets; the budget as last merged)."""
        return self.local.usage()

    # -- slot renewal ---------------------------------------------------------------------------

    def start(self) -> None:
        self._every.start()

    async def close(self) -> None:
        await self._every.close()

    async def renew(self) -> None:
        """Push the expiry of every slot held here (one pipeline), so a live request keeps its slot."""
        if self._held:
            await self.link.call("limits_renew", lambda r: self._put_slots(r, "XX"))

    async def _resync(self) -> None:
        """The store is back (perhaps restarted empty): the requests running here hold slots again,
        those admitted during the outage included."""
        for name, n in self._unslotted.items():
            self._held.setdefault(name, []).extend(
                f"{self.link.instance}:{next(self._serial)}" for _ in range(n)
            )
        self._unslotted.clear()
        orphans, self._orphans = self._orphans, []
        if self._held or orphans:
            await asyncio.wait_for(
                self._put_slots(self.link.client, "ADD", orphans), self.link.settings.timeout * 4
            )

    async def _put_slots(self, r: Any, mode: str, orphans: Sequence[tuple[str, str]] = ()) -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for zset, slot in orphans:
            pipe.zrem(zset, slot)
        ttl_ms = max(1, int(self.slot_ttl * 1000))
        for name, slots in sorted(self._held.items()):
            pipeline_script(pipe, self._renew, [self._name(name, "slots")], [ttl_ms, mode, *slots])
        result: list[Any] = await pipe.execute()
        return result


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
