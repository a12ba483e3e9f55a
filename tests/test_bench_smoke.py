"""Smoke tests for bench/overhead: it runs end to end and produces every figure without request
errors, in its default mode and with ``--translation``.

Targets are not asserted: on a shared or tiny machine they may not be met, and that is a
measurement, not a bug. The default mode takes ~15 s (wrk runs in whole seconds);
``--translation`` (no wrk) ~6 s.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_marks import needs_wrk

REPO = Path(__file__).resolve().parent.parent
FIGURES = (
    "latency_c1_p50_ms",
    "latency_c1_p99_ms",
    "throughput_c64_rps",
    "stream_ttft_c32_p50_ms",
    "stream_ttft_c32_p99_ms",
    "stream_c32_rps",
    "gateway_peak_rss_mib",
)

TRANSLATION_FIGURES = (
    "stream_ttft_c32_p50_ms",
    "stream_ttft_c32_p99_ms",
    "stream_gateway_cpu_us_per_event",
    "stream_gateway_cpu_us_per_request",
    "stream_events_per_request",
    "stream_c32_rps",
    "latency_c1_p50_ms",
    "latency_c1_p99_ms",
    "latency_c1_gateway_cpu_us_per_request",
)
TRANSLATION_TARGETS = {
    "stream_ttft_c32_p50_ms": 0.5,
    "stream_ttft_c32_p99_ms": 3.0,
    "stream_gateway_cpu_us_per_event": 15.0,
    "latency_c1_p50_ms": 0.5,
}
TRANSLATION_APIS = ("responses", "messages")


@needs_wrk
def test_overhead_benchmark_produces_all_figures(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.overhead",
            "--duration",
            "0.5",
            "--warmup",
            "0.5",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "PASS" in done.stdout or "FAIL" in done.stdout, done.stdout

    report = json.loads(out.read_text())
    assert report["request_errors"] == 0
    figures = report["figures"]
    assert set(figures) == set(FIGURES)
    for name in FIGURES:
        figure = figures[name]
        assert figure["gateway"] > 0, (name, figure)
        if name == "gateway_peak_rss_mib":
            assert figure["direct"] is None and figure["added"] is None
        else:
            assert figure["direct"] > 0, (name, figure)
            assert math.isfinite(figure["added"]), (name, figure)
            assert figure["added"] == pytest.approx(figure["gateway"] - figure["direct"], abs=1e-3)
    for metric, sides in report["runs"].items():
        assert set(sides) == {"direct", "gateway"}, metric
        for side, run in sides.items():
            assert run["error_count"] == 0, (metric, side, run["error_examples"])
            assert run["requests"] > 0, (metric, side)
    targeted = {name for name, f in figures.items() if f["target"] is not None}
    assert targeted == {
        "latency_c1_p50_ms",
        "latency_c1_p99_ms",
        "throughput_c64_rps",
        "stream_ttft_c32_p99_ms",
    }
    assert all(isinstance(figures[name]["pass"], bool) for name in targeted)


def test_overhead_translation_mode_produces_all_figures(tmp_path: Path) -> None:
    out = tmp_path / "translation.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.overhead",
            "--translation",
            "--rounds",
            "2",
            "--duration",
            "0.2",
            "--warmup",
            "0.05",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "PASS" in done.stdout or "MISS" in done.stdout, done.stdout
    assert "responses -> chat" in done.stdout and "messages -> chat" in done.stdout, done.stdout

    report = json.loads(out.read_text())
    assert report["mode"] == "translation"
    assert report["rounds"] == 2
    assert report["request_errors"] == 0
    runs = report["runs"]
    assert len(runs) == 2
    for results in runs:
        assert set(results) == {f"{kind}_{api}" for kind in ("stream", "plain") for api in TRANSLATION_APIS}
        for metric, sides in results.items():
            assert set(sides) == {"native", "translated"}, metric
            assert sorted(run["order"] for run in sides.values()) == [0, 1], metric
            for side, run in sides.items():
                assert run["error_count"] == 0, (metric, side, run["error_examples"])
                assert run["requests"] > 0, (metric, side)
                assert run["gateway_cpu_s"] > 0, (metric, side)
                if metric.startswith("stream_"):
                    assert run["events_in_window"] > run["requests"], (metric, side)
    # The order flips between rounds: drift falls on both sides alike.
    for metric in runs[0]:
        assert runs[0][metric]["native"]["order"] != runs[1][metric]["native"]["order"], metric

    figures = report["figures"]
    assert set(figures) == {f"{api}_{key}" for api in TRANSLATION_APIS for key in TRANSLATION_FIGURES}
    for api in TRANSLATION_APIS:
        for key in TRANSLATION_FIGURES:
            figure = figures[f"{api}_{key}"]
            assert figure["api"] == api
            assert figure["native"] > 0 and figure["translated"] > 0, (api, key, figure)
            added = figure["added_per_round"]
            assert len(added) == 2 and all(math.isfinite(a) for a in added), (api, key, figure)
            assert figure["added_min"] == min(added) and figure["added_max"] == max(added)
            assert figure["added"] == pytest.approx(sum(added) / 2, abs=1e-3)  # the median of two
            assert figure["target"] == TRANSLATION_TARGETS.get(key), (api, key)
            assert isinstance(figure["pass"], bool) == (key in TRANSLATION_TARGETS), (api, key)
        for n, results in enumerate(runs):  # added per round is that round's translated - native
            sides = results[f"stream_{api}"]
            p50 = sides["translated"]["p50_ms"] - sides["native"]["p50_ms"]
            assert figures[f"{api}_stream_ttft_c32_p50_ms"]["added_per_round"][n] == pytest.approx(
                p50, abs=1e-3
            )
            sides = results[f"plain_{api}"]
            p50 = sides["translated"]["p50_ms"] - sides["native"]["p50_ms"]
            assert figures[f"{api}_latency_c1_p50_ms"]["added_per_round"][n] == pytest.approx(p50, abs=1e-3)
