#!/usr/bin/env python3
"""How the gateway behaves under load when its upstream model is at capacity.

Starts one ``spillgate fake-upstream`` (pinned to core 1, with this process and its load
generator) and, for every scenario, a fresh ``spillgate serve`` (pinned to core 0) whose model
``bench`` has two routes on the fake: ``up-primary`` first, ``up-secondary`` second. Each
scenario sets faults on the fake through its control API, clears its attempt log and keeps
``--concurrency`` non-streaming chat completions going for ``--duration`` seconds:

* ``primary_100`` -- the primary answers every request with 503 ``server_is_overloaded``;
* ``primary_30``  -- the primary answers 30 % of its requests that way;
* ``all_down``    -- both routes are at capacity;
* ``recovery``    -- the primary is at capacity for the first third, then healthy again.

Per scenario it reports the client success rate, upstream attempts per client request (from
the fake's attempt log, also per upstream and after the first 2 s), p50/p99 latency, the share
answered by the primary and, for ``recovery``, how long the primary took to take the traffic
back. Exit status: 0 when every scenario ran (targets met or not), 2 when a process failed to
start, answered wrongly or died, 130 on Ctrl-C or SIGTERM. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import platform
import signal
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from overhead import (
    GATEWAY_CORE,
    HAVE_UVLOOP,
    HOST,
    LOAD_CORE,
    Child,
    SetupError,
    cpu_model,
    cpu_snapshot,
    cpu_usage,
    free_ports,
    gateway_python_pids,
    http_call,
    percentile,
    pinning,
    process_tree,
    run_benchmark,
    running,
    say,
    start_child,
    status_field_kib,
    venv_python,
    wait_ready,
)

# bench/overhead.py runs the same processes the same way; its helpers are reused as they are.
# (Run as a script, this file's directory is on sys.path, so ``overhead`` imports directly.)
from overhead import (
    chat_body as overhead_chat_body,
)

if HAVE_UVLOOP:
    import uvloop

CLIENT_KEY = "sk-sg-bench-resilience-0123456789"
GATEWAY_MODEL = "bench"
PRIMARY = "up-primary"
SECONDARY = "up-secondary"
UPSTREAMS = (PRIMARY, SECONDARY)
PRIMARY_ROUTE = f"{GATEWAY_MODEL}[0]"
SECONDARY_ROUTE = f"{GATEWAY_MODEL}[1]"
CHAT_PATH = "/v1/chat/completions"
REQUEST_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 30.0
FAKE_LOG_SIZE = 5_000_000
"""The fake keeps this many attempt records; a scenario must not fill it (checked)."""

BREAKER_GRACE_S = 2.0
"""The "after the breaker opened" figures leave out the first this many seconds of a scenario."""
RECOVERY_BUCKET_S = 0.1
RECOVERY_SHARE = 0.95

CAPACITY: dict[str, Any] = {"preset": "capacity"}


class HarnessError(Exception):
    """The benchmark itself could not do what it set out to (a control call failed, ...)."""


@dataclass(frozen=True)
class Target:
    figure: str
    limit: float
    label: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    faults: dict[str, dict[str, Any]]
    recover_after: float | None = None
    """Fraction of the run after which the primary's fault is removed."""
    target: Target | None = None


AFTER_TARGET_LABEL = f"upstream attempts / request after the first {BREAKER_GRACE_S:g} s"
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "primary_100",
        "primary 100 % at capacity, secondary healthy",
        {PRIMARY: CAPACITY},
        target=Target("attempts_per_request_after_grace", 1.1, AFTER_TARGET_LABEL),
    ),
    Scenario(
        "primary_30",
        "primary 30 % at capacity, secondary healthy",
        {PRIMARY: {**CAPACITY, "rate": 0.3}},
    ),
    Scenario(
        "all_down",
        "both routes 100 % at capacity",
        {PRIMARY: CAPACITY, SECONDARY: CAPACITY},
        target=Target("attempts_per_request_after_grace", 1.5, AFTER_TARGET_LABEL),
    ),
    Scenario(
        "recovery",
        "primary 100 % at capacity for the first third, then healthy",
        {PRIMARY: CAPACITY},
        recover_after=1 / 3,
    ),
)


