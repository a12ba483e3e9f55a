"""The writer process: frames round-trip to the same records; the child writes every whole frame it
read, also when its input ends early; the gateway side feeds a real child."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spillgate.store import AttemptRecord, RequestRecord, SqliteStore
from spillgate.store.records import ATTEMPT_COLUMNS
from spillgate.store.wire import encode_event, join, rows_of, rows_of_json
from spillgate.store.writer import WriterProcess, frame, may_leave_idle, serve
from tests.eventually import eventually

from .records import attempt, attempt_event, request, request_event

T0 = 1_800_000_000.0

REQUEST_EVENT = request_event(
    api="openai-responses",
    ok=False,
    status=503,
    error_class="capacity",
    latency=1.5,
    first_token=None,
    output_tokens=None,
    cached_tokens=3,
    client_app="codex_cli_rs/0.169.0",
    fingerprint=42,
)
ATTEMPT_EVENT = attempt_event(
    api="openai-responses",
    status=503,
    error_class="capacity",
    scope="account_model",
    rule="builtin.capacity",
    latency=0.25,
    first_byte=0.01,
)


def test_every_form_of_an_item_makes_the_same_rows() -> None:
    stamped = [(T0, REQUEST_EVENT), (T0 - 1.0, ATTEMPT_EVENT)]
    records = [request(1), attempt(2)]
    requests, attempts = rows_of([*stamped, *records])
    assert requests[0][0] == T0 - 1.5 and requests[0][1:4] == ("e1", "team", "codex_cli_rs/0.169.0")
    row = dict(zip(ATTEMPT_COLUMNS, attempts[0], strict=True))
    assert attempts[0][0] == T0 - 1.25 and (row["latency_ms"], row["first_byte_ms"]) == (250.0, 10.0)
    assert (row["api"], row["upstream_api"], row["omitted"]) == ("openai-responses", None, None)  # native
    # Encoded on the event loop (what the gateway does), then read back in the writer process:
    encoded = [encode_event(*item) for item in stamped]
    assert rows_of_json(join([*encoded, *records])) == (requests, attempts)
    assert rows_of([*encoded, *records]) == (requests, attempts)
    # The record made from an event agrees with the row made from it.
    assert RequestRecord.from_event(REQUEST_EVENT, time=T0 - 1.5).latency_ms == requests[0][14] == 1500.0
    assert AttemptRecord.from_event(ATTEMPT_EVENT, time=T0 - 1.25).first_byte_ms == row["first_byte_ms"]
    whole = frame(records)
    assert int.from_bytes(whole[:4], "big") == len(whole) - 4


def _rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("select count(*) from requests").fetchone()[0],
            conn.execute("select count(*) from attempts").fetchone()[0],
        )


def test_the_child_writes_every_whole_frame_then_stops_at_a_cut_one(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    whole = frame([(T0, REQUEST_EVENT), (T0, ATTEMPT_EVENT)]) + frame([request(3)])
    assert serve(f"sqlite:{db}", io.BytesIO(whole)) == 0
    assert _rows(db) == (2, 1)
    cut = frame([request(4)])
    assert serve(f"sqlite:{db}", io.BytesIO(whole + cut[:-3])) == 1  # the gateway died mid-write
    assert _rows(db) == (4, 2)


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[WriterProcess, Path]]:
    """A real writer child on a migrated SQLite file (as the gateway runs it)."""
    db = tmp_path / "u.db"
    SqliteStore(db)  # migrated, as the gateway's own store does on start
    writer = WriterProcess(f"sqlite:{db}")
    await writer.start()
    try:
        yield writer, db
    finally:
        await writer.close()


async def test_the_gateway_side_feeds_a_real_child(started: tuple[WriterProcess, Path]) -> None:
    writer, db = started
    assert writer.pid is not None
    for i in range(20):
        await writer.write_batch([encode_event(T0 + i, REQUEST_EVENT), (T0 + i, ATTEMPT_EVENT)])
    await writer.settle()  # every frame acknowledged: in the database, the child still running
    assert writer.done == writer.sent == 20 and _rows(db) == (20, 20)
    await writer.write_batch([request(99)])
    await writer.close()  # writes what is left, then the child exits
    assert _rows(db) == (21, 20)
    store = SqliteStore(db)
    [first, *_] = await store.requests_for("e1")
    assert first.time == T0 - 1.5 and first.client_app == "codex_cli_rs/0.169.0" and first.cached_tokens == 3
    await store.close()


async def test_an_idle_class_writer_is_lifted_while_it_falls_behind(
    started: tuple[WriterProcess, Path],
) -> None:
    writer, _ = started
    await writer.write_batch([request(1)])
    await writer.settle()
    assert writer.pid is not None
    if not may_leave_idle():
        assert os.sched_getscheduler(writer.pid) != os.SCHED_IDLE  # never stuck in the idle class
        return
    assert os.sched_getscheduler(writer.pid) == os.SCHED_IDLE
    writer._sent_at.append(0.0)  # a batch sent long ago, not finished yet
    writer.keep_up(now=1.0)
    assert os.sched_getscheduler(writer.pid) == os.SCHED_OTHER and writer.lifts == 1
    assert os.getpriority(os.PRIO_PROCESS, writer.pid) == 10
    writer._sent_at.clear()  # caught up
    writer.keep_up()
    assert os.sched_getscheduler(writer.pid) == os.SCHED_IDLE


async def test_a_writer_that_died_is_replaced(started: tuple[WriterProcess, Path]) -> None:
    writer, db = started
    await writer.write_batch([request(1)])
    await writer.settle()
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await eventually(
        lambda: writer._proc is not None and writer._proc.returncode is not None,
        what="the gateway side to see the writer go",
    )
    await writer.write_batch([request(2)])
    await writer.settle()
    assert writer.pid != first and writer.restarts == 1
    assert _rows(db) == (2, 0)


async def test_the_dsn_is_not_on_the_writers_command_line(started: tuple[WriterProcess, Path]) -> None:
    """A PostgreSQL DSN carries its password: ``ps`` shows every user a command line, so the
    writer child gets the DSN in its environment."""
    writer, db = started
    assert writer._proc is not None
    cmdline = Path(f"/proc/{writer._proc.pid}/cmdline").read_bytes().split(b"\0")
    assert str(db).encode() not in b" ".join(cmdline)
    assert cmdline[-3:-1] == [b"-m", b"spillgate.store.writer"]
