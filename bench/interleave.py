"""Sides measured in turns, in one window: an A/B whose two sides differ by a few per cent, on a
machine whose speed changes by more than that from one second to the next.

Measured one after the other, two runs of eight seconds each land in different moods of a shared
VM (the hypervisor's steal comes and goes; at concurrency 1 the same gateway's p50 was ~0.5 ms in
one run and ~1.0 ms in the next), so their difference is mostly the machine's. Here the sides take
short turns instead, many times over, so that every mood falls on all of them alike:

* non-streaming latency at concurrency 1 (:func:`plain_turns`): one keep-alive connection per
  side; each side's turn is :data:`BLOCK_REQUESTS` requests back to back, the first of them not
  counted (the side before may still be finishing its last request's work on the gateway core);
* streaming time to first content token at concurrency ``c`` (:func:`stream_turns`): ``c``
  workers, each with a keep-alive connection per side, all sending to whichever side's turn it is
  (turns of :data:`SLICE_S`); a stream counts for the side it was sent to when it started at least
  :data:`SETTLE_S` into that side's turn (before that, the side before still has streams in
  flight), and counts whether or not the turn ended before its first token came.

The turns follow :func:`turn_order`: the reference side (direct) opens every three turns and the
two others alternate which comes second, so each of them follows the reference once and the other
once and never itself (a side that follows itself starts its turn on a core that is not still
busy with another side's work: in A/A runs, an order through all six permutations of three sides,
where that happens to one side more often, measured one of two identical gateways 15-25 % faster
at stream p99 than the other).

Before a window, the probed sides must have gone quiet (:func:`wait_quiet`). Each side's CPU
(``probes``: its processes' ``schedstat``, not charged for steal) is read at the
start and the end of the whole window, so work a side finishes during another's turn is still its
own, and divided by the requests it answered. The client's garbage collector is off while the turns
run (its pauses would land on whichever side's turn it is); the window is bounded in time, and
so is what it keeps.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.client import raw_request, read_response, run_async
from bench.harness import HOST, REQUEST_TIMEOUT_S, Target
from bench.sse import StreamError, read_stream_response, stream_request

BLOCK_REQUESTS = 8
"""Non-streaming requests in one side's turn (the first not counted)."""
SLICE_S = 0.25
"""One side's turn of streaming, seconds."""
SETTLE_S = 0.05
"""Streams started this early in a turn are not counted."""
MAX_EXAMPLES = 5
QUIET_SHARE = 0.02
"""Before a window, each probed side's processes must use less than this share of a core ..."""
QUIET_S = 0.2
"""... over this long (a usage writer still storing the records of the run before would land on
whichever side's turn it is) ..."""
QUIET_TIMEOUT_S = 30.0
"""... waiting at most this long."""


def cycle_length(sides: Sequence[str]) -> int:
    """Turns in one whole cycle of :func:`turn_order`: a window ends on one, so every side has had
    its turns in every position alike."""
    return 2 * len(sides)


def turn_order(sides: Sequence[str]) -> Iterator[str]:
    """The turns, forever: ``ref, a, b, ref, b, a, ref, a, b, ...`` for ``(ref, a, b)``; for two
    sides ``a, b, b, a, ...`` would follow themselves, so they simply alternate."""
    if len(sides) < 2:
        raise ValueError("turns need at least two sides")
    ref, *others = sides
    while True:
        for flipped in (False, True):
            yield ref
            yield from (reversed(others) if flipped else others)


