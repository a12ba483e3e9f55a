#!/usr/bin/env python3
"""What abusive clients cost the gateway: idle keep-alives, slowloris and slow readers at once.

Starts ``spillgate fake-upstream`` (core 1, with this process) and ``spillgate serve`` (core 0)
on its default limits (``limits.*``), then:

1. **baseline** -- a probe process sends normal non-streaming chat completions one after
   another on a keep-alive connection for ``--baseline`` seconds and records their latency
   (again after the soak: both runs together are the baseline);
2. **soak** -- this process holds ``--idle`` idle keep-alive connections (one ``GET /healthz``,
   then silence), ``--slowloris`` sockets sending a request's headers at one byte a second and
   ``--slow-readers`` streaming requests whose client reads 64 bytes a second from an 8 KiB
   receive buffer, all at once, for ``--duration`` seconds; a connection the gateway closes is
   counted and opened again (within a second), so the abuse stays at full strength. The probe
   runs again meanwhile.

It prints the gateway's peak RSS (``VmHWM``) and its RSS over time, the probe's p50 / p99 in
both phases and their ratio, and for each kind of abuse how many connections the gateway closed,
how long they lived and what they were answered, beside the gateway's own refusal counters
(``spillgate_http_refusals_total``). Targets (issue 10): peak RSS <= 300 MB and soak p99 <= 2x
the baseline p99. Exit status: 0 when it ran (targets met or not), 2 when a process failed to
start or died, 130 on Ctrl-C / SIGTERM. Run as ``python -m bench.soak`` from the repository root, or
``bench/soak``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.abusers import SLOW_READER_RCVBUF, Kind, abuser, idle_keepalive, slow_reader, slowloris
from bench.harness import (
    CHAT_PATH,
    HAVE_UVLOOP,
    HOST,
    LOAD_CORE,
    REPO,
    Child,
    SetupError,
    free_ports,
    http_call,
    percentile,
    pinning,
    running,
    say,
    start_child,
    status_field_kib,
    venv_python,
    wait_ready,
)
from bench.report import cpu_model, run_benchmark

if HAVE_UVLOOP:
    import uvloop

CLIENT_KEY = "sk-sg-bench-soak-0123456789abcdef"
NORMAL_MODEL = "bench"
LONG_MODEL = "long"
TARGET_RSS_MB = 300.0
TARGET_P99_RATIO = 2.0
RAMP_BATCH = 100
"""Connections opened at a time while ramping up (the listen backlog is 1,024)."""
CLOSE_WAIT_S = 5.0
"""After the soak: how long the abusers still watch for the gateway closing their sockets."""

# The long stream a slow reader asks for: five ~2.4 KB deltas a second (~13 KB/s of SSE) for
# 90 s, longer than the default soak: only the gateway's limits can end it early. (The fake
# builds a stream's events up front: ~1 MB per stream.)
LONG_TEXT_WORDS = 216_000
LONG_CHUNKS = 450
LONG_EVENT_DELAY_S = 0.2


def gateway_config(gateway_port: int, fake_port: int) -> str:
    key_hash = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return (
        f"listen: {HOST}:{gateway_port}\n"
        f'client_keys: [{{name: soak, hash: "{key_hash}"}}]\n'
        "providers:\n"
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1", max_connections: 1024}}\n'
        "models:\n"
        f"  {NORMAL_MODEL}: {{routes: [{{provider: fake, model: bench-upstream}}]}}\n"
        f"  {LONG_MODEL}: {{routes: [{{provider: fake, model: soak-long}}]}}\n"
        "resilience: {deadline: 10m}\n"
    )


def fake_behaviors() -> str:
    text = " ".join(f"w{i % 1000}" for i in range(LONG_TEXT_WORDS))
    behavior = {"text": text, "chunks": LONG_CHUNKS, "event_delay": LONG_EVENT_DELAY_S}
    return json.dumps({"models": {"soak-long": behavior}})


def chat_request(model: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": "soak"}]}
    ).encode()
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------------------------
# The probe: normal requests, in a process of its own so that the abusers' event loop does not
# add to the latency it measures.
# --------------------------------------------------------------------------------------------
def probe(port: int, seconds: float, out: Path) -> int:
    body = json.dumps(
        {"model": NORMAL_MODEL, "messages": [{"role": "user", "content": "probe"}], "max_tokens": 8}
    ).encode()
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    sent_at: list[float] = []
    errors: Counter[str] = Counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:  # the connection is opened (and the path warmed) before the clock starts
        conn.request("POST", CHAT_PATH, body=body, headers=headers)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        conn.close()
    began = time.monotonic()
    end = began + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            conn.request("POST", CHAT_PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            time.sleep(0.01)
            continue
        elapsed = time.perf_counter() - start
        if response.status == 200 and b'"content"' in data:
            latencies.append(elapsed)
            sent_at.append(time.monotonic() - began - elapsed)
        else:
            errors[f"http {response.status}"] += 1
    conn.close()
    out.write_text(json.dumps({"latencies": latencies, "errors": dict(errors), "sent_at": sent_at}))
    return 0


@dataclass
class ProbeResult:
    latencies: list[float]
    errors: dict[str, int]
    sent_at: list[float]
    """When each request was sent, in seconds from the start of its phase."""

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "errors": self.errors,
            "p50_ms": round(percentile(ordered, 50) * 1000, 3) if ordered else None,
            "p99_ms": round(percentile(ordered, 99) * 1000, 3) if ordered else None,
            "max_ms": round(ordered[-1] * 1000, 3) if ordered else None,
            "p99_ms_by_10s": self.windows(10.0),
        }

    def windows(self, width: float) -> list[float | None]:
        """p99 (ms) of the requests sent in each ``width``-second window of the phase."""
        buckets: dict[int, list[float]] = {}
        for at, latency in zip(self.sent_at, self.latencies, strict=True):
            buckets.setdefault(int(at // width), []).append(latency)
        last = max(buckets, default=-1)
        return [
            round(percentile(sorted(buckets[i]), 99) * 1000, 2) if i in buckets else None
            for i in range(last + 1)
        ]


def start_probe(python: str, pin: list[str], port: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    argv = [*pin, python, "-m", "bench.soak", "--probe", str(port), str(seconds), str(out)]
    return subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)


def finish_probe(proc: subprocess.Popen[bytes], out: Path, seconds: float) -> ProbeResult:
    try:
        code = proc.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        raise SetupError("the probe did not finish") from None
    if code != 0 or not out.exists():
        raise SetupError(f"the probe exited with status {code}")
    data = json.loads(out.read_text())
    return ProbeResult(data["latencies"], data["errors"], data["sent_at"])


@dataclass
class Soak:
    kinds: dict[str, Kind]
    rss_timeline: list[tuple[float, float]]


async def soak(port: int, gateway_pid: int, args: argparse.Namespace, probe_start: asyncio.Event) -> Soak:
    kinds = {name: Kind(name) for name in ("idle_keepalive", "slowloris", "slow_reader")}
    slow_request = functools.partial(slow_reader, chat_request(LONG_MODEL, stream=True))
    plan = [
        (kinds["idle_keepalive"], idle_keepalive, None, args.idle),
        (kinds["slowloris"], slowloris, None, args.slowloris),
        (kinds["slow_reader"], slow_request, SLOW_READER_RCVBUF, args.slow_readers),
    ]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    timeline: list[tuple[float, float]] = []
    started = time.monotonic()

    async def sample_rss() -> None:
        while True:
            rss = status_field_kib(gateway_pid, "VmRSS")
            if rss is not None:
                timeline.append((round(time.monotonic() - started, 1), round(rss / 1024, 1)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_rss())
    for kind, run, rcvbuf, count in plan:
        for i in range(count):
            tasks.append(asyncio.create_task(abuser(port, kind, run, stop, rcvbuf)))
            if i % RAMP_BATCH == RAMP_BATCH - 1:
                await asyncio.sleep(0.05)
    say(f"soak: {len(tasks)} abusive connections opening; probing for {args.duration:g} s")
    probe_start.set()
    await asyncio.sleep(args.duration)
    # The abusers stop reopening; those still open are left a moment for the gateway to close them.
    stop_at = time.monotonic() + CLOSE_WAIT_S
    while time.monotonic() < stop_at:
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    sampler.cancel()
    return Soak(kinds, timeline)


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------
def refusal_counters(port: int) -> dict[str, float]:
    status, data = http_call(port, "GET", "/metrics")
    if status != 200:
        return {}
    found: dict[str, float] = {}
    for line in data.decode().splitlines():
        match = re.match(r'spillgate_http_refusals_total\{reason="([a-z_]+)"\} ([0-9.e+]+)', line)
        if match and float(match.group(2)):
            found[match.group(1)] = float(match.group(2))
    return found


def benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    pin = pinning()
    if pin.load:
        os.sched_setaffinity(0, {LOAD_CORE})
    python = venv_python()
    fake_port, gateway_port = free_ports(2)
    behaviors = work_dir / "behaviors.json"
    behaviors.write_text(fake_behaviors())
    config = work_dir / "gateway.yaml"
    config.write_text(gateway_config(gateway_port, fake_port))
    children: list[Child] = []
    with running(children):
        fake_argv = [*pin.load, python, "-m", "spillgate", "fake-upstream", "--listen", f"{HOST}:{fake_port}"]
        fake_argv += ["--behaviors", str(behaviors), "--max-attempts", "1000"]
        children.append(start_child("fake upstream", fake_argv, work_dir / "fake-upstream.log"))
        wait_ready(children[0], lambda: http_call(fake_port, "GET", "/_fake/health")[0] == 200)
        gw_argv = [*pin.gateway, python, "-m", "spillgate", "serve", "--config", str(config)]
        gw_argv += ["--log-level", "WARNING"]
        gateway = start_child("gateway", gw_argv, work_dir / "gateway.log")
        children.append(gateway)
        wait_ready(gateway, lambda: http_call(gateway_port, "GET", "/healthz")[0] == 200)
        gw_pid = gateway.proc.pid
        start_rss = (status_field_kib(gw_pid, "VmRSS") or 0) / 1024
        say(f"gateway pid {gw_pid} on :{gateway_port} ({start_rss:.0f} MiB); {pin.note}")

        def baseline(name: str) -> ProbeResult:
            say(f"{name}: normal requests alone for {args.baseline:g} s")
            out = work_dir / f"probe-{name}.json"
            proc = start_probe(python, pin.load, gateway_port, args.baseline, out)
            return finish_probe(proc, out, args.baseline)

        before = baseline("baseline before")

        async def main() -> tuple[Soak, ProbeResult]:
            probe_start = asyncio.Event()
            soak_task = asyncio.create_task(soak(gateway_port, gw_pid, args, probe_start))
            await probe_start.wait()
            await asyncio.sleep(args.ramp)
            out = work_dir / "probe-soak.json"
            loop = asyncio.get_running_loop()
            proc = start_probe(python, pin.load, gateway_port, args.duration - args.ramp, out)
            result = await loop.run_in_executor(None, finish_probe, proc, out, args.duration)
            return await soak_task, result

        runner = uvloop.run if HAVE_UVLOOP else asyncio.run
        soaked, during = runner(main())
        if gateway.proc.poll() is not None:
            raise SetupError(f"the gateway exited during the soak:\n{gateway.log_tail()}")
        after = baseline("baseline after")
        peak_rss = (status_field_kib(gw_pid, "VmHWM") or 0) / 1024
        end_rss = (status_field_kib(gw_pid, "VmRSS") or 0) / 1024
        refusals = refusal_counters(gateway_port)
    rss = (start_rss, peak_rss, end_rss)
    report = build_report(args, pin.note, rss, (before, after), during, soaked, refusals)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def build_report(
    args: argparse.Namespace,
    note: str,
    rss: tuple[float, float, float],
    baselines: tuple[ProbeResult, ProbeResult],
    during: ProbeResult,
    soaked: Soak,
    refusals: dict[str, float],
) -> dict[str, Any]:
    start_rss, peak_rss, end_rss = rss
    before, after = baselines
    # The baseline is both runs without abuse (before and after it) taken together: one p99 of a
    # short run on a shared machine is a sample, not a figure.
    pooled = ProbeResult(
        before.latencies + after.latencies,
        dict(Counter(before.errors) + Counter(after.errors)),
        before.sent_at + [at + args.baseline for at in after.sent_at],
    )
    base, soak_fig = pooled.figures(), during.figures()
    ratio = (
        round(soak_fig["p99_ms"] / base["p99_ms"], 2)
        if base["p99_ms"] and soak_fig["p99_ms"] is not None
        else None
    )
    peak_mb = peak_rss * 1024 * 1024 / 1e6
    return {
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "pinning": note, "uvloop": HAVE_UVLOOP},
        "abuse": {
            "idle": args.idle,
            "slowloris": args.slowloris,
            "slow_readers": args.slow_readers,
            "duration_s": args.duration,
        },
        "gateway_rss_mib": {
            "start": round(start_rss, 1),
            "peak": round(peak_rss, 1),
            "end": round(end_rss, 1),
        },
        "rss_timeline_mib": soaked.rss_timeline,
        "normal_requests": {
            "baseline_before": before.figures(),
            "baseline_after": after.figures(),
            "baseline": base,
            "soak": soak_fig,
            "p99_ratio": ratio,
        },
        "abusers": {name: kind.figures() for name, kind in soaked.kinds.items()},
        "gateway_refusals": refusals,
        "targets": {
            "peak_rss_mb": {
                "value": round(peak_mb, 1),
                "target": TARGET_RSS_MB,
                "pass": peak_mb <= TARGET_RSS_MB,
            },
            "p99_ratio": {
                "value": ratio,
                "target": TARGET_P99_RATIO,
                "pass": ratio is not None and ratio <= TARGET_P99_RATIO,
            },
        },
    }


def print_report(report: dict[str, Any]) -> None:
    rss = report["gateway_rss_mib"]
    normal = report["normal_requests"]
    abuse = report["abuse"]
    print(
        f"\nbench/soak: {abuse['idle']} idle keep-alives + {abuse['slowloris']} slowloris + "
        f"{abuse['slow_readers']} slow readers for {abuse['duration_s']:g} s ({report['machine']['pinning']})"
    )
    print(f"gateway RSS MiB: start {rss['start']}, peak {rss['peak']}, end {rss['end']}")
    samples = report["rss_timeline_mib"]
    if samples:
        step = max(1, len(samples) // 12)
        print("  over time (s: MiB): " + ", ".join(f"{t:g}: {m:g}" for t, m in samples[::step]))
    print("\nnormal requests      requests  errors        p50 ms    p99 ms    max ms")
    for phase in ("baseline_before", "baseline_after", "baseline", "soak"):
        f = normal[phase]
        errors = sum(f["errors"].values())
        print(
            f"  {phase:<18} {f['requests']:>8}  {errors:>6}  "
            f"{f['p50_ms']!s:>12}  {f['p99_ms']!s:>8}  {f['max_ms']!s:>8}"
        )
    print(f"  soak p99 / baseline p99 (before and after pooled): {normal['p99_ratio']}")
    windows = ", ".join("-" if p is None else f"{p:g}" for p in normal["soak"]["p99_ms_by_10s"])
    print(f"  soak p99 ms per 10 s: {windows}")
    print("\nabusive connections  opened  closed by gateway  lifetime p50 s  max s  answered")
    for name, f in report["abusers"].items():
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(f["answers"].items())) or "-"
        print(
            f"  {name:<18} {f['opened']:>6}  {f['closed_by_gateway']:>17}  {f['lifetime_p50_s']!s:>14}  "
            f"{f['lifetime_max_s']!s:>5}  {answers}"
        )
    refusals = ", ".join(f"{k}: {v:g}" for k, v in sorted(report["gateway_refusals"].items())) or "none"
    print(f"\ngateway refusals (spillgate_http_refusals_total): {refusals}")
    for name, t in report["targets"].items():
        verdict = "PASS" if t["pass"] else "FAIL"
        print(f"target {name}: {t['value']} (<= {t['target']:g}) {verdict}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/soak",
        description="Abusive clients against the gateway's limits (bounded: it stops by itself).",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of abuse (default 60)")
    parser.add_argument(
        "--baseline", type=float, default=15.0, help="seconds of the baseline probe (default 15)"
    )
    parser.add_argument(
        "--ramp", type=float, default=5.0, help="seconds between opening the abusers and probing"
    )
    parser.add_argument("--idle", type=int, default=2000, help="idle keep-alive connections (default 2000)")
    parser.add_argument("--slowloris", type=int, default=500, help="slowloris sockets (default 500)")
    parser.add_argument("--slow-readers", type=int, default=500, help="slow-reading streams (default 500)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with config and logs")
    args = parser.parse_args(argv)
    if not (args.ramp < args.duration <= 600 and 0 < args.baseline <= 600):
        parser.error("--duration must be in (--ramp, 600] and --baseline in (0, 600]")
    if (
        min(args.idle, args.slowloris, args.slow_readers) < 0
        or args.idle + args.slowloris + args.slow_readers > 4000
    ):
        parser.error("abusive connections: each count >= 0, at most 4,000 in all")
    return args


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["--probe"]:
        return probe(int(raw[1]), float(raw[2]), Path(raw[3]))
    failures = (SetupError, OSError, http.client.HTTPException)
    return run_benchmark("bench/soak", parse_args(raw), benchmark, failures)


if __name__ == "__main__":
    sys.exit(main())
