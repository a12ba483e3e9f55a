"""The streaming client: time to the first content token of SSE streams in any client API.

``measure_stream`` keeps ``concurrency`` streaming requests going back to back, each on its own
HTTP/1.1 keep-alive connection, and takes, per request, the time from writing it to the first
event that carries answer text (``time.perf_counter()``); the first ``warmup`` seconds are not
counted. Every response is read to its end and must end with its API's last event. The text
event and the last event of each API (``Target.api``):

* ``chat``: a ``data:`` event whose ``choices[0].delta.content`` is non-empty; ``data: [DONE]``;
* ``responses``: ``event: response.output_text.delta`` with a non-empty ``delta``;
  ``event: response.completed``;
* ``messages``: ``event: content_block_delta`` whose ``delta`` is a non-empty ``text_delta``;
  ``event: message_stop``.

It also counts the SSE events received in the measured window and, given a probe of the
gateway's CPU time, reads it at the window's edges: the gateway's CPU per relayed event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.harness import (
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
    events_in_window: int = 0
    """SSE events received between ``measure_from`` and ``measure_until`` (any request's)."""
    gateway_cpu_s: float | None = None
    """The probe's CPU seconds over the same window (None without a probe)."""
    cpu: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_examples) < 5:
            self.error_examples.append(f"{kind}: {detail}")


def _chat_content(payload: bytes) -> bool:
    try:
        event = orjson.loads(payload)
        return bool(event["choices"][0]["delta"]["content"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False


def _responses_content(payload: bytes) -> bool:
    try:
        return bool(orjson.loads(payload)["delta"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False


def _messages_content(payload: bytes) -> bool:
    try:
        delta = orjson.loads(payload)["delta"]
        return bool(delta["type"] == "text_delta" and delta["text"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False


@dataclass(frozen=True)
class StreamGrammar:
    """What an API's stream looks like to the scanner: the event name of its text events (None:
    every ``data:`` event is looked at), how to tell one carries text, and its last event."""

    text_event: bytes | None
    has_text: Callable[[bytes], bool]
    last_event: bytes
    """The ``event:`` name of the last event, or (chat, which names none) its ``data:`` payload."""


GRAMMARS = {
    "chat": StreamGrammar(None, _chat_content, b"[DONE]"),
    "responses": StreamGrammar(b"response.output_text.delta", _responses_content, b"response.completed"),
    "messages": StreamGrammar(b"content_block_delta", _messages_content, b"message_stop"),
}


class SseScanner:
    """Finds the first text event and the last event in one SSE body of ``api``, and counts the
    events (``data:`` lines) received between ``window[0]`` and ``window[1]``."""

    def __init__(self, api: str = "chat", window: tuple[float, float] = (0.0, 0.0)) -> None:
        self._grammar = GRAMMARS[api]
        self._window = window
        self._pending = b""
        self._event = b""
        self.first_content_at: float | None = None
        self.done = False
        self.events_in_window = 0

    def feed(self, data: bytes, received_at: float) -> None:
        buf = self._pending + data
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        grammar = self._grammar
        in_window = self._window[0] <= received_at < self._window[1]
        for raw in lines:
            line = raw.rstrip(b"\r")
            if line.startswith(b"event:"):
                self._event = line[6:].strip()
                continue
            if not line.startswith(b"data:"):
                if not line:
                    self._event = b""
                continue
            self.events_in_window += in_window
            payload = line[5:].strip()
            if grammar.text_event is None:
                if payload == grammar.last_event:
                    self.done = True
                elif self.first_content_at is None and grammar.has_text(payload):
                    self.first_content_at = received_at
            elif self._event == grammar.last_event:
                self.done = True
            elif (
                self.first_content_at is None
                and self._event == grammar.text_event
                and grammar.has_text(payload)
            ):
                self.first_content_at = received_at


async def read_stream_response(
    reader: asyncio.StreamReader, api: str = "chat", window: tuple[float, float] = (0.0, 0.0)
) -> tuple[float, bool, int]:
    """Read one whole response; (time its first content event arrived, connection reusable, events
    received within ``window``)."""
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
    scanner = SseScanner(api, window)
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
        last = GRAMMARS[api].last_event.decode()
        raise StreamError(f"stream ended without {'data: ' if api == 'chat' else 'event: '}{last}")
    return scanner.first_content_at, keep_alive, scanner.events_in_window


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
                    first_content, keep_alive, events = await read_stream_response(
                        reader, target.api, (stats.measure_from, stats.measure_until)
                    )
            except StreamError as exc:
                stats.error("response", str(exc))
            except TimeoutError:
                stats.error("timeout", f"no complete response in {REQUEST_TIMEOUT_S:g}s")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                stats.error("read", f"{type(exc).__name__}: {exc}")
            else:
                stats.completed += 1
                stats.events_in_window += events
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
        f"POST {target.path} HTTP/1.1",
        f"Host: {HOST}:{target.port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in target.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _stream_load(
    target: Target,
    concurrency: int,
    warmup: float,
    duration: float,
    cpu_probe: Callable[[], float] | None,
) -> StreamStats:
    now = time.perf_counter()
    stats = StreamStats(measure_from=now + warmup, measure_until=now + warmup + duration)
    request = stream_request(target)

    async def watch_cpu() -> None:
        await asyncio.sleep(stats.measure_from - time.perf_counter())
        before = cpu_snapshot()
        probe_before = cpu_probe() if cpu_probe else 0.0
        await asyncio.sleep(stats.measure_until - time.perf_counter())
        if cpu_probe:
            stats.gateway_cpu_s = cpu_probe() - probe_before
        stats.cpu = cpu_usage(before, cpu_snapshot())

    await asyncio.gather(watch_cpu(), *(stream_worker(target, request, stats) for _ in range(concurrency)))
    return stats


def run_async(coro: Coroutine[Any, Any, StreamStats]) -> StreamStats:
    if HAVE_UVLOOP:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def measure_stream(
    target: Target,
    concurrency: int,
    duration: float,
    warmup: float,
    cpu_probe: Callable[[], float] | None = None,
) -> LoadResult:
    """Keep ``concurrency`` streaming requests going; the first ``warmup`` seconds are not counted.
    ``cpu_probe`` (seconds of the gateway's CPU time) adds ``gateway_cpu_s`` to the details."""
    stats = run_async(_stream_load(target, concurrency, warmup, duration, cpu_probe))
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
        details={
            "cpu": stats.cpu,
            "completed_incl_warmup": stats.completed,
            "events_in_window": stats.events_in_window,
            **({} if stats.gateway_cpu_s is None else {"gateway_cpu_s": round(stats.gateway_cpu_s, 6)}),
        },
    )
