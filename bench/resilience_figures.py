"""bench/resilience's figures: what a scenario's samples and the fake's attempt log add up to, and
the report.

The setup's names (the gateway model ``bench`` with the routes ``up-primary`` then
``up-secondary``), what a scenario is (``Scenario``, its ``Target``), ``summarize`` (one
scenario's figures: success rate, attempts per request, latency, shares, the recovery times and
a per-second timeline) and ``print_report`` (the table, one column per scenario, and the targets).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.client import LoadRun, Sample
from bench.harness import HAVE_UVLOOP, percentile
from bench.report import cpu_model

GATEWAY_MODEL = "bench"
PRIMARY = "up-primary"
SECONDARY = "up-secondary"
UPSTREAMS = (PRIMARY, SECONDARY)
PRIMARY_ROUTE = f"{GATEWAY_MODEL}[0]"
SECONDARY_ROUTE = f"{GATEWAY_MODEL}[1]"
BREAKER_GRACE_S = 2.0
"""The "after the breaker opened" figures leave out the first this many seconds of a scenario."""
RECOVERY_BUCKET_S = 0.1
RECOVERY_SHARE = 0.95


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
