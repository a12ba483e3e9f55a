#!/usr/bin/env python3
"""What one hop through the gateway costs, measured against the fake upstream in the same run.

Starts ``spillgate fake-upstream`` and ``spillgate serve`` on free loopback ports (the gateway
pinned to core 0; the fake upstream and every load generator pinned to core 1), then measures,
directly against the fake and through the gateway:

* non-streaming chat completion latency p50 / p99 at concurrency 1 (wrk);
* non-streaming requests/s at concurrency 64 (wrk);
* streaming time to first content token p50 / p99 at concurrency 32 (asyncio client below);
* the gateway's peak RSS.

Prints a table with the targets and writes the figures as JSON with ``--json PATH``.
Exit status: 0 when the measurement ran cleanly (whether or not targets were met), 1 when a
measurement had request errors, 2 when a process failed to start or answered wrongly, 130 on
Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of spillgate on Linux
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GATEWAY_CORE = 0
LOAD_CORE = 1
CLIENT_KEY = "sk-sg-bench-overhead-0123456789"
UPSTREAM_MODEL = "bench-upstream"
GATEWAY_MODEL = "bench"
CHAT_PATH = "/v1/chat/completions"
READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
STREAM_CONCURRENCY = 32
THROUGHPUT_CONCURRENCY = 64

# Targets (see bench/README.md).
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_GATEWAY_RPS = 2500.0
TARGET_STREAM_ADDED_P99_MS = 3.0


class SetupError(Exception):
    """A process did not start, or the fake / gateway answered a sanity request wrongly."""


# --------------------------------------------------------------------------------------------
# Request bodies and config
# --------------------------------------------------------------------------------------------
def chat_body(model: str, stream: bool) -> bytes:
    """A small, realistic chat completion request (~300 bytes)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise coding assistant. Answer with code first."},
            {
                "role": "user",
                "content": "In Python, how do I read a text file line by line and strip trailing "
                "whitespace from each line? A short snippet is enough.",
            },
        ],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def gateway_config(
    gateway_port: int, fake_port: int, usage_dsn: str | None = None, metrics: bool = True
) -> str:
    key_hash = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    usage = f"usage: {{dsn: '{usage_dsn}'}}\n" if usage_dsn else ""
    usage += "" if metrics else "metrics: off\n"
    return (
        f"listen: {HOST}:{gateway_port}\n" + usage + f'client_keys: [{{name: bench, hash: "{key_hash}"}}]\n'
        "providers:\n"
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1"}}\n'
        f'  fake-anthropic: {{protocol: anthropic, base_url: "http://{HOST}:{fake_port}"}}\n'
        "models:\n"
        f"  {GATEWAY_MODEL}: {{routes: [{{provider: fake, model: {UPSTREAM_MODEL}}}, "
        f"{{provider: fake-anthropic, model: {UPSTREAM_MODEL}}}]}}\n"
    )


@dataclass(frozen=True)
class Target:
    """Where requests go for one side of the comparison."""

    name: str  # "direct" or "gateway"
    port: int
    model: str
    headers: tuple[tuple[str, str], ...]

    def body(self, stream: bool) -> bytes:
        return chat_body(self.model, stream)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
@dataclass
class Pinning:
    gateway: list[str]
    load: list[str]
    note: str


