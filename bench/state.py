"""``bench/overhead --state redis`` and ``bench/overhead --workers 2``: what sharing the routing
state through Redis costs, each against its baseline in the same run.

``--state redis`` starts one ``redis-server`` (no persistence, loopback), one fake upstream and two
gateways that differ only in ``state:`` (``memory`` / ``redis``), both pinned to the gateway core,
and measures, in alternating rounds (the order flips every round: ABBA):

* non-streaming latency at c=1 (wrk) with a client key without limits (nothing on the request path
  touches Redis: target redis - memory p50 <= +0.1 ms) and with a key that has an ``rpm`` limit
  (its check is one Redis round trip: reported);
* upstream attempts per client request with a primary that always answers 503 at capacity and a
  healthy secondary, across two instances on one Redis (target ≤ 1.1) and two on memory state
  (reported): ``ATTEMPT_REQUESTS`` requests alternating between the two, 4 at a time, with 1 s
  cooldowns so that several half-open periods pass.

``--workers 2`` starts ``redis-server``, the fake upstream and one ``spillgate serve --workers 1``
and one ``--workers 2`` (both ``state: redis``), unpinned (two workers need both cores), and
measures in alternating rounds wrk at c=64: requests/s, the gateway's CPU per request (schedstat
of the supervisor and its workers, not charged for steal; target: 2 workers within 10 % of 1) and
each worker's share of the requests (from the metrics each worker shares in Redis; target
≥ 30 % each). On this 2-core machine wrk and the fake upstream share the cores with the workers, so
throughput cannot double: the CPU figure stands for it.

Bounded: ``rounds`` x (4 or 2) wrk runs of ``warmup + duration`` seconds, plus the attempts drive
(at most ``ATTEMPT_REQUESTS`` requests, each within the request timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.client import raw_request, read_response
from bench.harness import (
    CHAT_PATH,
    HOST,
    Child,
    LoadResult,
    Pinning,
    SetupError,
    Target,
    cpu_seconds,
    free_ports,
    http_call,
    process_tree,
    running,
    say,
    start_child,
    venv_python,
    wait_ready,
)
from bench.wrk import measure_wrk

LATENCY_TARGET_MS = 0.1
ATTEMPTS_TARGET = 1.1
CPU_RATIO_TARGET = 1.10
SHARE_TARGET = 0.30
ATTEMPT_REQUESTS = 400
THROUGHPUT_CONNECTIONS = 64
PLAIN_KEY = "sk-sg-bench-state-plain-000000"
LIMITED_KEY = "sk-sg-bench-state-limited-0000"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def gateway_config(port: int, fake_port: int, state: str | None, namespace: str) -> str:
    lines = [
        f"listen: {HOST}:{port}",
        "client_keys:",
        f'  - {{name: plain, hash: "{_hash(PLAIN_KEY)}"}}',
        f'  - {{name: limited, hash: "{_hash(LIMITED_KEY)}", rpm: 100000000}}',
        "providers:",
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1"}}',
        "models:",
        "  bench: {routes: [{provider: fake, model: bench-upstream}]}",
        "  failing:",
        "    routes: [{provider: fake, model: bench-at-capacity}, {provider: fake, model: bench-upstream}]",
        "resilience: {cooldowns: {capacity: 1s, capacity_max: 1s}}",
    ]
    if state is not None:
        lines.append(f"state: {{url: '{state}', namespace: {namespace}}}")
    return "\n".join(lines) + "\n"


@dataclass
class Figure:
    name: str
    unit: str
    target: str
    values: list[float]
    passed: bool | None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def row(self) -> str:
        spread = f"{min(self.values):.3f}..{max(self.values):.3f}" if len(self.values) > 1 else ""
        verdict = "" if self.passed is None else ("PASS" if self.passed else "MISS")
        per_round = ", ".join(f"{v:.3f}" for v in self.values)
        return (
            f"  {self.name:<52} {self.median:>9.3f} {self.unit:<5} {spread:<18} "
            f"{self.target:<12} {verdict:<5} [{per_round}]"
        )


def _start_redis(work_dir: Path, children: list[Child]) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SetupError("redis-server is not installed (apt-get install redis-server)")
    (port,) = free_ports(1)
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(work_dir)]
    child = start_child("redis-server", argv, work_dir / "redis.log")
    children.append(child)

    def up() -> bool:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_ready(child, up)
    return f"redis://{HOST}:{port}/0"


def _start_fake(work_dir: Path, pin: Pinning, children: list[Child]) -> int:
    (port,) = free_ports(1)
    behaviors = work_dir / "behaviors.yaml"
    behaviors.write_text("models:\n  bench-at-capacity: {preset: capacity}\n")
    argv = [*pin.load, venv_python(), "-m", "spillgate", "fake-upstream", "--listen", f"{HOST}:{port}"]
    argv += ["--behaviors", str(behaviors), "--max-attempts", "1000000"]
    child = start_child("fake upstream", argv, work_dir / "fake.log")
    children.append(child)
    body = Target("direct", port, "bench-upstream", ()).body(False)
    wait_ready(child, lambda: http_call(port, "POST", CHAT_PATH, body)[0] == 200)
    return port


def _start_gateway(
    name: str, work_dir: Path, config: str, prefix: list[str], extra: list[str], children: list[Child]
) -> Child:
    path = work_dir / f"{name}.yaml"
    path.write_text(config)
    argv = [*prefix, venv_python(), "-m", "spillgate", "serve", "--config", str(path), *extra]
    child = start_child(name, argv, work_dir / f"{name}.log")
    children.append(child)
    return child


def _port_of(config: str) -> int:
    return int(config.split("\n", 1)[0].rsplit(":", 1)[1])


def _ready(child: Child, port: int) -> None:
    wait_ready(child, lambda: http_call(port, "GET", "/readyz")[0] == 200)


def _check(target: Target) -> None:
    status, data = http_call(target.port, "POST", CHAT_PATH, target.body(False), target.headers)
    if status != 200:
        raise SetupError(f"{target.name}: sanity request got HTTP {status}: {data[:300]!r}")


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {key}"),)


# -- --state redis ----------------------------------------------------------------------------------


def state_benchmark(args: argparse.Namespace, work_dir: Path, pin: Pinning) -> tuple[list[Figure], int]:
    children: list[Child] = []
    errors = 0
    with running(children):
        url = _start_redis(work_dir, children)
        fake_port = _start_fake(work_dir, pin, children)
        ports = free_ports(6)
        configs = {
            "memory": gateway_config(ports[0], fake_port, None, "m"),
            "redis": gateway_config(ports[1], fake_port, url, "bench-latency"),
            "memory-a": gateway_config(ports[2], fake_port, None, "m"),
            "memory-b": gateway_config(ports[3], fake_port, None, "m"),
            "redis-a": gateway_config(ports[4], fake_port, url, "bench-attempts"),
            "redis-b": gateway_config(ports[5], fake_port, url, "bench-attempts"),
        }
        started = {
            name: _start_gateway(name, work_dir, config, pin.gateway, [], children)
            for name, config in configs.items()
        }
        for name, child in started.items():
            _ready(child, _port_of(configs[name]))
        targets = {
            (side, key): Target(side, _port_of(configs[side]), "bench", _auth(k))
            for side in ("memory", "redis")
            for key, k in (("plain", PLAIN_KEY), ("limited", LIMITED_KEY))
        }
        for target in targets.values():
            _check(target)
        say(f"redis {url}; fake upstream :{fake_port}; {pin.note}")

        added: dict[str, list[float]] = {"plain": [], "limited": []}
        p99: dict[str, list[float]] = {"plain": [], "limited": []}
        for n in range(args.rounds):
            order = ("memory", "redis") if n % 2 == 0 else ("redis", "memory")
            for key in ("plain", "limited"):
                results: dict[str, LoadResult] = {}
                for side in order:
                    say(f"latency c=1, {side}, key {key} (round {n + 1}/{args.rounds}) ...")
                    results[side] = measure_wrk(
                        pin,
                        targets[(side, key)],
                        1,
                        args.duration,
                        args.warmup,
                        work_dir,
                        f"lat-{side}-{key}-{n}",
                    )
                    errors += results[side].error_count
                added[key].append(results["redis"].p50_ms - results["memory"].p50_ms)
                p99[key].append(results["redis"].p99_ms - results["memory"].p99_ms)

        say(
            f"attempts per request with a failing primary, {ATTEMPT_REQUESTS} requests over two instances ..."
        )
        attempts = {}
        for kind in ("redis", "memory"):
            pair = (_port_of(configs[f"{kind}-a"]), _port_of(configs[f"{kind}-b"]))
            before = _fake_attempts(fake_port)
            ok, failed = asyncio.run(_drive(pair, ATTEMPT_REQUESTS))
            errors += failed
            attempts[kind] = (_fake_attempts(fake_port) - before) / max(1, ok + failed)
    figures = [
        Figure(
            "c=1 p50 added, key without limits (redis - memory)",
            "ms",
            "<= +0.1 ms",
            added["plain"],
            statistics.median(added["plain"]) <= LATENCY_TARGET_MS,
        ),
        Figure("c=1 p99 added, key without limits", "ms", "-", p99["plain"], None),
        Figure("c=1 p50 added, key with an rpm limit (1 round trip)", "ms", "-", added["limited"], None),
        Figure("c=1 p99 added, key with an rpm limit", "ms", "-", p99["limited"], None),
        Figure(
            "upstream attempts / request, failing primary, 2 on redis",
            "",
            "<= 1.1",
            [attempts["redis"]],
            attempts["redis"] <= ATTEMPTS_TARGET,
        ),
        Figure(
            "upstream attempts / request, failing primary, 2 on memory", "", "-", [attempts["memory"]], None
        ),
    ]
    return figures, errors


def _fake_attempts(port: int) -> int:
    status, data = http_call(port, "GET", "/_fake/attempts")
    if status != 200:
        raise SetupError(f"fake upstream attempts: HTTP {status}")
    return len(orjson.loads(data))


async def _drive(ports: tuple[int, int], count: int) -> tuple[int, int]:
    """``count`` requests for the failing model, alternating between the two instances, 4 at a time
    (paced to last a few seconds: several 1 s cooldowns and their probes)."""
    body = Target("x", 0, "failing", ()).body(False)
    ok = failed = 0
    sent = 0
    lock = asyncio.Lock()

    async def worker() -> None:
        nonlocal ok, failed, sent
        while True:
            async with lock:
                if sent >= count:
                    return
                n = sent
                sent += 1
            port = ports[n % 2]
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                try:
                    writer.write(
                        raw_request(port, "POST", CHAT_PATH, body, _auth(PLAIN_KEY), keep_alive=False)
                    )
                    status = (await asyncio.wait_for(read_response(reader), 10)).status
                finally:
                    writer.close()
            except (OSError, TimeoutError, ValueError):
                status = 0
            if status == 200:
                ok += 1
            else:
                failed += 1
            await asyncio.sleep(0.03)

    await asyncio.gather(*(worker() for _ in range(4)))
    return ok, failed


# -- --workers 2 ------------------------------------------------------------------------------------


def workers_benchmark(args: argparse.Namespace, work_dir: Path, pin: Pinning) -> tuple[list[Figure], int]:
    children: list[Child] = []
    errors = 0
    unpinned = Pinning([], [], "not pinned: two workers need both cores")
    with running(children):
        url = _start_redis(work_dir, children)
        fake_port = _start_fake(work_dir, unpinned, children)
        one_port, two_port = free_ports(2)
        one = _start_gateway(
            "workers-1",
            work_dir,
            gateway_config(one_port, fake_port, url, "w1"),
            [],
            ["--workers", "1"],
            children,
        )
        two = _start_gateway(
            "workers-2",
            work_dir,
            gateway_config(two_port, fake_port, url, "w2"),
            [],
            ["--workers", "2"],
            children,
        )
        _ready(one, one_port)
        _ready(two, two_port)
        time.sleep(1.0)  # both workers of the second up and sharing
        sides = {
            "1 worker": Target("1 worker", one_port, "bench", _auth(PLAIN_KEY)),
            "2 workers": Target("2 workers", two_port, "bench", _auth(PLAIN_KEY)),
        }
        for target in sides.values():
            _check(target)
        store = redis.Redis.from_url(url)
        rps: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
        cpu: dict[str, list[float]] = {"1 worker": [], "2 workers": []}
        shares: list[float] = []
        for n in range(args.rounds):
            order = list(sides) if n % 2 == 0 else list(reversed(sides))
            for name in order:
                child = one if name == "1 worker" else two
                pids = process_tree(child.proc.pid)
                counts_before = _worker_requests(store, "w2", two.proc.pid) if name == "2 workers" else None
                cpu_before = cpu_seconds(pids)
                say(f"throughput c={THROUGHPUT_CONNECTIONS}, {name} (round {n + 1}/{args.rounds}) ...")
                result = measure_wrk(
                    unpinned,
                    sides[name],
                    THROUGHPUT_CONNECTIONS,
                    args.duration,
                    args.warmup,
                    work_dir,
                    f"thr-{name.replace(' ', '')}-{n}",
                )
                used = cpu_seconds(pids) - cpu_before
                errors += result.error_count
                rps[name].append(result.rps)
                # CPU over warm-up and run; requests: the measured run's plus the warm-up's estimate.
                total = (
                    result.requests * (1 + args.warmup / args.duration) if args.duration else result.requests
                )
                cpu[name].append(used / max(1.0, total) * 1e6)
                if counts_before is not None:
                    time.sleep(1.2)  # the workers share their counts every second
                    after = _worker_requests(store, "w2", two.proc.pid)
                    served = [after[i] - counts_before[i] for i in range(2)]
                    if sum(served) > 0:
                        shares.append(min(served) / sum(served))
        store.close()
    ratio = [b / a for a, b in zip(cpu["1 worker"], cpu["2 workers"], strict=True)]
    figures = [
        Figure("requests/s c=64, 1 worker", "rps", "-", rps["1 worker"], None),
        Figure("requests/s c=64, 2 workers", "rps", "report", rps["2 workers"], None),
        Figure("gateway CPU per request, 1 worker", "us", "-", cpu["1 worker"], None),
        Figure("gateway CPU per request, 2 workers", "us", "-", cpu["2 workers"], None),
        Figure(
            "CPU per request, 2 workers / 1 worker",
            "x",
            "<= 1.10",
            ratio,
            statistics.median(ratio) <= CPU_RATIO_TARGET,
        ),
        Figure(
            "smaller worker's share of the requests",
            "",
            ">= 0.30",
            shares or [0.0],
            bool(shares) and min(shares) >= SHARE_TARGET,
        ),
    ]
    return figures, errors


def _worker_requests(store: redis.Redis, namespace: str, supervisor: int) -> list[float]:
    group = f"{socket.gethostname()}:{supervisor}"
    values = store.mget([f"{namespace}:metrics:{{{group}}}:{i}" for i in range(2)])
    out = []
    for value in values:
        total = 0.0
        if value is not None:
            metrics = orjson.loads(value).get("metrics", {})
            for _labels, count in metrics.get("spillgate_requests_total", []):
                total += float(count)
        out.append(total)
    return out


# -- entry ------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, work_dir: Path, pin: Pinning, facts: dict[str, Any]) -> int:
    if args.workers > 1:
        figures, errors = workers_benchmark(args, work_dir, pin)
        title = f"--workers {args.workers} against --workers 1, both on state: redis"
    else:
        figures, errors = state_benchmark(args, work_dir, pin)
        title = "state: redis against state: memory"
    print()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "python_executable"))
    print(f"{title}; {args.rounds} round(s) of {args.duration:g} s after {args.warmup:g} s warm-up")
    print(f"  {'figure':<52} {'median':>9} {'unit':<5} {'spread':<18} {'target':<12} {'':<5} per round")
    for figure in figures:
        print(figure.row())
    if errors:
        print(f"\nFLAGGED - {errors} request errors (figures above are not trustworthy)")
    targets = [f for f in figures if f.passed is not None]
    print(f"\nTargets met: {sum(bool(f.passed) for f in targets)}/{len(targets)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": facts,
                    "figures": [
                        {
                            "name": f.name,
                            "unit": f.unit,
                            "median": f.median,
                            "values": f.values,
                            "target": f.target,
                            "pass": f.passed,
                        }
                        for f in figures
                    ],
                    "request_errors": errors,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if errors else 0