@dataclass
class Turns:
    """One window's samples per side (seconds), what each side answered and its CPU seconds."""

    sides: list[str]
    seconds: float = 0.0
    """How long the counted window lasted (whole cycles of turns: a little over the duration asked)."""
    samples: dict[str, list[float]] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    """Only for the sides with a CPU probe."""
    turns: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    waited_s: float = 0.0
    """How long the window waited for the probed sides to go quiet first (:func:`wait_quiet`)."""

    def __post_init__(self) -> None:
        for side in self.sides:
            self.samples.setdefault(side, [])
            self.answered.setdefault(side, 0)
            self.turns.setdefault(side, 0)

    def error(self, side: str, kind: str, detail: str) -> None:
        key = f"{side} {kind}"
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.error_examples) < MAX_EXAMPLES:
            self.error_examples.append(f"{key}: {detail}")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def cpu_per_answer_us(self, side: str) -> float | None:
        cpu, answered = self.cpu_s.get(side), self.answered[side]
        return None if cpu is None or not answered else 1e6 * cpu / answered


CpuProbe = Callable[[], float]
"""Seconds of CPU a side's processes have used so far."""


class _Window:
    """The CPU probes read at a window's start and end."""

    def __init__(self, turns: Turns, probes: Mapping[str, CpuProbe]) -> None:
        self.turns, self.probes = turns, probes
        self.start: dict[str, float] = {}
        self.began = 0.0

    def __enter__(self) -> _Window:
        self.start = {side: probe() for side, probe in self.probes.items()}
        self.began = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.turns.seconds = time.perf_counter() - self.began
        for side, probe in self.probes.items():
            self.turns.cpu_s[side] = probe() - self.start[side]


@contextmanager
def _gc_off() -> Iterator[None]:
    """The client's garbage collector off while the turns run (collected once before them)."""
    was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


Connections = dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]]
"""A client's keep-alive connection to each side."""