def pinning() -> Pinning:
    allowed = os.sched_getaffinity(0)
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning([], [], "not pinned: taskset is not installed")
    if not {GATEWAY_CORE, LOAD_CORE} <= allowed:
        return Pinning([], [], f"not pinned: cores {GATEWAY_CORE} and {LOAD_CORE} are not both available")
    return Pinning(
        [taskset, "-c", str(GATEWAY_CORE)],
        [taskset, "-c", str(LOAD_CORE)],
        f"gateway on core {GATEWAY_CORE}; fake upstream, wrk and the streaming client on core {LOAD_CORE}",
    )


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once so the kernel cannot hand one out twice)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark itself is killed outright."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, kept across taskset's exec
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited after a grace period."""
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def start_child(name: str, argv: list[str], log_path: Path) -> Child:
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the benchmark, which then stops these
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise SetupError(f"cannot start {name} ({' '.join(argv)}): {exc}") from exc
    return Child(name, proc, log_path)


def http_call(
    port: int, method: str, path: str, body: bytes | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        hdrs = dict(headers)
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(child: Child, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        code = child.proc.poll()
        if code is not None:
            raise SetupError(
                f"{child.name} exited with status {code} before it was ready:\n{child.log_tail()}"
            )
        try:
            if probe():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise SetupError(f"{child.name} was not ready after {READY_TIMEOUT_S:g}s:\n{child.log_tail()}")


def check_answers(target: Target) -> None:
    """One non-streaming and one streaming request must succeed with content before measuring."""
    status, data = http_call(target.port, "POST", CHAT_PATH, target.body(False), target.headers)
    if status != 200:
        raise SetupError(f"{target.name}: sanity request got HTTP {status}: {data[:500]!r}")
    try:
        content = orjson.loads(data)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise SetupError(
            f"{target.name}: sanity response is not a chat completion ({exc}): {data[:500]!r}"
        ) from exc
    if not content:
        raise SetupError(f"{target.name}: sanity response has no content: {data[:500]!r}")
    status, data = http_call(target.port, "POST", CHAT_PATH, target.body(True), target.headers)
    if status != 200 or b'"content"' not in data or b"data: [DONE]" not in data:
        raise SetupError(f"{target.name}: streaming sanity request failed, HTTP {status}: {data[:500]!r}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/TID/children)."""
    found = [pid]
    for current in found:
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children if int(c) not in found)
    return found


def status_field_kib(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def gateway_python_pids(root: int) -> list[int]:
    """The Python processes of the gateway: the process itself or, behind a wrapper, its children."""
    pids = []
    for pid in process_tree(root):
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            continue
        if exe.startswith("python"):
            pids.append(pid)
    return pids or [root]


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------
WRK_MARKER = "SPILLGATE-BENCH"

# wrk's done() hook. wrk "corrects" its latency histogram for coordinated omission before handing
# it over: for every sample n >= 2e (e = run time / requests per connection) it adds synthetic
# samples n-e, n-2e, ... > e (stats_correct in wrk's src/stats.c). At concurrency 1 against a
# ~40 us upstream, e is ~40 us, so a single 5 ms scheduler hiccup becomes ~120 synthetic samples and
# the direct p99 grows by orders of magnitude while the gateway's (larger e) grows less: the
# "added" figures stop meaning anything. The correction is deterministic, so done() undoes it
# (largest value first: orig[v] = corrected[v] - sum of orig[v + k*e] for v > e) and reports the
# measured distribution, plus wrk's corrected p50/p99 for reference. raw_count must equal the
# number of recorded responses; the Python side checks that and otherwise falls back to wrk's.
WRK_DONE = """
local connections = %(connections)d
local function nearest_rank(values, counts, total, p)
  local rank = math.max(1, math.ceil(p / 100 * total))
  local seen = 0
  for i = 1, #values do
    seen = seen + counts[i]
    if seen >= rank then return values[i] end
  end
  return 0
end

done = function(summary, latency, requests)
  local per_conn = math.floor(summary.requests / connections)
  local e = per_conn > 0 and math.floor(summary.duration / per_conn) or 0
  local n = #latency
  local values, corrected = {}, {}
  for i = 1, n do
    values[i], corrected[i] = latency(i)
  end
  local raw, by_value, total, sum, max = {}, {}, 0, 0, 0
  local top = n > 0 and values[n] or 0
  for i = n, 1, -1 do
    local v, c = values[i], corrected[i]
    if e > 0 and v > e then
      local k = v + e
      while k <= top do
        c = c - (by_value[k] or 0)
        k = k + e
      end
    end
    by_value[v], raw[i] = c, c
    total, sum = total + c, sum + c * v
    if c > 0 and v > max then max = v end
  end
  local err = summary.errors
  io.write(string.format(
    "%(marker)s requests=%%d duration_us=%%d interval_us=%%d raw_count=%%d p50_us=%%d p99_us=%%d "
    .. "mean_us=%%.1f max_us=%%d wrk_p50_us=%%d wrk_p99_us=%%d "
    .. "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n",
    summary.requests, summary.duration, e, total,
    nearest_rank(values, raw, total, 50), nearest_rank(values, raw, total, 99),
    total > 0 and sum / total or 0, max,
    latency:percentile(50), latency:percentile(99),
    err.connect, err.read, err.write, err.status, err.timeout))
end
"""


def lua_string(text: str) -> str:
    level = "="
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def write_wrk_script(path: Path, body: bytes, headers: tuple[tuple[str, str], ...], connections: int) -> None:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_string(body.decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers]
    lines.append(WRK_DONE % {"connections": connections, "marker": WRK_MARKER})
    path.write_text("\n".join(lines))


@dataclass
class LoadResult:
    """One measured run: wrk (latency / throughput) or the streaming client."""

    tool: str
    connections: int
    duration_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]
    error_examples: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "connections": self.connections,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "requests_per_s": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "mean_ms": round(self.mean_ms, 4),
            "max_ms": round(self.max_ms, 4),
            "errors": self.errors,
            "error_count": self.error_count,
            "error_examples": self.error_examples,
            **self.details,
        }


