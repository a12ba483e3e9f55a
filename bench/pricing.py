"""``bench/overhead --observability``'s pricing comparison: the observed gateway (metrics, usage
recording) with pricing on against the same gateway with ``pricing: off``, in the same run.

Both are measured in every round, one right after the other, their order flipped every round
(``side_order``), so drift on a noisy machine falls on both alike. Per figure: each side's added
latency (its figure minus direct's in the same round), the median over rounds and the spread
(min..max), and the ratio of the medians, on / off; the target: pricing on adds at most
:data:`PRICING_TOLERANCE` to the added latency (``ratio <= 1.10``) for p50 and p99 at
concurrency 1 and stream first-token p99 at concurrency 32. ``costed_requests`` reads each
gateway's SQLite usage store afterwards: the priced side must have costed its requests, or the
comparison measured nothing.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import LoadResult

PRICED = "observed"
"""The observed gateway, pricing on (``pricing:`` with nothing: genai-prices); the side the
observability comparison measures too."""
UNPRICED = "unpriced"
"""The observed gateway with ``pricing: off``."""
PRICED_UPSTREAM_MODEL = "gpt-4o-mini"
"""The fake's model in ``--observability``: one genai-prices knows, so every request is costed."""
PRICING_TOLERANCE = 0.10
"""Pricing on may add at most this share to the observed gateway's added latency."""

FIGURES: tuple[tuple[str, str, str, bool], ...] = (
    ("latency_c1", "p50_ms", "latency p50, c=1", True),
    ("latency_c1", "p99_ms", "latency p99, c=1", True),
    ("stream_ttft_c32", "p50_ms", "stream first token p50, c=32", False),
    ("stream_ttft_c32", "p99_ms", "stream first token p99, c=32", True),
)
"""(measurement, attribute, label, has a target): the figures compared."""


def side_order(round_index: int) -> tuple[str, str]:
    """The order the two pricing sides run in, in round ``round_index``: flipped every round."""
    return (PRICED, UNPRICED) if round_index % 2 == 0 else (UNPRICED, PRICED)