async def _connection(
    conns: Connections, target: Target, turns: Turns
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """``target``'s open connection, opened now if need be; None (counted, after a short pause)
    when it cannot be."""
    if target.name not in conns:
        try:
            conns[target.name] = await asyncio.open_connection(HOST, target.port)
        except OSError as exc:
            turns.error(target.name, "connect", str(exc))
            await asyncio.sleep(0.01)
            return None
    return conns[target.name]


async def _plain(
    targets: Sequence[Target], duration: float, warmup: float, probes: Mapping[str, CpuProbe]
) -> Turns:
    names = [t.name for t in targets]
    by_name = {t.name: t for t in targets}
    requests = {t.name: raw_request(t.port, "POST", t.path, t.body(False), t.headers) for t in targets}
    conns: Connections = {}
    turns = Turns(names)

    async def one(name: str, counted: bool) -> None:
        conn = await _connection(conns, by_name[name], turns)
        if conn is None:
            return
        reader, writer = conn
        started = time.perf_counter()
        keep = False
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                writer.write(requests[name])
                response = await read_response(reader)
        except TimeoutError:
            turns.error(name, "timeout", f"no complete response in {REQUEST_TIMEOUT_S:g}s")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            turns.error(name, "read", f"{type(exc).__name__}: {exc}")
        else:
            elapsed = time.perf_counter() - started
            keep = response.keep_alive
            if response.status != 200 or not response.body:
                turns.error(name, "response", f"HTTP {response.status}: {response.body[:300]!r}")
            else:
                turns.answered[name] += 1
                if counted:
                    turns.samples[name].append(elapsed)
        if not keep:
            conns.pop(name)[1].close()

    async def run(seconds: float, counted: bool) -> None:
        until = time.perf_counter() + seconds
        order = turn_order(names)
        made = 0
        while time.perf_counter() < until or made % cycle_length(names):
            name = next(order)
            made += 1
            if counted:
                turns.turns[name] += 1
            for n in range(BLOCK_REQUESTS):
                await one(name, counted and n > 0)

    try:
        if warmup > 0:
            await run(warmup, False)
            for name in names:
                turns.answered[name] = 0
        with _Window(turns, probes):
            await run(duration, True)
    finally:
        for _, writer in conns.values():
            writer.close()
    return turns


def wait_quiet(probes: Mapping[str, CpuProbe], timeout: float = QUIET_TIMEOUT_S) -> float:
    """Wait until every probed side is idle (:data:`QUIET_SHARE` of a core over :data:`QUIET_S`);
    the seconds waited (``timeout`` when one never went quiet: the window then runs anyway)."""
    began = time.perf_counter()
    before = {side: probe() for side, probe in probes.items()}
    while (waited := time.perf_counter() - began) < timeout:
        time.sleep(QUIET_S)
        after = {side: probe() for side, probe in probes.items()}
        if all(after[side] - before[side] < QUIET_SHARE * QUIET_S for side in probes):
            return waited
        before = after
    return timeout


def plain_turns(
    targets: Sequence[Target],
    duration: float,
    warmup: float = 0.0,
    probes: Mapping[str, CpuProbe] | None = None,
) -> Turns:
    """Non-streaming requests at concurrency 1, the sides taking turns of :data:`BLOCK_REQUESTS`;
    latency from writing a request to the end of its response."""
    quiet = wait_quiet(probes or {})
    with _gc_off():
        turns = run_async(_plain(targets, duration, warmup, probes or {}))
    turns.waited_s = quiet
    return turns


@dataclass
class _Turn:
    side: str
    since: float
    stopped: bool = False


async def _stream(
    targets: Sequence[Target],
    concurrency: int,
    duration: float,
    warmup: float,
    probes: Mapping[str, CpuProbe],
) -> Turns:
    names = [t.name for t in targets]
    by_name = {t.name: t for t in targets}
    requests = {t.name: stream_request(t) for t in targets}
    turns = Turns(names)
    current = _Turn(names[0], time.perf_counter())
    counting = False

    async def worker() -> None:
        conns: Connections = {}
        try:
            while not current.stopped:
                name, since = current.side, current.since
                target = by_name[name]
                conn = await _connection(conns, target, turns)
                if conn is None:
                    continue
                reader, writer = conn
                started = time.perf_counter()
                counted = counting and started >= since + SETTLE_S
                keep = False
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        writer.write(requests[name])
                        first, keep, _events = await read_stream_response(reader, target.api)
                except StreamError as exc:
                    turns.error(name, "response", str(exc))
                except TimeoutError:
                    turns.error(name, "timeout", f"no complete response in {REQUEST_TIMEOUT_S:g}s")
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    turns.error(name, "read", f"{type(exc).__name__}: {exc}")
                else:
                    if counting:
                        turns.answered[name] += 1
                    if counted:
                        turns.samples[name].append(first - started)
                if not keep:
                    conns.pop(name)[1].close()
        finally:
            for _, writer in conns.values():
                writer.close()

    window = _Window(turns, probes)

    async def switch() -> None:
        nonlocal counting
        order = turn_order(names)
        counting_from = time.perf_counter() + warmup
        until = counting_from + duration
        made = 0
        try:
            while (now := time.perf_counter()) < until or not counting or made % cycle_length(names):
                if not counting and now >= counting_from:
                    window.__enter__()
                    counting = True
                    order, made = turn_order(names), 0
                current.side, current.since = next(order), now
                if counting:
                    turns.turns[current.side] += 1
                    made += 1
                await asyncio.sleep(SLICE_S)
        finally:
            current.stopped = True

    try:
        await asyncio.gather(switch(), *(worker() for _ in range(concurrency)))
    finally:
        if counting:  # after the last streams ended: their work is in their side's CPU
            window.__exit__(None, None, None)
    return turns


def stream_turns(
    targets: Sequence[Target],
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    probes: Mapping[str, CpuProbe] | None = None,
) -> Turns:
    """``concurrency`` streams at a time, all to the side whose turn it is (:data:`SLICE_S` each);
    time to the first content event."""
    quiet = wait_quiet(probes or {})
    with _gc_off():
        turns = run_async(_stream(targets, concurrency, duration, warmup, probes or {}))
    turns.waited_s = quiet
    return turns