# --------------------------------------------------------------------------------------------
# Config and requests
# --------------------------------------------------------------------------------------------
def gateway_config(gateway_port: int, fake_port: int) -> str:
    key_hash = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return (
        f"listen: {HOST}:{gateway_port}\n"
        f'client_keys: [{{name: bench, hash: "{key_hash}"}}]\n'
        "providers:\n"
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1"}}\n'
        "models:\n"
        f"  {GATEWAY_MODEL}: {{routes: [{{provider: fake, model: {PRIMARY}}}, "
        f"{{provider: fake, model: {SECONDARY}}}]}}\n"
    )


def chat_body() -> bytes:
    return overhead_chat_body(GATEWAY_MODEL, stream=False)


AUTH = (("Authorization", f"Bearer {CLIENT_KEY}"),)


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


# --------------------------------------------------------------------------------------------
# The asyncio HTTP/1.1 client
# --------------------------------------------------------------------------------------------
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


async def remove_fault_later(fake_port: int, run: LoadRun, at: float) -> None:
    await asyncio.sleep(max(0.0, run.t0 + at - time.monotonic()))
    run.removed_at = time.monotonic() - run.t0
    response = await async_call(fake_port, "DELETE", f"/_fake/behaviors/{PRIMARY}")
    run.removal_answered_at = time.monotonic() - run.t0
    if response.status != 200:
        raise HarnessError(f"removing the primary's fault failed: HTTP {response.status} {response.body!r}")


async def load(
    gateway_port: int,
    fake_port: int,
    faults: dict[str, dict[str, Any]],
    concurrency: int,
    duration: float,
    remove_at: float | None,
) -> LoadRun:
    for model, fault in faults.items():
        response = await async_call(fake_port, "PUT", f"/_fake/behaviors/{model}", orjson.dumps(fault))
        if response.status != 200:
            raise HarnessError(
                f"setting {model}'s fault {fault} failed: HTTP {response.status} {response.body!r}"
            )
    t0 = time.monotonic()
    run = LoadRun(t0=t0, until=t0 + duration)
    request = raw_request(gateway_port, "POST", CHAT_PATH, chat_body(), AUTH)
    before = cpu_snapshot()
    tasks = [worker(gateway_port, request, run) for _ in range(concurrency)]
    if remove_at is not None:
        tasks.append(remove_fault_later(fake_port, run, remove_at))
    await asyncio.gather(*tasks)
    run.cpu = cpu_usage(before, cpu_snapshot())
    return run


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


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def recovery_times(samples: list[Sample], removed_at: float, end: float) -> dict[str, float | None]:
    """Seconds from the fault's removal to the first answer by the primary, and to the start of
    the first ``RECOVERY_BUCKET_S`` bucket from which on every bucket has >= 95 % of its answers
    from the primary (None when that never happened before the end of the run)."""
    after = sorted((s for s in samples if s.finished >= removed_at), key=lambda s: s.finished)
    first = next((s.finished - removed_at for s in after if s.route == PRIMARY_ROUTE), None)
    buckets: dict[int, list[int]] = {}
    for s in after:
        counts = buckets.setdefault(int((s.finished - removed_at) / RECOVERY_BUCKET_S), [0, 0])
        counts[0] += 1
        counts[1] += s.route == PRIMARY_ROUTE
    settled: float | None = None
    for index in sorted(buckets, reverse=True):
        total, primary = buckets[index]
        if primary < RECOVERY_SHARE * total:
            break
        settled = index * RECOVERY_BUCKET_S
    # The last bucket alone, cut short by the end of the run, does not show that it settled.
    if settled is not None and removed_at + settled > end - RECOVERY_BUCKET_S:
        settled = None
    before = [s for s in samples if s.finished < removed_at]
    return {
        "removed_at_s": round(removed_at, 4),
        "primary_again_after_s": None if first is None else round(first, 4),
        "primary_95pct_after_s": None if settled is None else round(settled, 4),
        "primary_share_before_removal": ratio(sum(s.route == PRIMARY_ROUTE for s in before), len(before)),
        "primary_share_after_settled": None
        if settled is None
        else ratio(
            sum(s.route == PRIMARY_ROUTE for s in after if s.finished - removed_at >= settled),
            sum(1 for s in after if s.finished - removed_at >= settled),
        ),
    }