def wrk_seconds(seconds: float) -> int:
    """wrk takes whole seconds only."""
    return max(1, round(seconds))


def run_wrk(
    pin: Pinning, target: Target, script: Path, connections: int, seconds: int, log_dir: Path, label: str
) -> LoadResult:
    argv = [
        *pin.load,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        f"--timeout={REQUEST_TIMEOUT_S:g}s",
        "-s",
        str(script),
        f"http://{HOST}:{target.port}{CHAT_PATH}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=seconds + 60, preexec_fn=_die_with_parent
    )
    (log_dir / f"wrk-{label}.log").write_text(done.stdout + done.stderr)
    match = re.search(WRK_MARKER + r" (.*)", done.stdout)
    if done.returncode != 0 or match is None:
        raise SetupError(f"wrk failed (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    fields = {k: float(v) for k, v in (item.split("=") for item in match.group(1).split())}
    errors = {k: int(fields[k]) for k in ("connect", "read", "write", "status", "timeout")}
    details: dict[str, Any] = {
        "wrk_corrected_p50_ms": fields["wrk_p50_us"] / 1000,
        "wrk_corrected_p99_ms": fields["wrk_p99_us"] / 1000,
        "wrk_interval_us": int(fields["interval_us"]),
    }
    # Every response is recorded once unless it took longer than the timeout (counted as one).
    if int(fields["raw_count"]) == int(fields["requests"]) - errors["timeout"]:
        details["latency_source"] = "wrk, coordinated-omission correction undone (measured samples)"
    else:
        details["latency_source"] = "wrk, coordinated-omission corrected (could not undo the correction)"
        for name in ("p50_us", "p99_us"):
            fields[name] = fields["wrk_" + name]
    # wrk's own "Non-2xx or 3xx responses" line, as a cross-check of errors.status.
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    if non2xx:
        errors["status"] = max(errors["status"], int(non2xx.group(1)))
    examples = [f"wrk: {k} errors: {v}" for k, v in errors.items() if v]
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=fields["duration_us"] / 1e6,
        requests=int(fields["requests"]),
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        mean_ms=fields["mean_us"] / 1000,
        max_ms=fields["max_us"] / 1000,
        errors=errors,
        error_examples=examples,
        details=details,
    )


def cpu_snapshot() -> dict[str, list[int]]:
    """Per-core jiffies from /proc/stat: user nice system idle iowait irq softirq steal."""
    snap: dict[str, list[int]] = {}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                snap[name] = [int(v) for v in values[:8]]
    except OSError:
        pass
    return snap


def cpu_usage(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, float]:
    """Busy and steal percentage of each core between two snapshots (shows which side saturated)."""
    usage: dict[str, float] = {}
    for name, end in after.items():
        start = before.get(name)
        if start is None:
            continue
        delta = [b - a for a, b in zip(start, end, strict=True)]
        total = sum(delta)
        if total <= 0:
            continue
        idle, iowait, steal = delta[3], delta[4], delta[7]
        usage[f"{name}_busy_pct"] = round(100 * (total - idle - iowait - steal) / total, 1)
        usage[f"{name}_steal_pct"] = round(100 * steal / total, 1)
    return usage


def measure_wrk(
    pin: Pinning,
    target: Target,
    connections: int,
    duration: float,
    warmup: float,
    work_dir: Path,
    label: str,
) -> LoadResult:
    script = work_dir / f"{label}.lua"
    write_wrk_script(script, target.body(False), target.headers, connections)
    if warmup > 0:
        run_wrk(pin, target, script, connections, wrk_seconds(warmup), work_dir, label + "-warmup")
    before = cpu_snapshot()
    result = run_wrk(pin, target, script, connections, wrk_seconds(duration), work_dir, label)
    result.details["cpu"] = cpu_usage(before, cpu_snapshot())
    return result


