"""Smoke test for bench/overhead: it runs end to end and produces every figure without request errors.

Targets are not asserted: on a shared or tiny machine they may not be met, and that is a
measurement, not a bug. Takes ~15 s (wrk runs in whole seconds).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk); bench/overhead needs it"
)


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
