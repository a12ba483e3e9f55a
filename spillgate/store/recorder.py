"""Recording usage off the critical path: ``submit`` appends to a list; a background task writes
batches every ``flush_interval`` seconds (or as soon as ``max_batch`` records wait)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from spillgate.store.records import Pending

log = logging.getLogger("spillgate.store")


class UsageSink(Protocol):
    """Where batches go: a :class:`~spillgate.store.UsageStore`, or the writer process."""

    async def write_batch(self, batch: Sequence[Pending]) -> None: ...

    async def settle(self) -> None:
        """Return once every batch handed over is in the database (or failed)."""


class UsageRecorder:
    """Buffers records and writes them in batches.

    - :meth:`submit` is O(1), never awaits and never raises; call it from the event loop's thread.
    - A batch is written every ``flush_interval`` seconds, or at once when ``max_batch`` are waiting,
      so a crash loses at most ``flush_interval`` plus one write's worth of records.
    - A failed write is logged and counted (``errors``), retried once after a short pause, then
      dropped and counted (``dropped``). At most ``max_pending`` records wait; beyond that new ones
      are dropped and counted, so a dead store never grows memory without bound.
    - :meth:`close` writes what is left (the store itself is closed by its owner).
    """

    def __init__(
        self,
        store: UsageSink,
        flush_interval: float = 0.5,
        max_batch: int = 500,
        max_pending: int = 100_000,
        retry_delay: float | None = None,
    ) -> None:
        if flush_interval <= 0 or max_batch <= 0 or max_pending < max_batch:
            raise ValueError("need flush_interval > 0, max_batch > 0 and max_pending >= max_batch")
        self.store = store
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.retry_delay = min(flush_interval, 1.0) if retry_delay is None else retry_delay
        self.written = 0
        """Records written."""
        self.dropped = 0
        """Records lost: dropped after a failed retry, over ``max_pending``, or submitted after close."""
        self.errors = 0
        """Failed write attempts (a batch that fails, then succeeds on retry, counts 1)."""
        self.batches = 0
        """Successful writes (transactions)."""
        self._buffer: list[Pending] = []
        self._in_flight = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Records submitted and neither written nor dropped yet."""
        return len(self._buffer) + self._in_flight

    def start(self) -> None:
        """Start the background writer (``submit`` starts it too, from inside a running loop)."""
        if self._task is None and not self._closing:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="spillgate-usage-recorder")

    def submit(self, record: Pending) -> None:
        try:
            if self._closing:
                self.dropped += 1
                return
            if self.pending >= self.max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.warning(
                        "usage recorder buffer full (%d): %d records dropped", self.max_pending, self.dropped
                    )
                return
            self._buffer.append(record)
            if self._task is None:
                try:
                    self.start()
                except RuntimeError:  # no running loop yet: the records wait for start()
                    return
            if len(self._buffer) >= self.max_batch and self._wake is not None:
                self._wake.set()
        except Exception:  # never into the caller
            self.dropped += 1
            log.exception("usage recorder: submit failed")

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            if len(self._buffer) < self.max_batch and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.flush_interval)
            wake.clear()
            await self._flush()
            if self._closing and not self._buffer:
                return

    async def _flush(self) -> None:
        """Write everything buffered now, ``max_batch`` at a time."""
        while self._buffer:
            batch = self._buffer[: self.max_batch]
            del self._buffer[: self.max_batch]
            self._in_flight = len(batch)
            try:
                await self._write(batch)
            finally:
                self._in_flight = 0

    async def _write(self, batch: list[Pending]) -> None:
        for attempt in (1, 2):
            try:
                await self.store.write_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                if attempt == 1:
                    log.warning(
                        "usage store write of %d records failed (%s: %s); retrying once",
                        len(batch),
                        type(exc).__name__,
                        str(exc)[:200],
                    )
                    await asyncio.sleep(self.retry_delay)
                    continue
                self.dropped += len(batch)
                log.error(
                    "usage store write of %d records failed again (%s: %s); dropped them (%d dropped in all)",
                    len(batch),
                    type(exc).__name__,
                    str(exc)[:200],
                    self.dropped,
                )
                return
            self.written += len(batch)
            self.batches += 1
            return

    async def flush(self) -> None:
        """Write what is buffered now, and wait until it is in the database."""
        if self._task is None:
            await self._flush()
            await self.store.settle()
            return
        # Let the writer do it, so that no two writes run at once.
        while self.pending and not self._task.done():
            assert self._wake is not None
            self._wake.set()
            await asyncio.sleep(0.005)
        await self.store.settle()

    async def close(self) -> None:
        """Stop taking records and write what is left."""
        if self._closed:
            return
        self._closing = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                await self._task
            except Exception:
                log.exception("usage recorder task failed")
        await self._flush()  # records submitted before any loop ran, or left by a failed task
        self._closed = True
