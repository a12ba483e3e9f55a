"""One instance's link to the shared state store (Redis or Valkey): bounded calls, batched writes,
one pub/sub channel, and the fallback to local state while the store is away.

Every shared store reads its local replica on the request path and reaches Redis through here:

- :meth:`RedisLink.write` queues a write; the writes of one event-loop iteration go out as one
  pipeline (no round trip is awaited on the request path for them);
- :meth:`RedisLink.call` runs one call that must answer (a limit check, a probe lease) within
  ``state.timeout``; ``None`` back means "the store is away: decide locally";
- :meth:`RedisLink.publish` sends a message on the namespace's channel; every other instance's
  handler for its ``t`` (type) gets it, usually within a millisecond;
- while the store is away every call falls back at once (no timeout paid per request), the
  failures are counted (``/metrics``), a warning is logged at most once a minute, a supervisor
  reconnects with backoff and, once back, runs each store's resynchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from spillgate.config.schema import SharedState

log = logging.getLogger("spillgate.state")

T = TypeVar("T")
Handler = Callable[[dict[str, Any]], None]
Resync = Callable[[], Awaitable[None]]
WriteOp = Callable[[Pipeline], object]
"""Adds commands to a pipeline (what it returns is ignored: the pipeline runs them)."""

LOG_EVERY = 60.0
"""Seconds between two warnings about the same store outage."""
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
"""Reconnect attempts: the first after this long, doubling up to the cap."""
PING_EVERY = 1.0
"""While up, the supervisor pings this often, so that an idle instance sees an outage too."""
MAX_QUEUED = 10_000
"""Writes held while one pipeline is in flight; past it the oldest are dropped (and counted)."""


def instance_id() -> str:
    """This process's name in the fleet: host, pid and a random suffix (a restarted pid differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class RedisLink:
    """The connection, the write queue, the channel and the up/down state of one instance."""

    def __init__(
        self,
        settings: SharedState,
        *,
        instance: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert settings.url is not None
        self.settings = settings
        self.instance = instance or instance_id()
        self.wall = wall
        self.prefix = settings.namespace
        self.channel = f"{self.prefix}:bus"
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.url,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            retry_on_timeout=False,
            retry=None,
            max_connections=64,
            client_name=f"spillgate:{self.instance}",
        )
        self.up = False
        """The store answered the last call: shared state is in force."""
        self.errors: dict[str, int] = {}
        """Failed store calls, per operation (``/metrics``: ``spillgate_state_store_errors_total``)."""
        self.fallbacks = 0
        """Decisions taken on local state because the store was away."""
        self.dropped_writes = 0
        self.outages = 0
        self._handlers: dict[str, Handler] = {}
        self._resyncs: list[Resync] = []
        self._queue: list[WriteOp] = []
        self._flushing = False
        self._flush_scheduled = False
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._last_log = -LOG_EVERY
        self._closed = False

    # -- naming -------------------------------------------------------------------------------

    def key(self, kind: str, name: str = "", tag: str | None = None) -> str:
        """``<namespace>:<kind>:<name>``; ``tag`` puts ``{tag}`` in it, so that the keys one script
        touches share a Redis Cluster hash slot."""
        parts = [self.prefix, kind]
        if tag is not None:
            parts.append(f"{{{tag}}}")
        if name:
            parts.append(name)
        return ":".join(parts)

    # -- wiring ---------------------------------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Call ``handler`` for each message of type ``kind`` another instance publishes."""
        self._handlers[kind] = handler

    def on_resync(self, resync: Resync) -> None:
        """Run ``resync`` each time the store is reached (at start and after an outage)."""
        self._resyncs.append(resync)

    async def start(self) -> None:
        """Connect (not waiting past ``state.timeout``: a store that is away is retried in the
        background while the gateway serves on local state)."""
        await self._connect()
        self._tasks.append(asyncio.create_task(self._supervise(), name="spillgate-state-supervisor"))
        self._tasks.append(asyncio.create_task(self._listen(), name="spillgate-state-listener"))

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush_now(), self.settings.timeout * 4)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            await _close(self._pubsub)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.aclose(), 1.0)

    # -- calls ----------------------------------------------------------------------------------

    async def call(self, op: str, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        """``fn(client)`` within the store's timeout, or ``None`` (counted) when the store is away."""
        if not self.up:
            self.fallbacks += 1
            return None
        try:
            return await asyncio.wait_for(fn(self.client), self.settings.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, exc)
            self.fallbacks += 1
            return None

    def write(self, op: WriteOp) -> None:
        """Queue a write for this loop iteration's pipeline; dropped while the store is away (the
        resynchronisation after it republishes what matters)."""
        if not self.up:
            self.dropped_writes += 1
            return
        if len(self._queue) >= MAX_QUEUED:
            del self._queue[0]
            self.dropped_writes += 1
        self._queue.append(op)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._schedule_flush)

    def message(self, kind: str, body: dict[str, Any] | None = None) -> bytes:
        """A message of type ``kind`` from this instance, as the channel carries it."""
        return orjson.dumps({"t": kind, "i": self.instance, **(body or {})})

    def publish(self, kind: str, body: dict[str, Any], pipe: Pipeline | None = None) -> None:
        """Tell every other instance (``kind`` picks their handler)."""
        message = self.message(kind, body)
        if pipe is not None:
            pipe.publish(self.channel, message)
        else:
            self.write(lambda p: p.publish(self.channel, message))

    async def drained(self, timeout: float = 1.0) -> None:
        """Wait until the queued writes have gone out (tests; a clean stop)."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._flushing or self._flush_scheduled) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def _schedule_flush(self) -> None:
        self._flush_scheduled = False
        if not self._flushing and self._queue:
            self._flushing = True
            task = asyncio.create_task(self._flush_loop())
            task.add_done_callback(_log_crash)

    async def _flush_loop(self) -> None:
        try:
            while self._queue and self.up:
                await self._flush_now()
        finally:
            self._flushing = False

    async def _flush_now(self) -> None:
        ops, self._queue = self._queue, []
        if not ops:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for op in ops:
                op(pipe)
            await asyncio.wait_for(pipe.execute(raise_on_error=False), self.settings.timeout * 4)
        except (RedisError, OSError, TimeoutError) as exc:
            self.dropped_writes += len(ops)
            self._failed("write", exc)

    # -- up and down ----------------------------------------------------------------------------

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors[op] = self.errors.get(op, 0) + 1
        if self.up:
            self.up = False
            self.outages += 1
            self._wake.set()
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            log.warning(
                "shared state store unreachable (%s: %s): serving on this instance's local state, "
                "limits are per instance until it is back",
                op,
                type(exc).__name__,
            )

    async def _connect(self) -> bool:
        try:
            await asyncio.wait_for(ping(self.client), self.settings.timeout * 4)
            # A new subscription on a connection of its own; the listener closes the old one
            # once its read has ended (closing it here would hand its connection, still being
            # read, back to the pool).
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self.settings.timeout * 4)
            except BaseException:
                await _close(pubsub)
                raise
            self._pubsub = pubsub
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("connect", exc)
            return False
        self.up = True
        for resync in self._resyncs:
            try:
                await resync()
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("resync", exc)
                return False
        if self.outages:
            log.info("shared state store reachable again: state is shared across instances")
        return True

    async def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._closed:
            if self.up:
                backoff = BACKOFF_FIRST
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), PING_EVERY)
                if self.up:
                    try:
                        await asyncio.wait_for(ping(self.client), self.settings.timeout * 4)
                    except (RedisError, OSError, TimeoutError) as exc:
                        self._failed("ping", exc)
                continue
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)
            try:
                await self._connect()
            except Exception as exc:  # whatever the client raises, the supervisor goes on
                self._failed("connect", exc)

    async def _listen(self) -> None:
        while not self._closed:
            pubsub = self._pubsub
            if not self.up or pubsub is None:
                await asyncio.sleep(0.05)
                continue
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            except Exception as exc:
                if pubsub is self._pubsub:
                    self._failed("subscribe", exc)
                    self._pubsub = None
                await _close(pubsub)
                continue
            if pubsub is not self._pubsub:  # replaced by a reconnection: this one is done
                await _close(pubsub)
                continue
            if message is None or message.get("type") != "message":
                continue
            self._dispatch(message.get("data"))

    def _dispatch(self, data: object) -> None:
        try:
            body = orjson.loads(data) if isinstance(data, bytes | str) else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or body.get("i") == self.instance:
            return
        handler = self._handlers.get(str(body.get("t")))
        if handler is None:
            return
        try:
            handler(body)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a malformed shared-state message (%s): %s", body.get("t"), exc)


class Every:
    """A background task that runs ``step`` (a function or a coroutine function) every ``seconds``
    until :meth:`close`; a failing step is logged and the next one runs on time."""

    def __init__(self, name: str, seconds: float, step: Callable[[], Awaitable[None] | None]) -> None:
        self.name, self.seconds, self.step = name, seconds, step
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.seconds)
            try:
                result = self.step()
                if result is not None:
                    await result
            except Exception:
                log.exception("%s failed (it runs again in %gs)", self.name, self.seconds)


def pipeline_script(pipe: Pipeline, script: AsyncScript, keys: list[str], args: list[object]) -> None:
    """Add a registered script's call to ``pipe`` (loaded on the server first if it lost it)."""
    pipe.scripts.add(script)  # type: ignore[arg-type]
    pipe.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[arg-type]


def ping(client: aioredis.Redis) -> Awaitable[object]:
    """The client's PING, typed (redis-py types it for sync and async clients at once)."""
    return cast("Awaitable[object]", client.ping())


async def _close(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("shared state writer failed", exc_info=task.exception())
