"""The benchmarks' report and their shared ``main``.

``build_rows`` / ``render_table``: bench/overhead's table, each figure through the gateway against
the same figure measured directly (the baseline of the same run), with its target;
``noise_warnings``: signs that something else used the cores; ``observability_cost`` /
``render_comparison``: the bare gateway's added latency against the observed one's, the median
over rounds. ``run_benchmark`` runs a benchmark in a fresh temp dir with the exit statuses all
of them share.
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import signal
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import GATEWAY_CORE, LoadResult, Pinning, SetupError, say

# Targets (see bench/README.md).
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_GATEWAY_RPS = 2500.0
TARGET_STREAM_ADDED_P99_MS = 3.0


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