# --------------------------------------------------------------------------------------------
# Streaming time-to-first-token client
# --------------------------------------------------------------------------------------------
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


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


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


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    label: str
    unit: str
    direct: float | None
    gateway: float
    target: str = "-"
    passed: bool | None = None
    decimals: int = 3

    @property
    def added(self) -> float | None:
        return None if self.direct is None else self.gateway - self.direct


def build_rows(results: dict[str, dict[str, LoadResult]], rss_mib: float) -> list[Row]:
    lat_d, lat_g = results["latency_c1"]["direct"], results["latency_c1"]["gateway"]
    thr_d, thr_g = results["throughput_c64"]["direct"], results["throughput_c64"]["gateway"]
    ttft_d, ttft_g = results["stream_ttft_c32"]["direct"], results["stream_ttft_c32"]["gateway"]
    return [
        Row(
            "latency_c1_p50_ms",
            "latency p50, c=1",
            "ms",
            lat_d.p50_ms,
            lat_g.p50_ms,
            f"added <= {TARGET_ADDED_P50_MS:g} ms",
            lat_g.p50_ms - lat_d.p50_ms <= TARGET_ADDED_P50_MS,
        ),
        Row(
            "latency_c1_p99_ms",
            "latency p99, c=1",
            "ms",
            lat_d.p99_ms,
            lat_g.p99_ms,
            f"added <= {TARGET_ADDED_P99_MS:g} ms",
            lat_g.p99_ms - lat_d.p99_ms <= TARGET_ADDED_P99_MS,
        ),
        Row(
            "throughput_c64_rps",
            "throughput, c=64",
            "req/s",
            thr_d.rps,
            thr_g.rps,
            f"gateway >= {TARGET_GATEWAY_RPS:,.0f}",
            thr_g.rps >= TARGET_GATEWAY_RPS,
            decimals=0,
        ),
        Row("stream_ttft_c32_p50_ms", "stream first token p50, c=32", "ms", ttft_d.p50_ms, ttft_g.p50_ms),
        Row(
            "stream_ttft_c32_p99_ms",
            "stream first token p99, c=32",
            "ms",
            ttft_d.p99_ms,
            ttft_g.p99_ms,
            f"added <= {TARGET_STREAM_ADDED_P99_MS:g} ms",
            ttft_g.p99_ms - ttft_d.p99_ms <= TARGET_STREAM_ADDED_P99_MS,
        ),
        Row("stream_c32_rps", "stream requests/s, c=32", "req/s", ttft_d.rps, ttft_g.rps, decimals=0),
        Row("gateway_peak_rss_mib", "gateway peak RSS (VmHWM)", "MiB", None, rss_mib, decimals=1),
    ]


def noise_warnings(results: dict[str, dict[str, LoadResult]], pin: Pinning) -> list[str]:
    """Signs that something outside the benchmark competed for the cores during a measured run."""
    if not pin.load:
        return []
    warnings = []
    for metric, sides in results.items():
        for side, r in sides.items():
            cpu = r.details.get("cpu", {})
            idle_core = cpu.get(f"cpu{GATEWAY_CORE}_busy_pct", 0.0)
            if side == "direct" and idle_core > 20:
                warnings.append(
                    f"{metric} {side}: core {GATEWAY_CORE} (idle gateway) was {idle_core:g}% busy; "
                    "other processes shared the machine"
                )
            steal = max((v for k, v in cpu.items() if k.endswith("_steal_pct")), default=0.0)
            if steal > 5:
                warnings.append(f"{metric} {side}: {steal:g}% CPU steal (the hypervisor took the core)")
    return warnings


OBSERVABILITY_TOLERANCE = 0.20
"""Metrics + usage recording may add at most this share to the bare gateway's added latency."""


@dataclass(frozen=True)
class Cost:
    """One figure's added latency without and with observability, the median over rounds."""

    key: str
    label: str
    bare_added: float
    observed_added: float
    per_round: list[tuple[float, float]]
    checked: bool

    @property
    def ratio(self) -> float:
        return self.observed_added / self.bare_added if self.bare_added > 0 else math.inf

    @property
    def passed(self) -> bool | None:
        if not self.checked:
            return None
        return self.observed_added <= self.bare_added * (1 + OBSERVABILITY_TOLERANCE)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.key,
            "bare_added_ms": round(self.bare_added, 4),
            "observed_added_ms": round(self.observed_added, 4),
            "ratio": round(self.ratio, 3),
            "per_round": [[round(b, 4), round(o, 4)] for b, o in self.per_round],
            "pass": self.passed,
        }


