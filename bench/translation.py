"""``bench/overhead --translation``: what serving a client API from an upstream of another API
costs, against the native route of the same client API through the same gateway, in the same run.

One fake upstream serves model ``bench-native`` on every API and ``bench-chat`` on Chat only
(``apis: [chat]``: a request on another API's path gets a 404, so a route that did not translate
fails its sanity check). One gateway has three models:

* ``native-responses``: provider ``fake`` (OpenAI, Chat and Responses) -> ``bench-native``;
* ``native-messages``: provider ``fake-anthropic`` (Anthropic Messages) -> ``bench-native``;
* ``translated``: provider ``fake-chat`` (OpenAI, ``apis: [chat]``) -> ``bench-chat``.

Per client API (``responses``, ``messages``) and kind (streaming at c=32, non-streaming at c=1)
the native and the translated model are measured one after the other, ``--rounds`` times, the
order flipping every round and between the two APIs (ABBA), so drift on a noisy machine falls on
both sides alike. A figure is the translated side's minus the native side's in the same round;
the table gives the median over rounds and the spread (min..max). The gateway's CPU time (its
threads' ``schedstat``: not charged for CPU steal) is read at the edges of every measured window
and divided by the SSE events its clients received in that window (streaming) or by the requests
answered (non-streaming).

Runs exactly ``rounds x 8`` measurements of ``warmup + duration`` seconds each (plus, per run, at
most the 10 s request timeout for the requests in flight at its end): bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import http.client
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.client import raw_request, read_response, run_async
from bench.harness import (
    HOST,
    LOAD_CORE,
    REQUEST_TIMEOUT_S,
    Child,
    LoadResult,
    SetupError,
    Target,
    cpu_seconds,
    cpu_snapshot,
    cpu_usage,
    free_ports,
    gateway_python_pids,
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
from bench.sse import GRAMMARS, measure_stream

CLIENT_KEY = "sk-sg-bench-translation-0123456789"
NATIVE_UPSTREAM = "bench-native"
CHAT_ONLY_UPSTREAM = "bench-chat"
TRANSLATED_MODEL = "translated"
STREAM_CONCURRENCY = 32
PLAIN_CONCURRENCY = 1
CLIENT_APIS = ("responses", "messages")
"""The client APIs measured, each served natively and translated from Chat."""
KINDS = ("stream", "plain")
SIDES = ("native", "translated")
MEASUREMENTS_PER_ROUND = len(CLIENT_APIS) * len(KINDS) * len(SIDES)

# Targets (see bench/README.md): translated minus native, through the same gateway.
TARGET_STREAM_P50_MS = 0.5
TARGET_STREAM_P99_MS = 3.0
TARGET_CPU_PER_EVENT_US = 15.0
TARGET_PLAIN_P50_MS = 0.5


def native_model(api: str) -> str:
    return f"native-{api}"


def gateway_config(gateway_port: int, fake_port: int, usage_dsn: str | None) -> str:
    key_hash = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    usage = f"usage: {{dsn: '{usage_dsn}'}}\n" if usage_dsn else ""
    return (
        f"listen: {HOST}:{gateway_port}\n" + usage + f'client_keys: [{{name: bench, hash: "{key_hash}"}}]\n'
        "providers:\n"
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1"}}\n'
        f'  fake-anthropic: {{protocol: anthropic, base_url: "http://{HOST}:{fake_port}"}}\n'
        f'  fake-chat: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1", apis: [chat]}}\n'
        "models:\n"
        + "".join(
            f"  {model}: {{routes: [{{provider: {provider}, model: {upstream}}}]}}\n"
            for model, provider, upstream in (
                (native_model("responses"), "fake", NATIVE_UPSTREAM),
                (native_model("messages"), "fake-anthropic", NATIVE_UPSTREAM),
                (TRANSLATED_MODEL, "fake-chat", CHAT_ONLY_UPSTREAM),
            )
        )
    )


FAKE_BEHAVIORS = f"models:\n  {CHAT_ONLY_UPSTREAM}: {{apis: [chat]}}\n"
"""The fake's default answer for both upstream models; the chat-only one 404s the other APIs."""


