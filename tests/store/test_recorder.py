"""The recorder: submit never blocks nor raises, batches are bounded in size and in time, close
flushes, and a failing store is counted, retried once, then dropped (with bounded memory)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from spillgate.store import SqliteStore, UsageRecorder, UsageStore
from spillgate.store.records import Pending
from tests.eventually import eventually

from .records import attempt, request


async def test_batches_and_close_flushes(store: UsageStore) -> None:
    recorder = UsageRecorder(store, flush_interval=0.2, max_batch=500)
    for i in range(1200):
        recorder.submit(request(i))
        recorder.submit(attempt(i))
    assert recorder.pending == 2400  # nothing written on the submitting path
    await recorder.close()
    assert (recorder.written, recorder.pending, recorder.dropped, recorder.errors) == (2400, 0, 0, 0)
    assert recorder.batches == store.writes == 5  # 2400 records / 500 per transaction
    assert len(await store.requests_for("req-1199")) == 1
    assert len(await store.attempts_for("req-0")) == 1


async def test_flush_interval_bounds_latency(store: UsageStore) -> None:
    recorder = UsageRecorder(store, flush_interval=0.1)
    start = time.monotonic()
    recorder.submit(request(1))

    async def first_written() -> bool:
        return bool(await store.requests_for("req-1"))

    await eventually(first_written, timeout=1.0, what="the record (it waited more than 1 s)")
    assert time.monotonic() - start < 0.5
    for i in range(10):  # a trickle is written in interval-sized batches, not one by one
        recorder.submit(request(100 + i))
        await asyncio.sleep(0.01)  # the trickle's pace (what is under test), not synchronisation
    await eventually(lambda: recorder.written == 11 and recorder.pending == 0, timeout=1.0)
    assert recorder.batches <= 4
    await recorder.close()


async def test_a_full_batch_is_written_at_once(store: UsageStore) -> None:
    recorder = UsageRecorder(store, flush_interval=30.0, max_batch=50)
    for i in range(50):
        recorder.submit(request(i))
    await eventually(lambda: recorder.written == 50, timeout=2.0)
    assert recorder.batches == 1
    recorder.submit(request(99))
    await asyncio.sleep(0.1)  # asserts that nothing is written: a bounded wait
    assert recorder.pending == 1  # below max_batch: waits for the interval (or close)
    await recorder.close()
    assert recorder.written == 51


async def test_explicit_flush(store: UsageStore) -> None:
    recorder = UsageRecorder(store, flush_interval=30.0)
    recorder.submit(request(7))
    await asyncio.wait_for(recorder.flush(), 2.0)
    assert len(await store.requests_for("req-7")) == 1
    await recorder.close()


class FlakyStore(SqliteStore):
    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.calls = 0

    async def write_batch(self, batch: Sequence[Pending]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("disk on fire")
        await super().write_batch(batch)


async def test_one_failure_is_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(tmp_path / "u.db", failures=1)
    recorder = UsageRecorder(store, flush_interval=0.05, retry_delay=0.01)
    recorder.submit(request(1))
    await recorder.close()
    assert (recorder.written, recorder.errors, recorder.dropped, store.calls) == (1, 1, 0, 2)
    assert "disk on fire" in caplog.text and "retrying once" in caplog.text
    await store.close()


async def test_two_failures_drop_the_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(tmp_path / "u.db", failures=2)
    recorder = UsageRecorder(store, flush_interval=0.05, retry_delay=0.01)
    for i in range(3):
        recorder.submit(request(i))
    await eventually(lambda: recorder.pending == 0, timeout=2.0)
    assert (recorder.written, recorder.errors, recorder.dropped) == (0, 2, 3)
    assert "dropped them" in caplog.text
    recorder.submit(request(10))  # the store recovered: later records are written
    await recorder.close()
    assert (recorder.written, recorder.dropped) == (1, 3)
    assert await store.requests_for("req-10") != []
    await store.close()


async def test_a_dead_store_bounds_memory(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "u.db", failures=10**9)
    recorder = UsageRecorder(store, flush_interval=0.02, max_batch=10, max_pending=100, retry_delay=0.0)
    for i in range(1000):
        recorder.submit(request(i))  # never raises
    assert recorder.pending == 100 and recorder.dropped == 900
    await recorder.close()
    assert recorder.pending == 0 and recorder.dropped == 1000 and recorder.written == 0
    assert recorder.errors == 20  # 10 batches, each tried twice
    await store.close()


async def test_submit_after_close_is_dropped_not_raised(store: UsageStore) -> None:
    recorder = UsageRecorder(store)
    await recorder.close()
    recorder.submit(request(1))
    assert recorder.dropped == 1


async def test_submit_is_cheap_and_never_awaits(store: UsageStore) -> None:
    recorder = UsageRecorder(store, flush_interval=0.05, max_batch=500)
    records = [request(i) for i in range(20_000)]
    start = time.perf_counter()
    for r in records:
        recorder.submit(r)
    per_submit = (time.perf_counter() - start) / len(records)
    assert per_submit < 20e-6, f"{per_submit * 1e6:.1f} µs per submit"
    await recorder.close()
    assert recorder.written == 20_000


def test_records_submitted_before_a_loop_runs_are_kept(tmp_path: Path) -> None:
    async def go() -> int:
        store = SqliteStore(tmp_path / "u.db")
        recorder = UsageRecorder(store)
        recorder.start()
        await recorder.close()
        await store.close()
        return recorder.written

    assert asyncio.run(go()) == 0
    store = SqliteStore(tmp_path / "v.db")
    recorder = UsageRecorder(store)
    recorder.submit(request(1))  # no running loop: buffered, not raised
    assert recorder.pending == 1

    async def finish() -> int:
        await recorder.close()
        await store.close()
        return recorder.written

    assert asyncio.run(finish()) == 1


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        UsageRecorder(None, flush_interval=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        UsageRecorder(None, max_batch=10, max_pending=5)  # type: ignore[arg-type]
