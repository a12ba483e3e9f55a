"""A usage-store writer in a process of its own.

Why a process: the gateway's event loop and a writer *thread* share one GIL. Turning events into rows
and binding them to SQL is Python work; on a busy core each hand-off of the GIL between the loop and
the writer is a forced switch that a waiting request pays for (measured: the added p99 through the
gateway grew by a third with the writer on a thread). Here the loop only serialises each event with
orjson as it happens (about a microsecond, in C) and sends batches down a pipe; a child process
makes the rows and writes them, with a GIL of its own, at the lowest CPU priority (``SCHED_IDLE``,
lifted to ``nice +10`` while it falls behind; see :func:`idle_priority`).

Frames on the child's stdin: a 4-byte big-endian length, then a batch as one JSON array of items
(:mod:`spillgate.store.wire`). The child writes each frame in one transaction. At
end of input — the gateway closed the pipe, or died (kill -9 included) — it writes what it holds and
exits: nothing that reached the pipe is lost. It ignores SIGINT / SIGTERM (a terminal's Ctrl-C
reaches the whole process group) and ends only through end of input.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import IO

from spillgate.store.base import BACKGROUND_NICE, StoreError, background_priority
from spillgate.store.records import Pending
from spillgate.store.wire import join, rows_of_json

log = logging.getLogger("spillgate.store")

_LENGTH = struct.Struct(">I")
LIFT_AFTER = 0.5
"""Seconds the oldest batch may wait for the writer before it is lifted out of ``SCHED_IDLE``."""
RESTART_EVERY = 5.0
"""A writer process that died is replaced at most this often (seconds)."""
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
"""Bytes waiting for the child beyond which new batches are refused (the recorder counts them as
dropped): a stuck child must not grow the gateway's memory without bound."""


def frame(batch: Sequence[Pending]) -> bytes:
    """One length-prefixed frame of a batch (see :mod:`spillgate.store.wire`)."""
    body = join(batch)
    return _LENGTH.pack(len(body)) + body


