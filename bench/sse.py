"""The streaming client: time to the first content token of OpenAI chat SSE streams.

``measure_stream`` keeps ``concurrency`` streaming chat completions going back to back, each on
its own HTTP/1.1 keep-alive connection, and takes, per request, the time from writing it to the
first ``data:`` event whose ``choices[0].delta.content`` is non-empty (``time.perf_counter()``);
the first ``warmup`` seconds are not counted. Every response is read to its end and must end
with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.harness import (
    CHAT_PATH,
    HAVE_UVLOOP,
    HOST,
    REQUEST_TIMEOUT_S,
    LoadResult,
    Target,
    cpu_snapshot,
    cpu_usage,
    percentile,
)

if HAVE_UVLOOP:
    import uvloop


class StreamError(Exception):
    pass


@dataclass
class StreamStats:
    measure_from: float
    measure_until: float
    samples: list[float] = field(default_factory=list)
    completed: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_examples) < 5:
            self.error_examples.append(f"{kind}: {detail}")


def _has_content(payload: bytes) -> bool:
    try:
        event = orjson.loads(payload)
        return bool(event["choices"][0]["delta"]["content"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False


class SseScanner:
    """Finds the first content event and the ``[DONE]`` marker in an OpenAI chat SSE body."""

    def __init__(self) -> None:
        self._pending = b""
        self.first_content_at: float | None = None
        self.done = False

    def feed(self, data: bytes, received_at: float) -> None:
        buf = self._pending + data
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
            elif self.first_content_at is None and _has_content(payload):
                self.first_content_at = received_at


async def read_stream_response(reader: asyncio.StreamReader) -> tuple[float, bool]:
    """Read one whole response; (time its first content event arrived, connection reusable)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close"
    scanner = SseScanner()
    body = bytearray()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            data = await reader.readexactly(size)
            scanner.feed(data, time.perf_counter())
            if status != 200:
                body += data
            await reader.readexactly(2)
    elif "content-length" in headers:
        data = await reader.readexactly(int(headers["content-length"]))
        scanner.feed(data, time.perf_counter())
        body += data
    else:
        keep_alive = False
        while data := await reader.read(65536):
            scanner.feed(data, time.perf_counter())
            body += data
    scanner.feed(b"\n", time.perf_counter())
    if status != 200:
        raise StreamError(f"HTTP {status}: {bytes(body[:300])!r}")
    if scanner.first_content_at is None:
        raise StreamError("stream had no content event")
    if not scanner.done:
        raise StreamError("stream ended without data: [DONE]")
    return scanner.first_content_at, keep_alive


async def stream_worker(target: Target, request: bytes, stats: StreamStats) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while time.perf_counter() < stats.measure_until:
            if writer is None or reader is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, target.port)
                except OSError as exc:
                    stats.error("connect", str(exc))
                    await asyncio.sleep(0.01)
                    continue
            started = time.perf_counter()
            keep_alive = False
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    writer.write(request)
                    first_content, keep_alive = await read_stream_response(reader)
            except StreamError as exc:
                stats.error("response", str(exc))
            except TimeoutError:
                stats.error("timeout", f"no complete response in {REQUEST_TIMEOUT_S:g}s")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                stats.error("read", f"{type(exc).__name__}: {exc}")
            else:
                stats.completed += 1
                if started >= stats.measure_from:
                    stats.samples.append(first_content - started)
            if not keep_alive:
                writer.close()
                writer = reader = None
    finally:
        if writer is not None:
            writer.close()


def stream_request(target: Target) -> bytes:
    body = target.body(True)
    head = [
        f"POST {CHAT_PATH} HTTP/1.1",
        f"Host: {HOST}:{target.port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in target.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _stream_load(target: Target, concurrency: int, warmup: float, duration: float) -> StreamStats:
    now = time.perf_counter()
    stats = StreamStats(measure_from=now + warmup, measure_until=now + warmup + duration)
    request = stream_request(target)

    async def watch_cpu() -> None:
        await asyncio.sleep(stats.measure_from - time.perf_counter())
        before = cpu_snapshot()
        await asyncio.sleep(stats.measure_until - time.perf_counter())
        stats.cpu = cpu_usage(before, cpu_snapshot())

    await asyncio.gather(watch_cpu(), *(stream_worker(target, request, stats) for _ in range(concurrency)))
    return stats


def run_async(coro: Coroutine[Any, Any, StreamStats]) -> StreamStats:
    if HAVE_UVLOOP:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def measure_stream(target: Target, concurrency: int, duration: float, warmup: float) -> LoadResult:
    """Keep ``concurrency`` streaming requests going; the first ``warmup`` seconds are not counted."""
    stats = run_async(_stream_load(target, concurrency, warmup, duration))
    samples = sorted(stats.samples)
    if not samples:
        stats.error("no-samples", "no streaming request completed in the measured window")
    mean = sum(samples) / len(samples) if samples else 0.0
    return LoadResult(
        tool="asyncio-stream",
        connections=concurrency,
        duration_s=duration,
        requests=len(samples),
        p50_ms=percentile(samples, 50) * 1000,
        p99_ms=percentile(samples, 99) * 1000,
        mean_ms=mean * 1000,
        max_ms=(samples[-1] if samples else 0.0) * 1000,
        errors=stats.errors,
        error_examples=stats.error_examples,
        details={"cpu": stats.cpu, "completed_incl_warmup": stats.completed},
    )
