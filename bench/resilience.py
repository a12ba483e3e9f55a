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
start, answered wrongly or died, 130 on Ctrl-C or SIGTERM.
Run as ``python -m bench.resilience`` from the repository root, or ``bench/resilience``. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import harness
from bench.client import LoadRun, async_call, raw_request, run_async, worker
from bench.harness import (
    CHAT_PATH,
    GATEWAY_CORE,
    HOST,
    LOAD_CORE,
    REQUEST_TIMEOUT_S,
    Child,
    SetupError,
    cpu_snapshot,
    cpu_usage,
    free_ports,
    gateway_python_pids,
    http_call,
    pinning,
    process_tree,
    running,
    say,
    start_child,
    status_field_kib,
    venv_python,
    wait_ready,
)
from bench.report import run_benchmark
from bench.resilience_figures import (
    BREAKER_GRACE_S,
    GATEWAY_MODEL,
    PRIMARY,
    SECONDARY,
    UPSTREAMS,
    Scenario,
    Target,
    machine_facts,
    print_report,
    summarize,
)

CLIENT_KEY = "sk-sg-bench-resilience-0123456789"
FAKE_LOG_SIZE = 5_000_000
"""The fake keeps this many attempt records; a scenario must not fill it (checked)."""

CAPACITY: dict[str, Any] = {"preset": "capacity"}


class HarnessError(Exception):
    """The benchmark itself could not do what it set out to (a control call failed, ...)."""


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
    return harness.chat_body(GATEWAY_MODEL, stream=False)


AUTH = (("Authorization", f"Bearer {CLIENT_KEY}"),)


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
