"""Used by test_crash.py: record usage at a steady rate until killed, printing the count submitted.

python crash_writer.py DB_PATH RATE_PER_SECOND
"""

from __future__ import annotations

import asyncio
import sys
import time

from spillgate.store import RequestRecord, SqliteStore, UsageRecorder


async def main(path: str, rate: int) -> None:
    store = SqliteStore(path)
    recorder = UsageRecorder(store, flush_interval=0.5)
    submitted = 0
    start = time.monotonic()
    next_print = start
    while True:
        now = time.monotonic()
        due = int((now - start) * rate)
        while submitted < due:
            recorder.submit(
                RequestRecord(
                    time=time.time(),
                    request_id=f"r{submitted}",
                    public_model="m",
                    api="openai-chat",
                    stream=False,
                    status=200,
                    attempts=1,
                    latency_ms=1.0,
                )
            )
            submitted += 1
        if now >= next_print:
            print(submitted, flush=True)
            next_print += 0.1
        await asyncio.sleep(0.005)  # the steady pace of the load (what is under test)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