def timeline(
    run: LoadRun, attempts: dict[str, list[dict[str, Any]]], duration: float
) -> list[dict[str, Any]]:
    """Per second of the run (by when requests started / attempts arrived): what happened."""
    seconds = max(1, int(duration + 0.999))
    rows: list[dict[str, Any]] = [
        {"second": i, "requests": 0, "ok": 0, "primary": 0, **{f"attempts_{m}": 0 for m in UPSTREAMS}}
        for i in range(seconds)
    ]
    for s in run.samples:
        row = rows[min(seconds - 1, max(0, int(s.started)))]
        row["requests"] += 1
        row["ok"] += s.ok
        row["primary"] += s.route == PRIMARY_ROUTE
    for model, records in attempts.items():
        for r in records:
            rows[min(seconds - 1, max(0, int(r["time"] - run.t0)))][f"attempts_{model}"] += 1
    return rows


def summarize(
    scenario: Scenario, run: LoadRun, attempts: dict[str, list[dict[str, Any]]], duration: float
) -> dict[str, Any]:
    samples = run.samples
    n = len(samples)
    answered = [s for s in samples if s.status]
    latencies = sorted(s.latency for s in answered)
    ok_latencies = sorted(s.latency for s in answered if s.ok)
    per_upstream = {model: len(records) for model, records in attempts.items()}
    total_attempts = sum(per_upstream.values())
    grace_from = run.t0 + BREAKER_GRACE_S
    after_samples = [s for s in samples if s.started >= BREAKER_GRACE_S]
    after_attempts = {
        model: sum(1 for r in records if r["time"] >= grace_from) for model, records in attempts.items()
    }
    reported = [s.attempts for s in answered if s.attempts is not None]
    reported_after = [s.attempts for s in after_samples if s.status and s.attempts is not None]
    errors = Counter(s.error for s in samples if s.error)
    outcomes = {m: dict(Counter(str(r["outcome"]) for r in records)) for m, records in attempts.items()}

    def share(seq: list[Sample], route: str) -> float | None:
        return ratio(sum(s.route == route for s in seq), len(seq))

    figures: dict[str, Any] = {
        "description": scenario.description,
        "faults": scenario.faults,
        "client_requests": n,
        "requests_per_s": round(n / duration, 1),
        "success_rate": ratio(sum(s.ok for s in samples), n),
        "failed_requests": sum(not s.ok for s in samples),
        "status_counts": {str(k): v for k, v in sorted(Counter(s.status for s in samples).items())},
        "transport_errors": sum(1 for s in samples if not s.status),
        "upstream_attempts": per_upstream,
        "attempts_per_request": ratio(total_attempts, n),
        "attempts_per_request_by_upstream": {m: ratio(c, n) for m, c in per_upstream.items()},
        "after_grace": {
            "from_s": BREAKER_GRACE_S,
            "client_requests": len(after_samples),
            "upstream_attempts": after_attempts,
            "success_rate": ratio(sum(s.ok for s in after_samples), len(after_samples)),
            "primary_share": share(after_samples, PRIMARY_ROUTE),
        },
        "attempts_per_request_after_grace": ratio(sum(after_attempts.values()), len(after_samples)),
        "gateway_reported_attempts_per_request": ratio(sum(reported), len(reported)),
        "gateway_reported_attempts_per_request_after_grace": ratio(sum(reported_after), len(reported_after)),
        "gateway_reported_attempts_max": max(reported, default=None),
        "latency_p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "latency_p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "latency_max_ms": latencies[-1] * 1000 if latencies else None,
        "success_latency_p99_ms": percentile(ok_latencies, 99) * 1000 if ok_latencies else None,
        "primary_share": share(samples, PRIMARY_ROUTE),
        "secondary_share": share(samples, SECONDARY_ROUTE),
        "route_counts": dict(Counter(s.route or "-" for s in samples).most_common()),
        "upstream_outcomes": outcomes,
        "errors": [{"count": c, "example": e} for e, c in errors.most_common(5)],
        "distinct_errors": len(errors),
        "cpu": run.cpu,
    }
    figures["timeline"] = timeline(run, attempts, duration)
    if scenario.recover_after is not None:
        removed = run.removed_at if run.removed_at is not None else scenario.recover_after * duration
        figures["recovery"] = recovery_times(samples, removed, duration)
        figures["recovery"]["removal_answered_at_s"] = run.removal_answered_at
    if scenario.target is not None:
        value = figures[scenario.target.figure]
        figures["target"] = {
            "figure": scenario.target.figure,
            "label": scenario.target.label,
            "limit": scenario.target.limit,
            "value": value,
            "pass": value is not None and value <= scenario.target.limit,
        }
    return figures