def observability_cost(rounds: list[dict[str, dict[str, LoadResult]]]) -> list[Cost]:
    figures = (
        ("latency_c1", "p50_ms", "latency p50, c=1", True),
        ("latency_c1", "p99_ms", "latency p99, c=1", True),
        ("stream_ttft_c32", "p50_ms", "stream first token p50, c=32", False),
        ("stream_ttft_c32", "p99_ms", "stream first token p99, c=32", True),
    )
    costs = []
    for metric, attr, label, checked in figures:
        per_round = []
        for results in rounds:
            direct = getattr(results[metric]["direct"], attr)
            per_round.append(
                (
                    getattr(results[metric]["gateway"], attr) - direct,
                    getattr(results[metric]["observed"], attr) - direct,
                )
            )
        bare = statistics.median(b for b, _ in per_round)
        observed = statistics.median(o for _, o in per_round)
        costs.append(Cost(f"{metric}_{attr}", label, bare, observed, per_round, checked))
    rps = [(r["throughput_c64"]["gateway"].rps, r["throughput_c64"]["observed"].rps) for r in rounds]
    costs.append(
        Cost(
            "throughput_c64_rps",
            "throughput, c=64 (req/s, not added ms)",
            statistics.median(b for b, _ in rps),
            statistics.median(o for _, o in rps),
            rps,
            False,
        )
    )
    return costs


