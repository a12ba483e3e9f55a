"""What every benchmark shares: the processes it starts, the requests it checks them with, and the
primitives of a measurement.

Free loopback ports, pinning to cores (``taskset``), starting ``spillgate`` children whose output
goes to a log and which die with the benchmark, readiness waits, stopping them by PID, reading
their memory and CPU time from ``/proc``; per-core CPU use from ``/proc/stat``; the nearest-rank
percentile; the request bodies of the three client APIs; ``LoadResult``, what one measured run
(wrk or an asyncio client) produced.
"""

from __future__ import annotations

import ctypes
import http.client
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

try:
    import uvloop  # noqa: F401  (only whether it is there)
except ImportError:  # pragma: no cover - uvloop is a dependency of spillgate on Linux
    HAVE_UVLOOP = False
else:
    HAVE_UVLOOP = True

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GATEWAY_CORE = 0
LOAD_CORE = 1
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
MESSAGES_PATH = "/v1/messages"
API_PATHS = {"chat": CHAT_PATH, "responses": RESPONSES_PATH, "messages": MESSAGES_PATH}
"""The client path of each client API (by its config word)."""
READY_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0


class SetupError(Exception):
    """A process did not start, or the fake / gateway answered a sanity request wrongly."""


# --------------------------------------------------------------------------------------------
# Request bodies
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


SYSTEM_TEXT = "You are a concise coding assistant. Answer with code first."
USER_TEXT = (
    "In Python, how do I read a text file line by line and strip trailing "
    "whitespace from each line? A short snippet is enough."
)


def responses_body(model: str, stream: bool) -> bytes:
    """The same request as :func:`chat_body`, as an OpenAI Responses client sends it."""
    body: dict[str, Any] = {
        "model": model,
        "instructions": SYSTEM_TEXT,
        "input": [{"role": "user", "content": USER_TEXT}],
        "max_output_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def messages_body(model: str, stream: bool) -> bytes:
    """The same request as :func:`chat_body`, as an Anthropic Messages client sends it."""
    body: dict[str, Any] = {
        "model": model,
        "system": SYSTEM_TEXT,
        "messages": [{"role": "user", "content": USER_TEXT}],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


BODIES: dict[str, Callable[[str, bool], bytes]] = {
    "chat": chat_body,
    "responses": responses_body,
    "messages": messages_body,
}


@dataclass(frozen=True)
class Target:
    """Where requests go for one side of the comparison."""

    name: str  # "direct" or "gateway"; "native" or "translated" (bench/overhead --translation)
    port: int
    model: str
    headers: tuple[tuple[str, str], ...]
    api: str = "chat"
    """The client API its requests are in: ``chat``, ``responses`` or ``messages``."""

    @property
    def path(self) -> str:
        return API_PATHS[self.api]

    def body(self, stream: bool) -> bytes:
        return BODIES[self.api](self.model, stream)


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


def die_with_parent() -> None:
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
                preexec_fn=die_with_parent,
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


def cpu_seconds(pids: list[int]) -> float:
    """CPU time the processes' threads have run, summed, from ``/proc/PID/task/TID/schedstat``
    (nanoseconds; the clock ``time.process_time`` reads, which the kernel does not charge for the
    time the hypervisor takes a core). A thread that exits takes its time with it; the gateway's
    event loop is one thread that lives as long as the process."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


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


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
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


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