# --------------------------------------------------------------------------------------------
# One scenario
# --------------------------------------------------------------------------------------------
@dataclass
class Env:
    args: argparse.Namespace
    work_dir: Path
    python: str
    gateway_pin: list[str]
    fake_port: int


def control(fake_port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    status, data = http_call(fake_port, method, path, body)
    if status != 200:
        raise HarnessError(f"fake control {method} {path} failed: HTTP {status} {data[:300]!r}")
    return data


def fetch_attempts(fake_port: int) -> dict[str, list[dict[str, Any]]]:
    """The fake's attempt log (without bodies), grouped by model."""
    records: list[dict[str, Any]] = orjson.loads(control(fake_port, "GET", "/_fake/attempts"))
    grouped: dict[str, list[dict[str, Any]]] = {model: [] for model in UPSTREAMS}
    for record in records:
        grouped.setdefault(str(record["model"]), []).append(record)
    return grouped


def run_scenario(env: Env, scenario: Scenario) -> tuple[dict[str, Any], list[str]]:
    args = env.args
    (gateway_port,) = free_ports(1)
    config = env.work_dir / f"gateway-{scenario.name}.yaml"
    config.write_text(gateway_config(gateway_port, env.fake_port))
    argv = [*env.gateway_pin, env.python, "-m", "spillgate", "serve", "--config", str(config)]
    gateway = start_child(f"gateway ({scenario.name})", argv, env.work_dir / f"gateway-{scenario.name}.log")
    warnings: list[str] = []
    with running([gateway]):
        control(env.fake_port, "DELETE", "/_fake/behaviors")
        wait_ready(gateway, lambda: http_call(gateway_port, "GET", "/healthz")[0] == 200)
        status, data = http_call(gateway_port, "POST", CHAT_PATH, chat_body(), AUTH)
        if status != 200:
            raise SetupError(f"{gateway.name}: sanity request got HTTP {status}: {data[:500]!r}")
        control(env.fake_port, "DELETE", "/_fake/attempts")
        remove_at = None if scenario.recover_after is None else scenario.recover_after * args.duration
        say(
            f"{scenario.name}: {scenario.description}; gateway pid {gateway.proc.pid} on :{gateway_port}, "
            f"{args.concurrency} connections for {args.duration:g} s ..."
        )
        run = run_async(
            load(gateway_port, env.fake_port, scenario.faults, args.concurrency, args.duration, remove_at)
        )
        if gateway.proc.poll() is not None:
            raise SetupError(f"{gateway.name} exited during the run:\n{gateway.log_tail()}")
        grouped = fetch_attempts(env.fake_port)
        attempts = {model: grouped.pop(model) for model in UPSTREAMS}
        logged = sum(len(r) for r in attempts.values()) + sum(len(r) for r in grouped.values())
        if logged >= FAKE_LOG_SIZE:
            warnings.append(
                f"{scenario.name}: the fake's attempt log is full ({logged:,} records); "
                "attempt figures are too low"
            )
        for model, records in grouped.items():
            warnings.append(f"{scenario.name}: {len(records)} upstream attempts for model {model!r}")
        pids = gateway_python_pids(gateway.proc.pid)
        rss = sum(status_field_kib(pid, "VmHWM") or 0 for pid in pids) / 1024
        control(env.fake_port, "DELETE", "/_fake/behaviors")
        control(env.fake_port, "DELETE", "/_fake/attempts")
    figures = summarize(scenario, run, attempts, args.duration)
    figures["gateway_peak_rss_mib"] = round(rss, 1)
    figures["gateway_pid"] = gateway.proc.pid
    if figures["transport_errors"]:
        warnings.append(f"{scenario.name}: {figures['transport_errors']} requests got no HTTP response")
    return figures, warnings


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "pct":
        return "100 %" if value == 1 else "0 %" if value == 0 else f"{100 * value:.3f} %"
    if kind == "ms":
        return f"{value:,.1f}"
    if kind == "s":
        return f"{value:.2f}"
    return f"{value:.3f}"


ROWS: tuple[tuple[str, str, str], ...] = (
    ("client requests", "client_requests", "int"),
    ("requests/s", "requests_per_s", "int"),
    ("success rate (2xx)", "success_rate", "pct"),
    ("failed requests (not 2xx)", "failed_requests", "int"),
    ("upstream attempts / request", "attempts_per_request", "ratio"),
    (f"  to {PRIMARY} / request", f"by:{PRIMARY}", "ratio"),
    (f"  to {SECONDARY} / request", f"by:{SECONDARY}", "ratio"),
    (f"  after the first {BREAKER_GRACE_S:g} s", "attempts_per_request_after_grace", "ratio"),
    ("  x-spillgate-attempts mean", "gateway_reported_attempts_per_request", "ratio"),
    ("latency p50 (ms)", "latency_p50_ms", "ms"),
    ("latency p99 (ms)", "latency_p99_ms", "ms"),
    (f"answered by the primary ({PRIMARY_ROUTE})", "primary_share", "pct"),
    ("primary again after removal (s)", "rec:primary_again_after_s", "s"),
    (f">= {RECOVERY_SHARE:.0%} primary after removal (s)", "rec:primary_95pct_after_s", "s"),
    ("gateway peak RSS (MiB)", "gateway_peak_rss_mib", "ms"),
)


def lookup(figures: dict[str, Any], key: str) -> Any:
    if key.startswith("by:"):
        return figures["attempts_per_request_by_upstream"].get(key[3:])
    if key.startswith("rec:"):
        return figures.get("recovery", {}).get(key[4:])
    return figures.get(key)


def render_table(results: dict[str, dict[str, Any]]) -> str:
    header = ["", *results]
    body = [[label, *(fmt(lookup(f, key), kind) for f in results.values())] for label, key, kind in ROWS]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body)])


