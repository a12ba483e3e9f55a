"""Smoke test for ``bench/overhead --observability``'s pricing comparison: the observed gateway with
pricing on against ``pricing: off``, direct and both taking turns in one window a round, at a tiny
size (~30 s: wrk runs whole seconds).

Targets are not asserted (a measurement on a shared machine, not a bug); the figures' shape is:
both sides in both rounds with whole cycles of turns, which pricing side comes second flipped,
pooled and per-round figures and their ratios consistent with the samples counted, CPU per request
for both, and the priced gateway costing its requests while the unpriced one costs none.
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
    "latency_c1_cpu_us": False,
    "stream_ttft_c32_cpu_us": False,
}
"""Figure -> whether it has the 10 % target."""
SIDES = {"direct", "gateway", "observed"}


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
    assert report["upstream_model"] == "gpt-4o-mini" and report["pricing_calibration"] is False
    # The wrk and streaming runs of each round: direct, the bare gateway, the observed one.
    assert report["order"] == [["direct", "gateway", "observed"]] * 2
    runs = report["runs"]  # the first round's
    for metric, sides in runs.items():
        assert set(sides) == SIDES, metric
        for side, run in sides.items():
            assert run["error_count"] == 0 and run["requests"] > 0, (metric, side)

    # Then the pricing windows: direct, pricing on and off taking turns, which comes second flipped.
    windows = report["pricing_turns"]
    assert [w["latency_c1"]["sides"] for w in windows] == [
        ["direct", "observed", "unpriced"],
        ["direct", "unpriced", "observed"],
    ]
    for w in windows:
        for kind, turns in w.items():
            counts = set(turns["turns"].values())
            assert len(counts) == 1 and counts.pop() % 2 == 0, (kind, turns)  # whole cycles
            assert turns["errors"] == {}, kind
            for side in ("direct", "observed", "unpriced"):
                assert 0 < turns["samples"][side] <= turns["answered"][side], (kind, side)
            assert set(turns["cpu_s"]) == {"observed", "unpriced"}
            assert all(v > 0 for v in turns["cpu_s"].values()), (kind, turns)

    figures = {f["figure"]: f for f in report["pricing_cost"]}
    assert set(figures) == set(PRICING_FIGURES)
    for key, checked in PRICING_FIGURES.items():
        f = figures[key]
        assert len(f["per_round"]) == 2, key
        for n, name in enumerate(("pricing_off", "pricing_on")):
            values = [pair[n] for pair in f["per_round"]]
            assert f[name]["min"] == min(values) and f[name]["max"] == max(values), (key, name)
            assert f[name]["median"] == pytest.approx(sum(values) / 2, abs=1e-3), (key, name)  # of two
        if f["pricing_off"]["pooled"] > 0:
            assert f["ratio"] == pytest.approx(
                f["pricing_on"]["pooled"] / f["pricing_off"]["pooled"], rel=1e-2
            )
        assert (f["target"] == "ratio <= 1.10") == checked, key
        assert isinstance(f["pass"], bool) == checked, key
    for key, f in figures.items():
        kind = next(k for k in ("latency_c1", "stream_ttft_c32") if key.startswith(k))
        count = "samples" if key.endswith("_ms") else "answered"
        for side, name in (("unpriced", "pricing_off"), ("observed", "pricing_on")):
            assert f["samples"][name] == sum(w[kind][count][side] for w in windows), (key, side)
        if key.endswith("_cpu_us"):  # CPU seconds over requests answered, pooled
            cpu = sum(w[kind]["cpu_s"]["observed"] for w in windows)
            assert f["pricing_on"]["pooled"] == pytest.approx(
                1e6 * cpu / f["samples"]["pricing_on"], rel=1e-2
            )

    costed = report["pricing_costed"]
    priced, unpriced = costed["observed"], costed["unpriced"]
    assert priced["requests"] > 0 and priced["costed"] == priced["requests"] and priced["usd"] > 0
    assert unpriced["requests"] > 0 and unpriced["costed"] == 0 and unpriced["usd"] == 0