def client_headers(api: str) -> tuple[tuple[str, str], ...]:
    if api == "messages":
        return (("x-api-key", CLIENT_KEY), ("anthropic-version", "2023-06-01"))
    return (("Authorization", f"Bearer {CLIENT_KEY}"),)


def answer_text(api: str, data: bytes) -> str:
    """The answer's text of a non-streaming response of ``api``; '' when there is none."""
    try:
        body = orjson.loads(data)
        if api == "responses":
            return "".join(
                part.get("text", "")
                for item in body["output"]
                if item.get("type") == "message"
                for part in item["content"]
            )
        return "".join(block.get("text", "") for block in body["content"] if block.get("type") == "text")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return ""


def _call(target: Target, stream: bool) -> tuple[int, str | None, bytes]:
    """One request: (status, its ``x-spillgate-route``, body)."""
    conn = http.client.HTTPConnection(HOST, target.port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {**dict(target.headers), "Content-Type": "application/json"}
        conn.request("POST", target.path, body=target.body(stream), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-spillgate-route"), resp.read()
    finally:
        conn.close()


def check_answers(target: Target, route: str) -> None:
    """One non-streaming and one streaming request must succeed with text, answered by ``route``
    (the translated model's upstream 404s any API but Chat: only a translated request gets a 200)."""
    where = f"{target.name} {target.api}"
    for stream in (False, True):
        status, answered_by, data = _call(target, stream)
        if stream:
            ok = status == 200 and b"event: " + GRAMMARS[target.api].last_event in data
        else:
            ok = status == 200 and bool(answer_text(target.api, data))
        if not ok:
            what = "streaming sanity request" if stream else "sanity request"
            raise SetupError(f"{where}: {what} got HTTP {status}: {data[:500]!r}")
        if answered_by != route:
            raise SetupError(f"{where}: answered by route {answered_by!r}, not {route!r}")


# --------------------------------------------------------------------------------------------
# The non-streaming client (c=1 latency, any API, fractional durations)
# --------------------------------------------------------------------------------------------
@dataclass
class _PlainRun:
    measure_from: float
    measure_until: float
    samples: list[float] = field(default_factory=list)
    completed: int = 0
    gateway_cpu_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(f"{kind}: {detail}")


async def _plain_worker(target: Target, request: bytes, run: _PlainRun) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while time.perf_counter() < run.measure_until:
            if reader is None or writer is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, target.port)
                except OSError as exc:
                    run.error("connect", str(exc))
                    await asyncio.sleep(0.01)
                    continue
            started = time.perf_counter()
            keep_alive = False
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    writer.write(request)
                    response = await read_response(reader)
            except TimeoutError:
                run.error("timeout", f"no complete response in {REQUEST_TIMEOUT_S:g}s")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                run.error("read", f"{type(exc).__name__}: {exc}")
            else:
                finished = time.perf_counter()
                keep_alive = response.keep_alive
                if response.status != 200 or not response.body:
                    run.error("response", f"HTTP {response.status}: {response.body[:300]!r}")
                else:
                    run.completed += 1
                    if started >= run.measure_from and finished <= run.measure_until:
                        run.samples.append(finished - started)
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _plain_load(
    target: Target, concurrency: int, warmup: float, duration: float, cpu_probe: Callable[[], float]
) -> _PlainRun:
    now = time.perf_counter()
    run = _PlainRun(now + warmup, now + warmup + duration)
    request = raw_request(target.port, "POST", target.path, target.body(False), target.headers)

    async def watch() -> None:
        await asyncio.sleep(run.measure_from - time.perf_counter())
        before, cpu_before = cpu_snapshot(), cpu_probe()
        await asyncio.sleep(run.measure_until - time.perf_counter())
        run.gateway_cpu_s = cpu_probe() - cpu_before
        run.cpu = cpu_usage(before, cpu_snapshot())

    await asyncio.gather(watch(), *(_plain_worker(target, request, run) for _ in range(concurrency)))
    return run


def measure_plain(
    target: Target, concurrency: int, duration: float, warmup: float, cpu_probe: Callable[[], float]
) -> LoadResult:
    """Non-streaming requests back to back on ``concurrency`` keep-alive connections; latency from
    writing a request to the end of its response, for requests wholly inside the measured window."""
    run = run_async(_plain_load(target, concurrency, warmup, duration, cpu_probe))
    samples = sorted(run.samples)
    if not samples:
        run.error("no-samples", "no request completed in the measured window")
    return LoadResult(
        tool="asyncio-plain",
        connections=concurrency,
        duration_s=duration,
        requests=len(samples),
        p50_ms=percentile(samples, 50) * 1000,
        p99_ms=percentile(samples, 99) * 1000,
        mean_ms=(sum(samples) / len(samples) if samples else 0.0) * 1000,
        max_ms=(samples[-1] if samples else 0.0) * 1000,
        errors=run.errors,
        error_examples=run.examples,
        details={
            "cpu": run.cpu,
            "completed_incl_warmup": run.completed,
            "gateway_cpu_s": round(run.gateway_cpu_s, 6),
        },
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
Round = dict[str, dict[str, LoadResult]]
"""One round's runs: ``{"stream_responses": {"native": ..., "translated": ...}, ...}``."""


def cpu_per_event_us(r: LoadResult) -> float:
    events = r.details.get("events_in_window", 0)
    return 1e6 * r.details.get("gateway_cpu_s", 0.0) / events if events else 0.0


def cpu_per_request_us(r: LoadResult) -> float:
    """Gateway CPU in the measured window over the requests measured in it."""
    return 1e6 * r.details.get("gateway_cpu_s", 0.0) / r.requests if r.requests else 0.0


def events_per_request(r: LoadResult) -> float:
    return r.details.get("events_in_window", 0) / r.requests if r.requests else 0.0


@dataclass(frozen=True)
class Figure:
    """One figure of one client API: each side's value per round; "added" is translated - native."""

    key: str
    api: str
    label: str
    unit: str
    per_round: list[tuple[float, float]]
    target: float | None = None
    decimals: int = 3

    @property
    def native(self) -> float:
        return statistics.median(n for n, _ in self.per_round)

    @property
    def translated(self) -> float:
        return statistics.median(t for _, t in self.per_round)

    @property
    def added_per_round(self) -> list[float]:
        return [t - n for n, t in self.per_round]

    @property
    def added(self) -> float:
        return statistics.median(self.added_per_round)

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.added <= self.target

    def as_json(self) -> dict[str, Any]:
        added = self.added_per_round
        return {
            "api": self.api,
            "unit": self.unit,
            "native": round(self.native, 4),
            "translated": round(self.translated, 4),
            "added": round(self.added, 4),
            "added_min": round(min(added), 4),
            "added_max": round(max(added), 4),
            "added_per_round": [round(a, 4) for a in added],
            "target": self.target,
            "pass": self.passed,
        }


FIGURES: tuple[tuple[str, str, str, str, Callable[[LoadResult], float], float | None, int], ...] = (
    ("stream_ttft_c32_p50_ms", "stream", "stream first token p50, c=32", "ms",
     lambda r: r.p50_ms, TARGET_STREAM_P50_MS, 3),
    ("stream_ttft_c32_p99_ms", "stream", "stream first token p99, c=32", "ms",
     lambda r: r.p99_ms, TARGET_STREAM_P99_MS, 3),
    ("stream_gateway_cpu_us_per_event", "stream", "gateway CPU per streamed event", "us",
     cpu_per_event_us, TARGET_CPU_PER_EVENT_US, 2),
    ("stream_gateway_cpu_us_per_request", "stream", "gateway CPU per stream", "us",
     cpu_per_request_us, None, 1),
    ("stream_events_per_request", "stream", "events per stream (client side)", "events",
     events_per_request, None, 1),
    ("stream_c32_rps", "stream", "stream requests/s, c=32", "req/s", lambda r: r.rps, None, 0),
    ("latency_c1_p50_ms", "plain", "non-streaming latency p50, c=1", "ms",
     lambda r: r.p50_ms, TARGET_PLAIN_P50_MS, 3),
    ("latency_c1_p99_ms", "plain", "non-streaming latency p99, c=1", "ms", lambda r: r.p99_ms, None, 3),
    ("latency_c1_gateway_cpu_us_per_request", "plain", "gateway CPU per non-streaming request", "us",
     cpu_per_request_us, None, 1),
)  # fmt: skip
"""(key, kind, label, unit, value of one run, target for translated - native, decimals)."""


def build_figures(rounds: list[Round]) -> list[Figure]:
    figures = []
    for api in CLIENT_APIS:
        for key, kind, label, unit, value, target, decimals in FIGURES:
            runs = [r[f"{kind}_{api}"] for r in rounds]
            per_round = [(value(sides["native"]), value(sides["translated"])) for sides in runs]
            figures.append(Figure(key, api, label, unit, per_round, target, decimals))
    return figures


def render_figures(figures: list[Figure], rounds: int) -> str:
    header = ["client API", "figure", "unit", "native", "translated", "added", "spread", "target", "result"]
    body = []
    for f in figures:
        d = f.decimals
        added = f.added_per_round
        body.append(
            [
                f"{f.api} -> chat",
                f.label,
                f.unit,
                f"{f.native:,.{d}f}",
                f"{f.translated:,.{d}f}",
                f"{f.added:+,.{d}f}",
                f"{min(added):+,.{d}f}..{max(added):+,.{d}f}",
                "-" if f.target is None else f"added <= {f.target:g} {f.unit}",
                "-" if f.passed is None else ("PASS" if f.passed else "MISS"),
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    numeric = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    note = (
        f"  (native/translated/added: median of {rounds} round{'s' if rounds > 1 else ''}; spread: "
        "min..max of added over the rounds; added = translated - native in the same round; a target "
        "is judged on the median)"
    )
    return "\n".join([line(header), rule, *(line(cells) for cells in body), note])


def noise_warnings(rounds: list[Round]) -> list[str]:
    warnings = []
    for n, results in enumerate(rounds, 1):
        for metric, sides in results.items():
            for side, r in sides.items():
                cpu = r.details.get("cpu", {})
                steal = max((v for k, v in cpu.items() if k.endswith("_steal_pct")), default=0.0)
                if steal > 5:
                    warnings.append(
                        f"round {n} {metric} {side}: {steal:g}% CPU steal (the hypervisor took the core)"
                    )
    return warnings


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def benchmark(args: argparse.Namespace, work_dir: Path, facts: dict[str, Any]) -> int:
    pin = pinning()
    if pin.load:
        os.sched_setaffinity(0, {LOAD_CORE})  # this process runs the clients
    python = venv_python()
    fake_port, gateway_port = free_ports(2)
    config = work_dir / "gateway.yaml"
    usage_dsn = f"sqlite:{work_dir / 'usage.db'}" if args.usage else None
    config.write_text(gateway_config(gateway_port, fake_port, usage_dsn))
    behaviors = work_dir / "behaviors.yaml"
    behaviors.write_text(FAKE_BEHAVIORS)
    targets = {
        (api, side): Target(side, gateway_port, native_model(api) if side == "native" else TRANSLATED_MODEL,
                            client_headers(api), api)
        for api in CLIENT_APIS
        for side in SIDES
    }  # fmt: skip
    per_run = args.warmup + args.duration
    say(
        f"translation: {args.rounds} round(s) x {MEASUREMENTS_PER_ROUND} runs of {per_run:g} s "
        f"(~{args.rounds * MEASUREMENTS_PER_ROUND * per_run:.0f} s of load)"
    )

    children: list[Child] = []
    with running(children):
        fake_argv = [
            *pin.load, python, "-m", "spillgate", "fake-upstream",
            "--listen", f"{HOST}:{fake_port}", "--behaviors", str(behaviors),
        ]  # fmt: skip
        children.append(start_child("fake upstream", fake_argv, work_dir / "fake-upstream.log"))
        gw_argv = [*pin.gateway, python, "-m", "spillgate", "serve", "--config", str(config)]
        children.append(start_child("gateway", gw_argv, work_dir / "gateway.log"))
        fake_child, gw_child = children
        wait_ready(fake_child, lambda: http_call(fake_port, "GET", "/_fake/attempts")[0] == 200)
        wait_ready(gw_child, lambda: http_call(gateway_port, "GET", "/healthz")[0] == 200)
        for target in targets.values():
            check_answers(target, f"{target.model}[0]")
        gw_pids = gateway_python_pids(gw_child.proc.pid)
        probe = functools.partial(cpu_seconds, gw_pids)
        say(
            f"fake upstream pid {fake_child.proc.pid} on :{fake_port}; gateway pid(s) {gw_pids} "
            f"on :{gateway_port}; {pin.note}"
        )

        rounds: list[Round] = []
        for n in range(args.rounds):
            results: Round = {}
            step = 0
            for kind in KINDS:
                for api in CLIENT_APIS:
                    order = SIDES if (n + step) % 2 == 0 else SIDES[::-1]
                    step += 1
                    by_side: dict[str, LoadResult] = {}
                    for side in order:
                        target = targets[(api, side)]
                        tag = f"round {n + 1}/{args.rounds}"
                        if kind == "stream":
                            say(f"{tag}: {api} {side}, streaming first token, c={STREAM_CONCURRENCY} ...")
                            r = measure_stream(target, STREAM_CONCURRENCY, args.duration, args.warmup, probe)
                        else:
                            say(f"{tag}: {api} {side}, non-streaming latency, c={PLAIN_CONCURRENCY} ...")
                            r = measure_plain(target, PLAIN_CONCURRENCY, args.duration, args.warmup, probe)
                        r.details["order"] = list(order).index(side)
                        by_side[side] = r
                    results[f"{kind}_{api}"] = {side: by_side[side] for side in SIDES}
            rounds.append(results)

        rss_mib = sum(status_field_kib(pid, "VmHWM") or 0 for pid in gw_pids) / 1024
        for child in children:
            if child.proc.poll() is not None:
                raise SetupError(f"{child.name} exited during the run:\n{child.log_tail()}")

    figures = build_figures(rounds)
    warnings = noise_warnings(rounds)
    failures = [
        f"round {n} {metric} {side}: {r.error_count} request errors ({'; '.join(r.error_examples)})"
        for n, results in enumerate(rounds, 1)
        for metric, by_side in results.items()
        for side, r in by_side.items()
        if r.error_count
    ]
    print()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "python_executable"))
    print(
        f"Durations: {args.duration:g} s per measured run after {args.warmup:g} s of warm-up, "
        f"{args.rounds} round(s), native and translated alternating; gateway pid(s) {gw_pids}, "
        f"peak RSS {rss_mib:.1f} MiB"
    )
    print("Translation: a Responses / Messages client through the gateway, served by a chat-only upstream")
    print("(translated) against the native route of the same client API (native), same gateway, same run.")
    print()
    print(render_figures(figures, args.rounds))
    print(
        "  (at c=32 the gateway's core is saturated when cpu0 is ~100% busy below: first-token times\n"
        "  are then mostly queueing for it and grow with its CPU per stream; bench/cpu_per_request.py\n"
        "  --translation gives the steal-proof CPU per request and per event, without what a stream\n"
        "  costs once)"
    )
    print()
    for n, results in enumerate(rounds, 1):
        for metric, by_side in results.items():
            for side, r in by_side.items():
                cpu = ", ".join(
                    f"{k.removesuffix('_pct').replace('_', ' ')} {v:g}%"
                    for k, v in r.details.get("cpu", {}).items()
                    if "steal" not in k or v
                )
                print(
                    f"  round {n} {metric} {side}: {r.requests:,} requests, {r.error_count} errors, "
                    f"gateway CPU {r.details.get('gateway_cpu_s', 0.0):.3f} s; {cpu}"
                )
    for warning in warnings:
        print(f"  NOISE: {warning}")
    if failures:
        print("\nFLAGGED - measurements with request errors (figures above are not trustworthy):")
        for failure in failures:
            print(f"  {failure}")
    targeted = [f for f in figures if f.passed is not None]
    print(f"\nTargets met: {sum(bool(f.passed) for f in targeted)}/{len(targeted)}")

    if args.json:
        report = {
            "mode": "translation",
            "machine": facts,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "figures": {f"{f.api}_{f.key}": f.as_json() for f in figures},
            "runs": [
                {m: {side: r.as_json() for side, r in by_side.items()} for m, by_side in results.items()}
                for results in rounds
            ],
            "gateway_pids": gw_pids,
            "gateway_peak_rss_mib": round(rss_mib, 1),
            "warnings": warnings,
            "request_errors": sum(
                r.error_count for results in rounds for by_side in results.values() for r in by_side.values()
            ),
            "targets_met": all(bool(f.passed) for f in targeted),
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0
