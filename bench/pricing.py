"""``bench/overhead --observability``'s pricing comparison: the observed gateway (metrics, usage
recording) with pricing on against the same gateway with ``pricing: off``, in the same run.

The two differ by microseconds of CPU a request, and this machine's speed changes by far more
than that from one run to the next, so the two sides are not measured in runs of their own: in
every round, direct, pricing off and pricing on take short turns in one window
(:mod:`bench.interleave`), once for non-streaming latency at concurrency 1 and once for streaming
first-token time at concurrency 32, each side getting ``--duration`` seconds of turns in each.
Per figure, a side's added latency is its percentile minus direct's, over the samples of every
round pooled (what the target is judged on), and also per round (the spread, min..max); the
target: pricing on adds at most :data:`PRICING_TOLERANCE` to the added latency (``ratio <=
1.10``) for p50 and p99 at concurrency 1 and stream first-token p99 at concurrency 32. The
gateways' CPU per request (their processes' ``schedstat``, not charged for steal) is context.
``costed_requests`` reads each gateway's SQLite usage store afterwards: the priced side must have
costed its requests, or the comparison measured nothing.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import percentile
from bench.interleave import Turns

PRICED = "observed"
"""The observed gateway, pricing on (``pricing:`` with nothing: genai-prices); the side the
observability comparison measures too."""
UNPRICED = "unpriced"
"""The observed gateway with ``pricing: off``."""
DIRECT = "direct"
PRICED_UPSTREAM_MODEL = "gpt-4o-mini"
"""The fake's model in ``--observability``: one genai-prices knows, so every request is costed."""
PRICING_TOLERANCE = 0.10
"""Pricing on may add at most this share to the observed gateway's added latency."""
KINDS = ("latency_c1", "stream_ttft_c32")
"""The two windows of turns of a round: non-streaming at c=1, streaming at c=32."""

FIGURES: tuple[tuple[str, int, str, bool], ...] = (
    ("latency_c1", 50, "latency p50, c=1", True),
    ("latency_c1", 99, "latency p99, c=1", True),
    ("stream_ttft_c32", 50, "stream first token p50, c=32", False),
    ("stream_ttft_c32", 99, "stream first token p99, c=32", True),
)
"""(window, percentile, label, has a target): the latency figures compared."""

PricingRound = dict[str, Turns]
"""One round's windows of turns, by kind (:data:`KINDS`)."""


def pricing_sides(round_index: int) -> list[str]:
    """The sides of round ``round_index``'s turns: direct first (the reference), then the two
    pricing sides, which of them comes second flipped every round."""
    pair = [PRICED, UNPRICED] if round_index % 2 == 0 else [UNPRICED, PRICED]
    return [DIRECT, *pair]


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
    """One figure with pricing off and on: over every round's samples pooled, and per round."""

    key: str
    label: str
    unit: str
    off: float
    on: float
    per_round: list[tuple[float, float]]
    """(off, on) of every round."""
    checked: bool
    """Whether the figure has a target (added latency) or is context (CPU)."""
    samples: tuple[int, int] = (0, 0)
    """Samples (off, on) behind the pooled figures."""

    @property
    def off_spread(self) -> Spread:
        return Spread.of([off for off, _ in self.per_round])

    @property
    def on_spread(self) -> Spread:
        return Spread.of([on for _, on in self.per_round])

    @property
    def ratio(self) -> float:
        """on / off of the pooled figures."""
        if self.off > 0:
            return self.on / self.off
        return 1.0 if self.on <= 0 else math.inf

    @property
    def passed(self) -> bool | None:
        if not self.checked:
            return None
        return self.on <= max(self.off, 0.0) * (1 + PRICING_TOLERANCE)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.key,
            "unit": self.unit,
            "pricing_off": {"pooled": round(self.off, 4), **self.off_spread.as_json()},
            "pricing_on": {"pooled": round(self.on, 4), **self.on_spread.as_json()},
            "ratio": round(self.ratio, 3) if math.isfinite(self.ratio) else None,
            "per_round": [[round(off, 4), round(on, 4)] for off, on in self.per_round],
            "samples": {"pricing_off": self.samples[0], "pricing_on": self.samples[1]},
            "target": f"ratio <= {1 + PRICING_TOLERANCE:.2f}" if self.checked else None,
            "pass": self.passed,
        }


