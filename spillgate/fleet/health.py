"""Health per scope shared by every instance: a local replica answers, Redis carries the news.

Each instance keeps its own :class:`~spillgate.resilience.health.HealthBoard`; admissions read it
(no round trip on the request path). When a key opens, reopens, lengthens, closes, is disabled or
enabled here, its state is written to ``<ns>:health:<key>`` (with a TTL) and published; the other
instances apply it to their boards (the later change wins), so a cooldown opened by one is in
force on every other within the pub/sub delay. An instance that starts, or comes back after an
outage of the store, loads every stored key and republishes what changed here meanwhile.

**One probe fleet-wide.** When a key turns half-open, the first caller on each instance would be
its probe. Here it is not: it goes elsewhere while the instance claims the key's probe lease
(``SET <ns>:probe:<key> <instance> NX PX probe_ttl``); the instance that wins lets its next caller
probe, the others mark the probe as in flight and wait for its outcome (published like any
change). A lease whose holder died expires after ``breaker.probe_ttl``, and so does the mark.
A lease claimed but not used within :data:`UNUSED_LEASE` seconds is given back.

While the store is away each instance decides alone, as without a shared store.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson

from spillgate.fleet.link import RedisLink, pipeline_script
from spillgate.resilience.health import Admission, HealthBoard, HealthConfig, ScopeSnapshot, SharedScope
from spillgate.resilience.types import ErrorClass

UNUSED_LEASE = 2.0
DISABLED_TTL = 7 * 24 * 3600.0
"""Seconds a disabled key's record lives in the store (each instance keeps it until enabled)."""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def encode(key: str, scope: SharedScope | None, wall: float) -> dict[str, Any]:
    if scope is None:
        return {"k": key, "closed": True, "at": wall}
    return {
        "k": key,
        "d": scope.disabled,
        "u": None if math.isinf(scope.until_in) else wall + scope.until_in,
        "r": scope.reason,
        "c": scope.opened_by.value if scope.opened_by is not None else None,
        "o": scope.opens,
        "s": list(scope.streaks),
        "at": wall - scope.changed_ago if math.isfinite(scope.changed_ago) else wall,
    }


def decode(body: dict[str, Any], wall: float) -> tuple[str, SharedScope | None, float]:
    """``(key, scope or None for closed, seconds since the change)``; raises on a malformed body."""
    key = body["k"]
    if not isinstance(key, str):
        raise TypeError("key is not a string")
    ago = max(0.0, wall - float(body["at"]))
    if body.get("closed"):
        return key, None, ago
    until = body["u"]
    streaks = body["s"]
    cls = body["c"]
    return (
        key,
        SharedScope(
            disabled=bool(body["d"]),
            until_in=math.inf if until is None else float(until) - wall,
            reason=str(body["r"]),
            opened_by=ErrorClass(cls) if cls is not None else None,
            opens=int(body["o"]),
            streaks=(int(streaks[0]), int(streaks[1]), int(streaks[2])),
            changed_ago=ago,
        ),
        ago,
    )


