"""A SIGKILLed gateway loses at most about a second of usage records (SQLite, WAL, NORMAL sync)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    try:
        deadline = time.monotonic() + 15
        while not counts or counts[-1] == 0:  # started (imports done, store open)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.02)
        time.sleep(2.0)
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