class WriterProcess:
    """The gateway's side: a child ``python -m spillgate.store.writer DSN`` fed through a pipe.

    :meth:`write_batch` never waits for the database (the recorder calls it from the event loop).
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.sent = 0
        """Frames written to the pipe."""
        self.done = 0
        """Frames the child reported as finished (written, or failed and logged)."""
        self.lifts = 0
        """Times the child was lifted out of SCHED_IDLE because it fell behind."""
        self.restarts = 0
        self._restarted_at = -RESTART_EVERY
        self._proc: asyncio.subprocess.Process | None = None
        self._acks: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._sent_at: collections.deque[float] = collections.deque()
        self._lifted = False

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "spillgate.store.writer",
            # The DSN (its password included) in the environment, not on the command line that
            # `ps` shows every user.
            env={**os.environ, DSN_ENV: self.dsn},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._acks = asyncio.create_task(self._read_acks(self._proc), name="spillgate-usage-writer-acks")

    async def _read_acks(self, proc: asyncio.subprocess.Process) -> None:
        """The child prints one byte per frame it has finished."""
        assert proc.stdout is not None
        while True:
            data = await proc.stdout.read(4096)
            self.done += len(data)
            for _ in range(min(len(data), len(self._sent_at))):
                self._sent_at.popleft()
            self._progress.set()
            if not data:
                return
            self.keep_up()

    def keep_up(self, now: float | None = None) -> None:
        """Lift the child out of ``SCHED_IDLE`` while its oldest unfinished batch waits longer than
        :data:`LIFT_AFTER` (a saturated core gives an idle-class process nothing); put it back once
        it has caught up. A crash then still loses about a second at most."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        now = time.monotonic() if now is None else now
        behind = bool(self._sent_at) and now - self._sent_at[0] > LIFT_AFTER
        if behind and not self._lifted:
            policy = os.SCHED_OTHER
        elif self._lifted and not self._sent_at:
            policy = os.SCHED_IDLE
        else:
            return
        try:
            if policy == os.SCHED_OTHER and os.sched_getscheduler(proc.pid) != os.SCHED_IDLE:
                return  # not idle-class (not permitted to come back): nothing to lift
            os.sched_setscheduler(proc.pid, policy, os.sched_param(0))
        except (AttributeError, OSError):
            return
        self._lifted = policy == os.SCHED_OTHER
        self.lifts += self._lifted

    async def _restart(self, dead: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
        """A writer that died (killed, out of memory) is replaced, at most once per
        :data:`RESTART_EVERY` seconds; the batches it had not finished are lost (the log says how many)."""
        now = time.monotonic()
        if now - self._restarted_at < RESTART_EVERY:
            raise StoreError(f"the usage writer process exited with status {dead.returncode}")
        self._restarted_at = now
        self.restarts += 1
        log.error(
            "usage writer process %d exited with status %s; starting a new one (%d unfinished batches lost)",
            dead.pid,
            dead.returncode,
            self.sent - self.done,
        )
        if self._acks is not None:
            await self._acks
        self.sent = self.done = 0
        self._sent_at.clear()
        self._lifted = False
        await self.start()
        assert self._proc is not None
        return self._proc

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until the child has finished every frame sent so far (or has gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.done < self.sent and self._proc is not None and self._proc.returncode is None:
            self._progress.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StoreError(f"the usage writer has not finished {self.sent - self.done} batches")
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                continue

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def backlog(self) -> int:
        """Bytes written to the pipe that the child has not read yet (as far as this side knows)."""
        stdin = None if self._proc is None else self._proc.stdin
        return 0 if stdin is None else stdin.transport.get_write_buffer_size()

    async def write_batch(self, batch: Sequence[Pending]) -> None:
        if not batch:
            return
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise StoreError("the usage writer process is not running")
        if proc.returncode is not None or proc.stdin.is_closing():
            proc = await self._restart(proc)
        if self.backlog > MAX_BACKLOG_BYTES:
            # The recorder counts the batch as dropped (after its one retry).
            raise StoreError("the usage writer process is not keeping up (64 MiB waiting)")
        assert proc.stdin is not None
        proc.stdin.write(frame(batch))
        self.sent += 1
        now = time.monotonic()
        self._sent_at.append(now)
        self.keep_up(now)

    async def close(self, timeout: float = 30.0) -> None:
        """Close the pipe and wait for the child to write what it holds and exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                await proc.stdin.drain()
            except ConnectionError:
                pass
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.error("usage writer process %d did not finish in %.0f s; killing it", proc.pid, timeout)
            proc.kill()
            await proc.wait()
        if self._acks is not None:
            await self._acks
            self._acks = None


# -- the child ------------------------------------------------------------------------------------


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def serve(dsn: str, stream: IO[bytes], acks: IO[bytes] | None = None) -> int:
    """Write every frame read from ``stream`` until its end, one byte to ``acks`` after each; the
    exit status."""
    from spillgate.store.base import ThreadedStore
    from spillgate.store.dsn import open_store

    store = open_store(dsn)
    assert isinstance(store, ThreadedStore)
    failures = 0
    try:
        while True:
            head = _read_exactly(stream, _LENGTH.size)
            if head is None:
                return 1 if failures else 0
            body = _read_exactly(stream, _LENGTH.unpack(head)[0])
            if body is None:
                log.error("usage writer: input ended inside a frame (the gateway died mid-write)")
                return 1
            try:
                store.write_rows_sync(*rows_of_json(body))
            except Exception:
                failures += 1
                log.exception("usage writer: a batch could not be written")
                time.sleep(0.5)
            if acks is not None:
                try:
                    acks.write(b".")
                    acks.flush()
                except OSError:
                    acks = None  # the gateway is gone: keep writing what is left
    finally:
        store.close_sync()


def may_leave_idle() -> bool:
    """Whether a process of ours put under ``SCHED_IDLE`` may be brought back to ``SCHED_OTHER`` at
    ``nice +10`` (root, or an ``RLIMIT_NICE`` that allows nice 10)."""
    if os.geteuid() == 0:
        return True
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    except (ImportError, AttributeError, OSError, ValueError):
        return False
    return soft == resource.RLIM_INFINITY or soft >= 20 - BACKGROUND_NICE


def idle_priority() -> None:
    """``nice +10``, and ``SCHED_IDLE`` (run only on CPU time nothing else wants) where the gateway
    can lift it again when the writer falls behind (:meth:`WriterProcess.keep_up`).

    Measured on one shared core (bench/overhead --observability): at ``nice +10`` alone the writer's
    turns added about 40 % to the gateway's added p99 latency; under ``SCHED_IDLE`` 6 %. But on a
    saturated core an idle-class writer gets no CPU at all, and records would pile up in the gateway
    (lost on kill -9): hence the lift.
    """
    background_priority()
    if may_leave_idle():
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass


DSN_ENV = "SPILLGATE_WRITER_DSN"
"""Where the writer process finds its DSN."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and os.environ.get(DSN_ENV):
        args = [os.environ[DSN_ENV]]
    if len(args) != 1:
        print(
            f"usage: {DSN_ENV}=DSN python -m spillgate.store.writer (or DSN as argument; frames on stdin)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    idle_priority()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args[0], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