class SharedHealth:
    """A :class:`~spillgate.resilience.stores.HealthStore` whose board is shared through Redis."""

    def __init__(self, board: HealthBoard, link: RedisLink) -> None:
        self.board = board
        self.link = link
        self._leases: dict[str, bool] = {}
        """Keys whose probe lease this instance holds → whether a caller is using it."""
        self._claiming: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.remote_applied = 0
        """Changes taken from other instances (a test and /metrics read it)."""
        board.on_change = self._publish
        link.on("health", self._received)
        link.on_resync(self.resync)
        self._release = link.client.register_script(_RELEASE)

    # -- HealthStore ----------------------------------------------------------------------------

    @property
    def config(self) -> HealthConfig:
        return self.board.config

    @config.setter
    def config(self, value: HealthConfig) -> None:
        self.board.config = value

    def admit(self, key: str) -> Admission:
        answer = self.board.admit(key)
        if not answer.probe or not self.link.up:
            return answer
        if self._leases.get(key) is False:
            self._leases[key] = True  # this caller is the fleet's probe
            return answer
        # Not this instance's probe (yet): the caller goes elsewhere, the board shows the probe
        # as in flight, and the lease is claimed for the next caller.
        if key not in self._claiming:
            self._claiming.add(key)
            self._spawn(self._claim(key))
        return Admission(False, False, self.board.reopens_at(key), answer.reason, None)

    def peek(self, key: str) -> Admission:
        return self.board.peek(key)

    def reopens_at(self, key: str) -> float | None:
        return self.board.reopens_at(key)

    def record_success(self, key: str) -> None:
        self.board.record_success(key)
        self._done_probing(key)

    def record_failure(
        self,
        key: str,
        error_class: ErrorClass,
        retry_at: float | None = None,
        reason: str = "",
        trip: bool = False,
    ) -> None:
        self.board.record_failure(key, error_class, retry_at, reason, trip)
        self._done_probing(key)

    def release_probe(self, key: str) -> None:
        self.board.release_probe(key)
        self._done_probing(key)

    def disable(self, key: str, reason: str) -> None:
        self.board.disable(key, reason)

    def enable(self, key: str) -> None:
        had = key in self.board.held()
        self.board.enable(key)  # publishes when this board had the key
        if not had:
            # Enabled by an operator: every instance forgets it, even when this one knew nothing.
            self._publish(key)

    def snapshot(self) -> list[ScopeSnapshot]:
        return self.board.snapshot()

    def __len__(self) -> int:
        return len(self.board)

    # -- the probe lease ------------------------------------------------------------------------

    def _lease_key(self, key: str) -> str:
        return self.link.key("probe", key)

    async def _claim(self, key: str) -> None:
        ttl_ms = max(1, int(self.board.config.probe_ttl * 1000))
        try:
            got = await self.link.call(
                "probe_lease",
                lambda r: r.set(self._lease_key(key), self.link.instance, nx=True, px=ttl_ms),
            )
        finally:
            self._claiming.discard(key)
        if got is None and not self.link.up:
            self.board.release_probe(key)  # the store is away: probe locally
            return
        if got:
            self._leases[key] = False
            self.board.release_probe(key)  # the next caller here probes
            asyncio.get_running_loop().call_later(UNUSED_LEASE, self._give_back_unused, key)
        else:
            self.board.hold_probe(key)  # another instance probes: wait for its outcome

    def _give_back_unused(self, key: str) -> None:
        if self._leases.get(key) is False:
            del self._leases[key]
            self._free_lease(key)

    def _done_probing(self, key: str) -> None:
        if self._leases.pop(key, None) is not None:
            self._free_lease(key)

    def _free_lease(self, key: str) -> None:
        lease, me = self._lease_key(key), self.link.instance
        self.link.write(lambda p: pipeline_script(p, self._release, [lease], [me]))

    # -- sharing --------------------------------------------------------------------------------

    def _state_key(self, key: str) -> str:
        return self.link.key("health", key)

    def _publish(self, key: str) -> None:
        if not self.link.up:
            return
        scope = self.board.exported(key)
        body = encode(key, scope, self.link.wall())
        state_key = self._state_key(key)
        if scope is None:

            def op(p: Any) -> None:
                p.delete(state_key)
                self.link.publish("health", body, p)
        else:
            ttl = (
                DISABLED_TTL if scope.disabled else max(scope.until_in, 0.0) + self.board.config.forget_after
            )
            value = orjson.dumps(body)

            def op(p: Any) -> None:
                p.set(state_key, value, px=max(1, int(ttl * 1000)))
                self.link.publish("health", body, p)

        self.link.write(op)

    def _received(self, body: dict[str, Any]) -> None:
        key, scope, ago = decode(body, self.link.wall())
        if self.board.apply(key, scope, ago):
            self.remote_applied += 1
            if self._leases.get(key) is False:  # claimed, not yet used: the news makes it moot
                del self._leases[key]
                self._free_lease(key)

    async def resync(self) -> None:
        """Load every stored key, then republish the keys this board changed later (or alone)."""
        prefix = self.link.key("health") + ":"
        loaded: set[str] = set()
        newer_here: list[str] = []
        cursor: int = 0
        while True:
            cursor, names = await self.link.client.scan(cursor, match=prefix + "*", count=500)
            if names:
                values = await self.link.client.mget(names)
                wall = self.link.wall()
                for value in values:
                    if value is None:
                        continue
                    try:
                        key, scope, ago = decode(_loads(value), wall)
                    except (KeyError, TypeError, ValueError):
                        continue
                    loaded.add(key)
                    if self.board.apply(key, scope, ago):
                        self.remote_applied += 1
                    else:
                        newer_here.append(key)
            if cursor == 0:
                break
        for key in self.board.held():
            if key not in loaded and self.board.exported(key) is not None:
                newer_here.append(key)
        for key in newer_here:
            self._publish(key)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _loads(value: bytes) -> dict[str, Any]:
    body = orjson.loads(value)
    if not isinstance(body, dict):
        raise TypeError("not an object")
    return body