@dataclass(frozen=True)
class Spread:
    """A figure over the rounds: its median and its range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def as_json(self) -> dict[str, float]:
        return {"median": round(self.median, 4), "min": round(self.low, 4), "max": round(self.high, 4)}


@dataclass(frozen=True)
class PricingCost:
    """One figure with pricing off and on, over the rounds."""

    key: str
    label: str
    unit: str
    off: Spread
    on: Spread
    per_round: list[tuple[float, float]]
    """(off, on) of every round."""
    checked: bool
    """Whether the figure has a target (added latency) or is context (requests/s)."""

    @property
    def ratio(self) -> float:
        """on / off of the medians (for requests/s: how many the priced gateway served per unpriced one)."""
        if self.off.median > 0:
            return self.on.median / self.off.median
        return 1.0 if self.on.median <= 0 else math.inf

    @property
    def passed(self) -> bool | None:
        if not self.checked:
            return None
        return self.on.median <= max(self.off.median, 0.0) * (1 + PRICING_TOLERANCE)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.key,
            "unit": self.unit,
            "pricing_off": self.off.as_json(),
            "pricing_on": self.on.as_json(),
            "ratio": round(self.ratio, 3) if math.isfinite(self.ratio) else None,
            "per_round": [[round(off, 4), round(on, 4)] for off, on in self.per_round],
            "target": f"ratio <= {1 + PRICING_TOLERANCE:.2f}" if self.checked else None,
            "pass": self.passed,
        }


def pricing_cost(rounds: list[dict[str, dict[str, LoadResult]]]) -> list[PricingCost]:
    """Every figure's added latency with pricing off and on (each minus direct in the same round),
    and the throughput of both."""
    costs = []
    for metric, attr, label, checked in FIGURES:
        per_round = []
        for results in rounds:
            direct = getattr(results[metric]["direct"], attr)
            off = getattr(results[metric][UNPRICED], attr) - direct
            on = getattr(results[metric][PRICED], attr) - direct
            per_round.append((off, on))
        costs.append(
            PricingCost(
                f"{metric}_{attr}",
                label,
                "added ms",
                Spread.of([off for off, _ in per_round]),
                Spread.of([on for _, on in per_round]),
                per_round,
                checked,
            )
        )
    rps = [(r["throughput_c64"][UNPRICED].rps, r["throughput_c64"][PRICED].rps) for r in rounds]
    costs.append(
        PricingCost(
            "throughput_c64_rps",
            "throughput, c=64",
            "req/s",
            Spread.of([off for off, _ in rps]),
            Spread.of([on for _, on in rps]),
            rps,
            False,
        )
    )
    return costs


def _spread_text(s: Spread, unit: str) -> str:
    if unit == "req/s":
        return f"{s.median:,.0f} ({s.low:,.0f}..{s.high:,.0f})"
    return f"{s.median:+.3f} ({s.low:+.3f}..{s.high:+.3f})"


def render_pricing(costs: list[PricingCost], rounds: int) -> str:
    """The table (median and spread of each side, the ratio, PASS/FAIL) and the verdict line."""
    header = ["pricing cost", "unit", "pricing off", "pricing on", "on/off", "target", "result"]
    body = [
        [
            c.label,
            c.unit,
            _spread_text(c.off, c.unit),
            _spread_text(c.on, c.unit),
            f"{c.ratio:.2f}",
            f"<= {1 + PRICING_TOLERANCE:.2f}" if c.checked else "-",
            "-" if c.passed is None else ("PASS" if c.passed else "FAIL"),
        ]
        for c in costs
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *body]
    ]
    note = f"median (min..max) of {rounds} rounds" if rounds > 1 else "one round (use --rounds 5 for medians)"
    checked = [c for c in costs if c.passed is not None]
    met = sum(bool(c.passed) for c in checked)
    verdict = "PASS" if met == len(checked) else "FAIL"
    return "\n".join(
        [
            *lines,
            f"  ({note}; added = the side's figure minus direct's in the same round; the two sides "
            "alternate which runs first)",
            f"Pricing target (added latency with pricing on within {PRICING_TOLERANCE * 100:.0f}% of pricing "
            f"off): {verdict} ({met}/{len(checked)} figures)",
        ]
    )


@dataclass(frozen=True)
class Costed:
    """A gateway's usage store after the run: how many requests it recorded, and with a cost."""

    requests: int
    costed: int
    """Requests with a cost (``cost_usd`` not NULL)."""
    estimated: int
    """Of those, costed from estimated tokens (a stream without a usage report)."""
    usd: float

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "costed": self.costed,
            "estimated": self.estimated,
            "usd": round(self.usd, 6),
        }

    def text(self) -> str:
        return (
            f"{self.costed:,} of {self.requests:,} recorded requests costed ({self.estimated:,} from "
            f"estimated tokens), ${self.usd:.4f}"
        )


def costed_requests(db: Path) -> Costed | None:
    """Requests recorded in the SQLite usage store ``db`` and how many have a cost (``cost_usd``
    not NULL); ``None`` when the store is missing or has no cost column."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*), COUNT(cost_usd), "
                "COALESCE(SUM(CASE WHEN cost_usd IS NOT NULL AND cost_estimated THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(cost_usd), 0) FROM requests"
            ).fetchone()
    except sqlite3.Error:
        return None
    return Costed(int(row[0]), int(row[1]), int(row[2]), float(row[3]))


def costed_problems(priced: Costed | None, unpriced: Costed | None) -> list[str]:
    """What makes the comparison meaningless: the priced gateway costed nothing, or the unpriced one
    costed something."""
    problems = []
    if priced is None or priced.requests == 0:
        problems.append("the priced gateway's usage store recorded no requests (or has no cost_usd column)")
    elif priced.costed == 0:
        problems.append(f"pricing on, yet none of the {priced.requests:,} recorded requests has a cost")
    if unpriced is not None and unpriced.costed:
        problems.append(f"pricing off, yet {unpriced.costed:,} recorded requests have a cost")
    return problems