def render_comparison(costs: list[Cost], rounds: int) -> str:
    header = [
        "observability cost",
        "bare gateway added",
        "metrics + usage added",
        "ratio",
        "target",
        "result",
    ]
    body = []
    for c in costs:
        body.append(
            [
                c.label,
                f"{c.bare_added:+,.3f}" if "req/s" not in c.label else f"{c.bare_added:,.0f}",
                f"{c.observed_added:+,.3f}" if "req/s" not in c.label else f"{c.observed_added:,.0f}",
                f"{c.ratio:.2f}",
                f"<= {1 + OBSERVABILITY_TOLERANCE:.2f}" if c.checked else "-",
                "-" if c.passed is None else ("PASS" if c.passed else "FAIL"),
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    note = f"median of {rounds} rounds" if rounds > 1 else "one round (use --rounds 3 for medians)"
    return "\n".join([*lines, f"  ({note}; added = the side's figure minus direct's in the same round)"])


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def fmt(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:{'+' if signed else ''},.{decimals}f}"


def render_table(rows: list[Row]) -> str:
    header = ["metric", "unit", "direct", "through gateway", "added", "target", "result"]
    body = [
        [
            r.label,
            r.unit,
            fmt(r.direct, r.decimals),
            fmt(r.gateway, r.decimals),
            fmt(r.added, r.decimals, signed=True),
            r.target,
            "-" if r.passed is None else ("PASS" if r.passed else "FAIL"),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = {2, 3, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in body)])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.split("Copyright")[0].removeprefix("wrk").strip() or "unknown"


def machine_facts(pin: Pinning) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cores_available": sorted(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "uvloop": HAVE_UVLOOP,
        "wrk": wrk_version(),
        "pinning": pin.note,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def venv_python() -> str:
    candidate = REPO / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


@contextmanager
def running(children: list[Child]) -> Iterator[None]:
    """Stop every started child by its PID on the way out, whatever happened."""
    try:
        yield
    finally:
        for child in reversed(children):
            child.stop()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    pin = pinning()
    facts = machine_facts(pin)
    if pin.load:
        os.sched_setaffinity(0, {LOAD_CORE})  # this process runs the streaming client
    python = venv_python()
    fake_port, gateway_port, observed_port = free_ports(3)
    config = work_dir / "gateway.yaml"
    if args.observability:
        # "gateway": metrics off, no usage store; "observed": metrics on, SQLite usage recording on.
        config.write_text(gateway_config(gateway_port, fake_port, metrics=False))
        (work_dir / "observed.yaml").write_text(
            gateway_config(observed_port, fake_port, f"sqlite:{work_dir / 'usage.db'}")
        )
    else:
        usage_dsn = f"sqlite:{work_dir / 'usage.db'}" if args.usage else None
        config.write_text(gateway_config(gateway_port, fake_port, usage_dsn))
    auth = (("Authorization", f"Bearer {CLIENT_KEY}"),)
    direct = Target("direct", fake_port, UPSTREAM_MODEL, ())
    gateway = Target("gateway", gateway_port, GATEWAY_MODEL, auth)
    observed = Target("observed", observed_port, GATEWAY_MODEL, auth)
    sides = [direct, gateway, observed] if args.observability else [direct, gateway]

    children: list[Child] = []
    with running(children):
        fake_argv = [*pin.load, python, "-m", "spillgate", "fake-upstream", "--listen", f"{HOST}:{fake_port}"]
        children.append(start_child("fake upstream", fake_argv, work_dir / "fake-upstream.log"))
        gw_argv = [*pin.gateway, python, "-m", "spillgate", "serve", "--config", str(config)]
        children.append(start_child("gateway", gw_argv, work_dir / "gateway.log"))
        fake_child, gw_child = children
        if args.observability:
            obs_argv = [
                *pin.gateway,
                python,
                "-m",
                "spillgate",
                "serve",
                "--config",
                str(work_dir / "observed.yaml"),
            ]
            children.append(start_child("observed gateway", obs_argv, work_dir / "observed.log"))

        def fake_ready() -> bool:
            return http_call(fake_port, "POST", CHAT_PATH, direct.body(False))[0] == 200

        wait_ready(fake_child, fake_ready)
        for child, side in zip(children[1:], sides[1:], strict=True):
            wait_ready(
                child, functools.partial(lambda port: http_call(port, "GET", "/healthz")[0] == 200, side.port)
            )
        for side in sides:
            check_answers(side)
        say(
            f"fake upstream pid {fake_child.proc.pid} on :{fake_port}; "
            + "; ".join(
                f"{s.name} pid {c.proc.pid} on :{s.port}"
                for c, s in zip(children[1:], sides[1:], strict=True)
            )
            + f"; {pin.note}"
        )

        rounds: list[dict[str, dict[str, LoadResult]]] = []
        for n in range(args.rounds):
            tag = f" (round {n + 1}/{args.rounds})" if args.rounds > 1 else ""
            results: dict[str, dict[str, LoadResult]] = {
                "latency_c1": {},
                "throughput_c64": {},
                "stream_ttft_c32": {},
            }
            for t in sides:
                say(f"latency, concurrency 1, {t.name}{tag} ...")
                results["latency_c1"][t.name] = measure_wrk(
                    pin, t, 1, args.duration, args.warmup, work_dir, f"latency-{t.name}"
                )
            for t in sides:
                say(f"throughput, concurrency {THROUGHPUT_CONCURRENCY}, {t.name}{tag} ...")
                results["throughput_c64"][t.name] = measure_wrk(
                    pin,
                    t,
                    THROUGHPUT_CONCURRENCY,
                    args.duration,
                    args.warmup,
                    work_dir,
                    f"throughput-{t.name}",
                )
            for t in sides:
                say(f"streaming first token, concurrency {STREAM_CONCURRENCY}, {t.name}{tag} ...")
                results["stream_ttft_c32"][t.name] = measure_stream(
                    t, STREAM_CONCURRENCY, args.duration, args.warmup
                )
            rounds.append(results)
        results = rounds[0]

        gw_pids = gateway_python_pids(gw_child.proc.pid)
        hwm = [status_field_kib(pid, "VmHWM") for pid in gw_pids]
        rss_mib = sum(v for v in hwm if v is not None) / 1024
        fake_hwm = sum(status_field_kib(p, "VmHWM") or 0 for p in process_tree(fake_child.proc.pid)) / 1024
        for child in children:
            if child.proc.poll() is not None:
                raise SetupError(f"{child.name} exited during the run:\n{child.log_tail()}")

    rows = build_rows(results, rss_mib)
    warnings = [w for results_n in rounds for w in noise_warnings(results_n, pin)]
    failures = [
        f"{metric} {side}: {r.error_count} request errors ({'; '.join(r.error_examples)})"
        for results_n in rounds
        for metric, by_side in results_n.items()
        for side, r in by_side.items()
        if r.error_count
    ]
    comparison = observability_cost(rounds) if args.observability else []
    print()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "python_executable"))
    warm = f"a {wrk_seconds(args.warmup)} s / {args.warmup:g} s warm-up" if args.warmup > 0 else "no warm-up"
    print(
        f"Durations: {wrk_seconds(args.duration)} s per wrk run, {args.duration:g} s per streaming run, "
        f"each after {warm}; gateway pid(s) {gw_pids}, fake upstream peak RSS {fake_hwm:.1f} MiB"
    )
    print()
    if args.observability:
        print("'through gateway' below: metrics off, no usage store (the bare hop).")
    print(render_table(rows))
    if comparison:
        print()
        print(render_comparison(comparison, args.rounds))
    print()
    for metric, by_side in results.items():
        for side, r in by_side.items():
            cpu = ", ".join(
                f"{k.removesuffix('_pct').replace('_', ' ')} {v:g}%"
                for k, v in r.details.get("cpu", {}).items()
                if "steal" not in k or v
            )
            print(f"  {metric} {side}: {r.requests:,} requests, {r.error_count} errors; {cpu}")
    sources = {r.details.get("latency_source") for r in results["latency_c1"].values()}
    print("  c=1 latency source: " + "; ".join(sorted(str(s) for s in sources)))
    for warning in warnings:
        print(f"  NOISE: {warning}")
    if failures:
        print("\nFLAGGED - measurements with request errors (figures above are not trustworthy):")
        for failure in failures:
            print(f"  {failure}")
    targets = [r for r in rows if r.passed is not None] + [c for c in comparison if c.passed is not None]
    print(f"\nTargets met: {sum(bool(r.passed) for r in targets)}/{len(targets)}")

    if args.json:
        report = {
            "machine": facts,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "figures": {
                r.key: {
                    "unit": r.unit,
                    "direct": rounded(r.direct),
                    "gateway": rounded(r.gateway),
                    "added": rounded(r.added),
                    "target": None if r.passed is None else r.target,
                    "pass": r.passed,
                }
                for r in rows
            },
            "runs": {m: {side: r.as_json() for side, r in by_side.items()} for m, by_side in results.items()},
            "observability_cost": [c.as_json() for c in comparison],
            "gateway_pids": gw_pids,
            "fake_upstream_peak_rss_mib": round(fake_hwm, 1),
            "warnings": warnings,
            "request_errors": sum(
                r.error_count
                for results_n in rounds
                for by_side in results_n.values()
                for r in by_side.values()
            ),
            "targets_met": all(bool(r.passed) for r in targets),
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/overhead", description="Measure what one hop through the spillgate gateway costs."
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds per measured run (default 10; wrk runs use whole seconds, min 1)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up before each measured run (default 1)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with configs and logs")
    parser.add_argument(
        "--usage",
        action="store_true",
        help="the gateway also records every request and attempt in a SQLite usage store",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="compare, in the same run, a bare gateway (metrics off, no usage store) with one that has "
        "metrics and SQLite usage recording on; target: added latency within "
        f"{OBSERVABILITY_TOLERANCE:.0%} of the bare gateway's",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every side this many times, alternating; the comparison uses the median (default 1)",
    )
    args = parser.parse_args(argv)
    if not (args.duration > 0 and args.warmup >= 0 and args.rounds >= 1):
        parser.error("--duration must be > 0, --warmup >= 0 and --rounds >= 1")
    if args.usage and args.observability:
        parser.error("--observability already measures a gateway with usage recording; drop --usage")
    return args


def run_benchmark(
    prog: str,
    args: argparse.Namespace,
    benchmark: Callable[[argparse.Namespace, Path], int],
    failures: tuple[type[BaseException], ...] = (SetupError,),
) -> int:
    """Run ``benchmark(args, work_dir)`` in a fresh temp dir, SIGTERM taken as Ctrl-C: 2 on one of
    ``failures`` (the dir, with configs and logs, is kept), 130 when interrupted; the dir is kept
    with ``args.keep_logs`` too. The benchmarks' shared ``main``."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    work_dir = Path(tempfile.mkdtemp(prefix=f"spillgate-{prog.replace('/', '-')}-"))
    keep = args.keep_logs
    try:
        return benchmark(args, work_dir)
    except failures as exc:
        keep = True
        say(f"{prog}: {exc}")
        return 2
    except KeyboardInterrupt:
        say(f"{prog}: interrupted; processes stopped")
        return 130
    finally:
        if keep:
            say(f"{prog}: logs and config kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        say("bench/overhead: wrk is not installed (apt-get install wrk)")
        return 2
    return run_benchmark("bench/overhead", args, benchmark)


if __name__ == "__main__":
    sys.exit(main())