def print_report(
    results: dict[str, dict[str, Any]],
    facts: dict[str, Any],
    args: argparse.Namespace,
    warnings: list[str],
    fake_rss_mib: float,
) -> None:
    print()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "python_executable"))
    print(
        f"Load: {args.concurrency} keep-alive connections of non-streaming chat completions, "
        f"{args.duration:g} s per scenario, a fresh gateway for each; resilience settings: defaults; "
        f"fake upstream peak RSS {fake_rss_mib:.1f} MiB"
    )
    print()
    print(render_table(results))
    print()
    for name, f in results.items():
        statuses = ", ".join(f"{k}: {v:,}" for k, v in f["status_counts"].items())
        outcomes = "; ".join(
            f"{m} {', '.join(f'{k} {v:,}' for k, v in o.items()) or 'none'}"
            for m, o in f["upstream_outcomes"].items()
        )
        cpu = ", ".join(
            f"{k.removesuffix('_pct').replace('_', ' ')} {v:g}%"
            for k, v in f["cpu"].items()
            if "steal" not in k or v
        )
        print(
            f"  {name}: statuses {statuses}; upstream outcomes: {outcomes}; "
            f"max x-spillgate-attempts {f['gateway_reported_attempts_max']}; {cpu}"
        )
        for err in f["errors"][:3]:
            print(f"    {err['count']:,} x {err['example']}")
        if f["distinct_errors"] > 3:
            print(f"    ... {f['distinct_errors'] - 3} more distinct error answers")
    for warning in warnings:
        print(f"  WARNING: {warning}")
    print()
    for name, f in results.items():
        target = f.get("target")
        if target is None:
            continue
        result = "PASS" if target["pass"] else "FAIL"
        print(
            f"{name}: {target['label']} {fmt(target['value'], 'ratio')} (target <= {target['limit']:g})"
            f"  {result}"
        )