def added_ms(samples: dict[str, list[float]], side: str, pct: int) -> float:
    """``side``'s percentile minus direct's, in ms (samples in seconds, sorted)."""
    return 1000 * (percentile(samples[side], pct) - percentile(samples[DIRECT], pct))


def _sorted_samples(windows: list[Turns]) -> dict[str, list[float]]:
    pooled: dict[str, list[float]] = {}
    for turns in windows:
        for side, values in turns.samples.items():
            pooled.setdefault(side, []).extend(values)
    return {side: sorted(values) for side, values in pooled.items()}


def _cpu_us(windows: list[Turns], side: str) -> float:
    cpu = sum(t.cpu_s.get(side, 0.0) for t in windows)
    answered = sum(t.answered[side] for t in windows)
    return 1e6 * cpu / answered if answered else 0.0


def pricing_cost(rounds: list[PricingRound]) -> list[PricingCost]:
    """Every figure's added latency with pricing off and on, pooled over the rounds and per round,
    and the gateways' CPU per request."""
    costs = []
    pooled_of = {kind: _sorted_samples([r[kind] for r in rounds]) for kind in KINDS}
    each_of = {kind: [_sorted_samples([r[kind]]) for r in rounds] for kind in KINDS}
    for kind, pct, label, checked in FIGURES:
        pooled = pooled_of[kind]
        per_round = [(added_ms(each, UNPRICED, pct), added_ms(each, PRICED, pct)) for each in each_of[kind]]
        costs.append(
            PricingCost(
                f"{kind}_p{pct}_ms",
                label,
                "added ms",
                added_ms(pooled, UNPRICED, pct),
                added_ms(pooled, PRICED, pct),
                per_round,
                checked,
                (len(pooled[UNPRICED]), len(pooled[PRICED])),
            )
        )
    for kind, label in (
        ("latency_c1", "gateway CPU per request, c=1"),
        ("stream_ttft_c32", "gateway CPU per stream, c=32"),
    ):
        windows = [r[kind] for r in rounds]
        costs.append(
            PricingCost(
                f"{kind}_cpu_us",
                label,
                "us",
                _cpu_us(windows, UNPRICED),
                _cpu_us(windows, PRICED),
                [(_cpu_us([t], UNPRICED), _cpu_us([t], PRICED)) for t in windows],
                False,
                (sum(t.answered[UNPRICED] for t in windows), sum(t.answered[PRICED] for t in windows)),
            )
        )
    return costs


def _cell(value: float, spread: Spread, unit: str) -> str:
    if unit == "us":
        return f"{value:,.0f} ({spread.low:,.0f}..{spread.high:,.0f})"
    return f"{value:+.3f} ({spread.low:+.3f}..{spread.high:+.3f})"


def render_pricing(costs: list[PricingCost], rounds: int) -> str:
    """The table (each side pooled, with its per-round spread; the ratio; PASS/FAIL) and the verdict."""
    header = ["pricing cost", "unit", "pricing off", "pricing on", "on/off", "target", "result"]
    body = [
        [
            c.label,
            c.unit,
            _cell(c.off, c.off_spread, c.unit),
            _cell(c.on, c.on_spread, c.unit),
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
    rounds_text = f"{rounds} rounds" if rounds > 1 else "one round"
    checked = [c for c in costs if c.passed is not None]
    met = sum(bool(c.passed) for c in checked)
    verdict = "PASS" if met == len(checked) else "FAIL"
    return "\n".join(
        [
            *lines,
            f"  (the samples of {rounds_text} pooled, and (min..max) of the rounds; direct, pricing off and "
            "pricing on take turns in one window (bench/interleave.py); added = the side's percentile "
            "minus direct's; CPU: the gateway's processes, per request answered)",
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
