"""What one hop through the gateway costs, measured against the fake upstream in the same run.

Starts ``spillgate fake-upstream`` and ``spillgate serve`` on free loopback ports (the gateway
pinned to core 0; the fake upstream and every load generator pinned to core 1), then measures,
directly against the fake and through the gateway:

* non-streaming chat completion latency p50 / p99 at concurrency 1 (wrk);
* non-streaming requests/s at concurrency 64 (wrk);
* streaming time to first content token p50 / p99 at concurrency 32 (bench/sse.py);
* the gateway's peak RSS.

With ``--observability`` it adds a bare gateway (metrics off, no usage store) and compares it with
the observed one (metrics, SQLite usage recording), and the observed one with pricing on against
the same with ``pricing: off`` (bench/pricing.py).

With ``--translation`` it measures instead what translation costs: a Responses and a Messages
client served by a chat-only upstream against the native route of the same client API, through
the same gateway, in alternating rounds (bench/translation.py).

Prints a table with the targets and writes the figures as JSON with ``--json PATH``.
Exit status: 0 when the measurement ran cleanly (whether or not targets were met), 1 when a
measurement had request errors, 2 when a process failed to start or answered wrongly, 130 on
Ctrl-C. Run as ``python -m bench.overhead`` from the repository root, or ``bench/overhead``.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.harness import (
    CHAT_PATH,
    HAVE_UVLOOP,
    HOST,
    LOAD_CORE,
    Child,
    LoadResult,
    Pinning,
    SetupError,
    Target,
    cpu_seconds,
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
from bench.interleave import plain_turns, stream_turns
from bench.pricing import (
    PRICED,
    PRICED_UPSTREAM_MODEL,
    PRICING_TOLERANCE,
    UNPRICED,
    PricingCost,
    PricingRound,
    costed_problems,
    costed_requests,
    pricing_cost,
    pricing_sides,
    render_pricing,
)
from bench.report import (
    OBSERVABILITY_TOLERANCE,
    Cost,
    Row,
    build_rows,
    cpu_model,
    noise_warnings,
    observability_cost,
    render_comparison,
    render_table,
    rounded,
    run_benchmark,
)
from bench.sse import measure_stream
from bench.state import benchmark as state_benchmark
from bench.translation import MEASUREMENTS_PER_ROUND
from bench.translation import TARGET_CPU_PER_EVENT_US as TRANSLATION_CPU_TARGET_US
from bench.translation import benchmark as translation_benchmark
from bench.wrk import measure_wrk, wrk_seconds, wrk_version

CLIENT_KEY = "sk-sg-bench-overhead-0123456789"
UPSTREAM_MODEL = "bench-upstream"
GATEWAY_MODEL = "bench"
STREAM_CONCURRENCY = 32
THROUGHPUT_CONCURRENCY = 64
MAX_ROUNDS = 50


def gateway_config(
    gateway_port: int,
    fake_port: int,
    usage_dsn: str | None = None,
    metrics: bool = True,
    upstream_model: str = UPSTREAM_MODEL,
    pricing: bool | None = None,
) -> str:
    """The gateway's config; ``pricing``: ``None`` leaves the section out (on, the default), ``True``
    writes ``pricing:`` with nothing (on: genai-prices), ``False`` ``pricing: off``."""
    key_hash = "sha256:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    usage = f"usage: {{dsn: '{usage_dsn}'}}\n" if usage_dsn else ""
    usage += "" if metrics else "metrics: off\n"
    usage += "" if pricing is None else ("pricing:\n" if pricing else "pricing: off\n")
    return (
        f"listen: {HOST}:{gateway_port}\n" + usage + f'client_keys: [{{name: bench, hash: "{key_hash}"}}]\n'
        "providers:\n"
        f'  fake: {{protocol: openai, base_url: "http://{HOST}:{fake_port}/v1"}}\n'
        f'  fake-anthropic: {{protocol: anthropic, base_url: "http://{HOST}:{fake_port}"}}\n'
        "models:\n"
        f"  {GATEWAY_MODEL}: {{routes: [{{provider: fake, model: {upstream_model}}}, "
        f"{{provider: fake-anthropic, model: {upstream_model}}}]}}\n"
    )


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


def benchmark(args: argparse.Namespace, work_dir: Path) -> int:
    pin = pinning()
    facts = machine_facts(pin)
    if args.translation:
        return translation_benchmark(args, work_dir, facts)
    if args.state == "redis" or args.workers > 1:
        return state_benchmark(args, work_dir, pin, facts)
    if pin.load:
        os.sched_setaffinity(0, {LOAD_CORE})  # this process runs the streaming client
    python = venv_python()
    fake_port, gateway_port, observed_port, unpriced_port = free_ports(4)
    config = work_dir / "gateway.yaml"
    # --observability: a model genai-prices knows, so the priced gateway costs every request.
    upstream = PRICED_UPSTREAM_MODEL if args.observability else UPSTREAM_MODEL
    if args.observability:
        # "gateway": metrics off, no usage store; "observed": metrics on, SQLite usage recording on,
        # pricing on; "unpriced": the same with pricing: off.
        config.write_text(gateway_config(gateway_port, fake_port, metrics=False, upstream_model=upstream))
        for name, port, priced in ((PRICED, observed_port, True), (UNPRICED, unpriced_port, False)):
            dsn = f"sqlite:{work_dir / f'{name}-usage.db'}"
            # --calibrate: both with pricing: off (an A/A run of the pricing comparison).
            text = gateway_config(
                port, fake_port, dsn, upstream_model=upstream, pricing=priced and not args.calibrate
            )
            (work_dir / f"{name}.yaml").write_text(text)
    else:
        usage_dsn = f"sqlite:{work_dir / 'usage.db'}" if args.usage else None
        config.write_text(gateway_config(gateway_port, fake_port, usage_dsn))
    auth = (("Authorization", f"Bearer {CLIENT_KEY}"),)
    direct = Target("direct", fake_port, upstream, ())
    gateway = Target("gateway", gateway_port, GATEWAY_MODEL, auth)
    observed = Target(PRICED, observed_port, GATEWAY_MODEL, auth)
    unpriced = Target(UNPRICED, unpriced_port, GATEWAY_MODEL, auth)
    sides = [direct, gateway, observed] if args.observability else [direct, gateway]
    gateways = [gateway, observed, unpriced] if args.observability else [gateway]

    children: list[Child] = []
    with running(children):
        fake_argv = [*pin.load, python, "-m", "spillgate", "fake-upstream", "--listen", f"{HOST}:{fake_port}"]
        children.append(start_child("fake upstream", fake_argv, work_dir / "fake-upstream.log"))
        gw_argv = [*pin.gateway, python, "-m", "spillgate", "serve", "--config", str(config)]
        children.append(start_child("gateway", gw_argv, work_dir / "gateway.log"))
        fake_child, gw_child = children
        if args.observability:
            for name in (PRICED, UNPRICED):
                obs_argv = [
                    *pin.gateway,
                    python,
                    "-m",
                    "spillgate",
                    "serve",
                    "--config",
                    str(work_dir / f"{name}.yaml"),
                ]
                children.append(start_child(f"{name} gateway", obs_argv, work_dir / f"{name}.log"))

        def fake_ready() -> bool:
            return http_call(fake_port, "POST", CHAT_PATH, direct.body(False))[0] == 200

        wait_ready(fake_child, fake_ready)
        for child, side in zip(children[1:], gateways, strict=True):
            wait_ready(
                child, functools.partial(lambda port: http_call(port, "GET", "/healthz")[0] == 200, side.port)
            )
        for side in [direct, *gateways]:
            check_answers(side)
        say(
            f"fake upstream pid {fake_child.proc.pid} on :{fake_port}; "
            + "; ".join(
                f"{s.name} pid {c.proc.pid} on :{s.port}" for c, s in zip(children[1:], gateways, strict=True)
            )
            + f"; {pin.note}"
        )
        # The pricing sides' CPU: each gateway's processes (its usage writer included).
        probes = {
            side.name: functools.partial(lambda pid: cpu_seconds(process_tree(pid)), child.proc.pid)
            for child, side in zip(children[1:], gateways, strict=True)
            if side.name in (PRICED, UNPRICED)
        }
        by_name = {t.name: t for t in [direct, *gateways]}

        rounds: list[dict[str, dict[str, LoadResult]]] = []
        pricing_rounds: list[PricingRound] = []
        orders: list[list[str]] = []
        for n in range(args.rounds):
            tag = f" (round {n + 1}/{args.rounds})" if args.rounds > 1 else ""
            round_sides = sides
            orders.append([t.name for t in round_sides])
            results: dict[str, dict[str, LoadResult]] = {
                "latency_c1": {},
                "throughput_c64": {},
                "stream_ttft_c32": {},
            }
            for t in round_sides:
                say(f"latency, concurrency 1, {t.name}{tag} ...")
                results["latency_c1"][t.name] = measure_wrk(
                    pin, t, 1, args.duration, args.warmup, work_dir, f"latency-{t.name}"
                )
            for t in round_sides:
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
            for t in round_sides:
                say(f"streaming first token, concurrency {STREAM_CONCURRENCY}, {t.name}{tag} ...")
                results["stream_ttft_c32"][t.name] = measure_stream(
                    t, STREAM_CONCURRENCY, args.duration, args.warmup
                )
            rounds.append(results)
            if args.observability:  # direct, pricing off and on taking turns in one window
                turn_sides = [by_name[name] for name in pricing_sides(n)]
                names = ", ".join(t.name for t in turn_sides)
                say(f"pricing: latency, concurrency 1, {names} taking turns{tag} ...")
                latency = plain_turns(turn_sides, 3 * args.duration, args.warmup, probes)
                say(
                    f"pricing: streaming first token, concurrency {STREAM_CONCURRENCY}, {names} "
                    f"taking turns{tag} ..."
                )
                stream = stream_turns(turn_sides, STREAM_CONCURRENCY, 3 * args.duration, args.warmup, probes)
                pricing_rounds.append({"latency_c1": latency, "stream_ttft_c32": stream})
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
    failures += [
        f"pricing {kind}: {turns.error_count} request errors ({'; '.join(turns.error_examples)})"
        for pricing_round in pricing_rounds
        for kind, turns in pricing_round.items()
        if turns.error_count
    ]
    comparison = observability_cost(rounds) if args.observability else []
    priced_cost = pricing_cost(pricing_rounds) if args.observability else []
    costed = {
        name: costed_requests(work_dir / f"{name}-usage.db")
        for name in ((PRICED, UNPRICED) if args.observability else ())
    }
    if args.observability and not args.calibrate:
        failures += [f"pricing: {p}" for p in costed_problems(costed[PRICED], costed[UNPRICED])]
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
    if priced_cost:
        print()
        if args.calibrate:
            print(
                f"CALIBRATION (A/A): '{PRICED}' runs pricing: off too, so 'pricing on' below is a second "
                f"'{UNPRICED}': its ratios show the comparison's noise on this machine."
            )
        else:
            print(
                f"Pricing on ('{PRICED}': pricing: with nothing, genai-prices; upstream model {upstream}) "
                f"against '{UNPRICED}' (pricing: off), both with metrics and usage recording:"
            )
        print(render_pricing(priced_cost, args.rounds))
        for name, c in costed.items():
            print(f"  {name}: {'no usage store (or no cost column)' if c is None else c.text()}")
    print()
    for metric, by_side in results.items():
        for name, r in by_side.items():
            cpu = ", ".join(
                f"{k.removesuffix('_pct').replace('_', ' ')} {v:g}%"
                for k, v in r.details.get("cpu", {}).items()
                if "steal" not in k or v
            )
            print(f"  {metric} {name}: {r.requests:,} requests, {r.error_count} errors; {cpu}")
    sources = {r.details.get("latency_source") for r in results["latency_c1"].values()}
    print("  c=1 latency source: " + "; ".join(sorted(str(s) for s in sources)))
    for warning in warnings:
        print(f"  NOISE: {warning}")
    if failures:
        print("\nFLAGGED - measurements with request errors (figures above are not trustworthy):")
        for failure in failures:
            print(f"  {failure}")
    targets: list[Row | Cost | PricingCost] = [r for r in rows if r.passed is not None]
    targets += [c for c in comparison if c.passed is not None]
    targets += [c for c in priced_cost if c.passed is not None]
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
            "pricing_cost": [c.as_json() for c in priced_cost],
            "pricing_costed": {name: None if c is None else c.as_json() for name, c in costed.items()},
            "pricing_calibration": args.calibrate,
            "upstream_model": upstream,
            "order": orders,
            "pricing_turns": [
                {
                    kind: {
                        "sides": turns.sides,
                        "seconds": round(turns.seconds, 3),
                        "turns": turns.turns,
                        "answered": turns.answered,
                        "samples": {side: len(v) for side, v in turns.samples.items()},
                        "cpu_s": {side: round(v, 4) for side, v in turns.cpu_s.items()},
                        "errors": turns.errors,
                    }
                    for kind, turns in pricing_round.items()
                }
                for pricing_round in pricing_rounds
            ],
            "gateway_pids": gw_pids,
            "fake_upstream_peak_rss_mib": round(fake_hwm, 1),
            "warnings": warnings,
            "request_errors": sum(
                r.error_count
                for results_n in rounds
                for by_side in results_n.values()
                for r in by_side.values()
            )
            + sum(t.error_count for pricing_round in pricing_rounds for t in pricing_round.values()),
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
        f"{OBSERVABILITY_TOLERANCE * 100:.0f}%% of the bare gateway's. And that gateway with pricing on "
        "against pricing: off, taking turns in one window; target: added latency within "
        f"{PRICING_TOLERANCE * 100:.0f}%%",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="with --observability: both sides of the pricing comparison run pricing: off (an A/A run: how "
        "far apart two identical gateways measure on this machine; the ratios should be near 1.00)",
    )
    parser.add_argument(
        "--translation",
        action="store_true",
        help="measure what translation costs instead: Responses and Messages clients served by a "
        "chat-only upstream against the native route of the same client API, same gateway, "
        f"alternating rounds ({MEASUREMENTS_PER_ROUND} runs per round; no wrk needed); targets: added "
        "stream first token p50 <= 0.5 ms and p99 <= 3 ms at c=32, added non-streaming p50 <= 0.5 ms "
        f"at c=1, added gateway CPU per streamed event <= {TRANSLATION_CPU_TARGET_US:g} us",
    )
    parser.add_argument(
        "--state",
        choices=["memory", "redis"],
        default="memory",
        help="redis: measure a gateway on state: redis against one on memory in the same run (c=1 latency "
        "with and without a key limit; upstream attempts per request with a failing primary across two "
        "instances); target: added p50 <= 0.1 ms, attempts <= 1.1",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="2: measure spillgate serve --workers 2 against --workers 1 (both on redis) at c=64; targets: "
        "CPU per request within 10%%, each worker >= 30%% of the requests",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="measure every side this many times, alternating; the comparisons use the median (the "
        "pricing comparison pools the rounds' samples) "
        f"(default 1; 3 with --translation; at most {MAX_ROUNDS})",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.translation else 1
    if not (args.duration > 0 and args.warmup >= 0 and 1 <= args.rounds <= MAX_ROUNDS):
        parser.error(f"--duration must be > 0, --warmup >= 0 and --rounds between 1 and {MAX_ROUNDS}")
    if args.usage and args.observability:
        parser.error("--observability already measures a gateway with usage recording; drop --usage")
    if (args.state == "redis" or args.workers > 1) and (args.translation or args.observability):
        parser.error("--state / --workers runs are separate from --translation and --observability")
    if args.workers not in (1, 2):
        parser.error("--workers: 1 or 2 (this benchmark compares 2 workers with 1)")
    if args.calibrate and not args.observability:
        parser.error("--calibrate calibrates the pricing comparison of --observability; add --observability")
    if args.translation and args.observability:
        parser.error("--translation and --observability are separate runs; choose one")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.translation and shutil.which("wrk") is None:
        say("bench/overhead: wrk is not installed (apt-get install wrk)")
        return 2
    return run_benchmark("bench/overhead", args, benchmark)


if __name__ == "__main__":
    sys.exit(main())