def machine_facts(note: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cores_available": sorted(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "uvloop": HAVE_UVLOOP,
        "pinning": note,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    pin = pinning()
    note = (
        f"gateway on core {GATEWAY_CORE}; fake upstream and the load generator on core {LOAD_CORE}"
        if pin.load
        else pin.note.replace(", wrk and the streaming client", "")
    )
    facts = machine_facts(note)
    if pin.load:
        os.sched_setaffinity(0, {LOAD_CORE})  # this process runs the load generator
    python = venv_python()
    (fake_port,) = free_ports(1)
    fake_argv = [
        *pin.load,
        python,
        "-m",
        "spillgate",
        "fake-upstream",
        "--listen",
        f"{HOST}:{fake_port}",
        "--max-attempts",
        str(FAKE_LOG_SIZE),
    ]
    children: list[Child] = []
    results: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    with running(children):
        children.append(start_child("fake upstream", fake_argv, work_dir / "fake-upstream.log"))
        fake = children[0]
        wait_ready(fake, lambda: http_call(fake_port, "GET", "/_fake/health")[0] == 200)
        say(f"fake upstream pid {fake.proc.pid} on :{fake_port}; {note}")
        env = Env(args, work_dir, python, pin.gateway, fake_port)
        for scenario in SCENARIOS:
            if scenario.name not in args.scenarios:
                continue
            results[scenario.name], found = run_scenario(env, scenario)
            warnings += found
            if fake.proc.poll() is not None:
                raise SetupError(f"the fake upstream exited during {scenario.name}:\n{fake.log_tail()}")
        fake_rss = sum(status_field_kib(pid, "VmHWM") or 0 for pid in process_tree(fake.proc.pid)) / 1024
    print_report(results, facts, args, warnings, fake_rss)
    if args.json:
        targets = {name: f["target"] for name, f in results.items() if "target" in f}
        report = {
            "machine": facts,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "breaker_grace_s": BREAKER_GRACE_S,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "scenarios": results,
            "targets": targets,
            "targets_met": all(t["pass"] for t in targets.values()),
            "fake_upstream_peak_rss_mib": round(fake_rss, 1),
            "warnings": warnings,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="bench/resilience",
        description="Load-test the gateway's failover with routes at capacity (bounded: it stops by itself).",
    )
    parser.add_argument(
        "--duration", type=float, default=15.0, help="seconds of load per scenario (default 15)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="client connections (default 16)")
    parser.add_argument(
        "--scenarios",
        default=",".join(names),
        help=f"comma-separated subset to run (default all: {','.join(names)})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and logs")
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 600 and 1 <= args.concurrency <= 1024):
        parser.error("--duration must be in (0, 600] and --concurrency in [1, 1024]")
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown or not chosen:
        parser.error(f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(names)}")
    args.scenarios = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    failures = (SetupError, HarnessError, OSError, http.client.HTTPException)
    return run_benchmark("bench/resilience", parse_args(argv), benchmark, failures)


if __name__ == "__main__":
    sys.exit(main())
