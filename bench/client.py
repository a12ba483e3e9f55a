"""The asyncio HTTP/1.1 client and the closed-loop load it drives (bench/resilience).

``raw_request`` / ``read_response``: one request's bytes and one whole response (Content-Length,
chunked, or up to EOF); ``async_call``: one request on its own connection, for control calls made
while the load runs; ``worker``: one keep-alive connection sending a request back to back until
the run's end, recording every answer as a ``Sample`` (status, ``x-spillgate-route``,
``x-spillgate-attempts``); ``run_async``: run a coroutine under uvloop with SIGTERM taken as
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from bench.harness import HAVE_UVLOOP, HOST, REQUEST_TIMEOUT_S

if HAVE_UVLOOP:
    import uvloop

CONTROL_TIMEOUT_S = 30.0


def raw_request(
    port: int,
    method: str,
    path: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    keep_alive: bool = True,
) -> bytes:
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        f"Content-Length: {len(body)}",
        *(["Content-Type: application/json"] if body else []),
        *([] if keep_alive else ["Connection: close"]),
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


async def read_response(reader: asyncio.StreamReader) -> Response:
    """One whole HTTP/1.1 response (Content-Length, chunked, or up to EOF)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"bad status line {status_line!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        data = bytes(body)
    elif "content-length" in headers:
        data = await reader.readexactly(int(headers["content-length"]))
    else:
        data = await reader.read()
        headers["connection"] = "close"
    return Response(int(parts[1]), headers, data)


async def async_call(port: int, method: str, path: str, body: bytes = b"") -> Response:
    """One request on its own connection (for control calls made while the load runs)."""
    async with asyncio.timeout(CONTROL_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(raw_request(port, method, path, body, (), keep_alive=False))
            return await read_response(reader)
        finally:
            writer.close()


@dataclass(slots=True)
class Sample:
    """One client request; times are seconds since the scenario's faults were set."""

    started: float
    finished: float
    status: int
    """HTTP status, 0 when no response came (connection error, timeout)."""
    route: str | None
    attempts: int | None
    """``x-spillgate-attempts``; 0 for a gateway answer without it, None when no response came."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency(self) -> float:
        return self.finished - self.started


def describe_error(response: Response) -> str:
    """``HTTP 503 server_is_overloaded: message...`` for the error summary."""
    try:
        err = orjson.loads(response.body)["error"]
        code = err.get("code") or err.get("type") or "?"
        message = str(err.get("message", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        code, message = "?", response.body[:200].decode("utf-8", "replace")
    return f"HTTP {response.status} {code}: {message[:240]}"


@dataclass
class LoadRun:
    t0: float
    """``time.monotonic()`` when the faults were set (the fake's attempt times are on this clock)."""
    until: float
    samples: list[Sample] = field(default_factory=list)
    removed_at: float | None = None
    """Seconds after t0 when the primary's fault removal was sent (recovery)."""
    removal_answered_at: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)


async def worker(port: int, request: bytes, run: LoadRun) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    t0 = run.t0
    try:
        while time.monotonic() < run.until:
            if reader is None or writer is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, port)
                except OSError as exc:
                    now = time.monotonic() - t0
                    run.samples.append(Sample(now, now, 0, None, None, f"connect: {exc}"))
                    await asyncio.sleep(0.05)
                    continue
            started = time.monotonic()
            keep_alive = False
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    writer.write(request)
                    response = await read_response(reader)
            except TimeoutError:
                error = f"timeout: no complete response in {REQUEST_TIMEOUT_S:g} s"
                run.samples.append(Sample(started - t0, time.monotonic() - t0, 0, None, None, error))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                error = f"read: {type(exc).__name__}: {exc}"
                run.samples.append(Sample(started - t0, time.monotonic() - t0, 0, None, None, error))
            else:
                finished = time.monotonic() - t0
                keep_alive = response.keep_alive
                attempts = response.headers.get("x-spillgate-attempts", "0")
                run.samples.append(
                    Sample(
                        started - t0,
                        finished,
                        response.status,
                        response.headers.get("x-spillgate-route"),
                        int(attempts) if attempts.isdigit() else None,
                        None if 200 <= response.status < 300 else describe_error(response),
                    )
                )
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


T = TypeVar("T")


async def interruptible(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM cancels it and surfaces as KeyboardInterrupt (as Ctrl-C does), rather
    than the process-wide handler raising inside whatever transport callback is running."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    previous = signal.getsignal(signal.SIGTERM)
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await coro
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    if HAVE_UVLOOP:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(interruptible(coro))
    return asyncio.run(interruptible(coro))
