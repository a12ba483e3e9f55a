"""Smoke test for ``bench/overhead --observability``'s pricing comparison: the observed gateway with
pricing on against ``pricing: off``, alternating, at a tiny size (~25 s: wrk runs whole seconds).

Targets are not asserted (a measurement on a shared machine, not a bug); the figures' shape is:
both sides in both rounds, the order flipped, each round's added figure that side's minus direct's,
medians, spreads and ratios consistent, and the priced gateway costing its requests while the
unpriced one costs none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_marks import needs_wrk

REPO = Path(__file__).resolve().parent.parent
PRICING_FIGURES = {
    "latency_c1_p50_ms": True,
    "latency_c1_p99_ms": True,
    "stream_ttft_c32_p50_ms": False,
    "stream_ttft_c32_p99_ms": True,
    "throughput_c64_rps": False,
}
"""Figure -> whether it has the 10 % target."""
SIDES = {"direct", "gateway", "observed", "unpriced"}


@needs_wrk
def test_observability_compares_pricing_on_and_off(tmp_path: Path) -> None:
    out = tmp_path / "observability.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.overhead",
            "--observability",
            "--rounds",
            "2",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Pricing target (added latency with pricing on within 10% of pricing off): " in done.stdout
    assert "observed: " in done.stdout and "unpriced: 0 of " in done.stdout, done.stdout

    report = json.loads(out.read_text())
    assert report["request_errors"] == 0
    assert report["upstream_model"] == "gpt-4o-mini"
    # Pricing on and off one right after the other, their order flipped between the rounds.
    assert report["order"] == [
        ["direct", "gateway", "observed", "unpriced"],
        ["direct", "gateway", "unpriced", "observed"],
    ]
    runs = report["runs"]  # the first round's
    for metric, sides in runs.items():
        assert set(sides) == SIDES, metric
        for side, run in sides.items():
            assert run["error_count"] == 0 and run["requests"] > 0, (metric, side)

    figures = {f["figure"]: f for f in report["pricing_cost"]}
    assert set(figures) == set(PRICING_FIGURES)
    for key, checked in PRICING_FIGURES.items():
        f = figures[key]
        assert len(f["per_round"]) == 2, key
        for n, name in enumerate(("pricing_off", "pricing_on")):
            values = [pair[n] for pair in f["per_round"]]
            assert f[name]["min"] == min(values) and f[name]["max"] == max(values), (key, name)
            assert f[name]["median"] == pytest.approx(sum(values) / 2, abs=1e-3), (key, name)  # of two
        if f["pricing_off"]["median"] > 0:
            assert f["ratio"] == pytest.approx(
                f["pricing_on"]["median"] / f["pricing_off"]["median"], rel=1e-2
            )
        assert (f["target"] == "ratio <= 1.10") == checked, key
        assert isinstance(f["pass"], bool) == checked, key
    for key, attr in (("latency_c1_p50_ms", "p50_ms"), ("stream_ttft_c32_p99_ms", "p99_ms")):
        metric = key.removesuffix(f"_{attr}")
        direct = runs[metric]["direct"][attr]
        off, on = figures[key]["per_round"][0]  # round 1's added figures: each side's minus direct's
        assert off == pytest.approx(runs[metric]["unpriced"][attr] - direct, abs=1e-3), key
        assert on == pytest.approx(runs[metric]["observed"][attr] - direct, abs=1e-3), key
    assert figures["throughput_c64_rps"]["per_round"][0] == pytest.approx(
        [
            runs["throughput_c64"]["unpriced"]["requests_per_s"],
            runs["throughput_c64"]["observed"]["requests_per_s"],
        ],
        abs=0.5,
    )

    costed = report["pricing_costed"]
    priced, unpriced = costed["observed"], costed["unpriced"]
    assert priced["requests"] > 0 and priced["costed"] == priced["requests"] and priced["usd"] > 0
    assert unpriced["requests"] > 0 and unpriced["costed"] == 0 and unpriced["usd"] == 0
