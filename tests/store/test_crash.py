"""A SIGKILLed gateway loses at most about a second of usage records (SQLite, WAL, NORMAL sync)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from tests.eventually import eventually

RATE = 2000  # records per second


def test_sigkill_loses_at_most_a_second(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    script = Path(__file__).with_name("crash_writer.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(RATE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    counts: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            counts.append(int(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def has_submitted(at_least: int) -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return bool(counts) and counts[-1] >= at_least

    try:
        # Started (imports done, store open), then under load for about 2 s (the rate paces it).
        asyncio.run(eventually(lambda: has_submitted(1), timeout=15, what="the writer to start"))
        asyncio.run(eventually(lambda: has_submitted(2 * RATE), timeout=15, what=f"{2 * RATE} records"))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    submitted = counts[-1]  # the last count printed: at most 0.1 s behind what was submitted
    assert submitted >= RATE  # it ran for a while
    (rows,) = sqlite3.connect(db).execute("SELECT COUNT(*) FROM requests").fetchone()
    print(f"submitted >= {submitted}, rows {rows}")
    assert rows >= submitted + RATE // 10 - RATE, (rows, submitted)
    assert rows <= submitted + RATE // 5
