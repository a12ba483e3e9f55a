"""Smoke tests for ``bench/overhead --state redis`` and ``--workers 2``: each runs end to end and
produces every figure without request errors. Targets are not asserted (a measurement on a busy
machine, not a bug); the figures must be numbers, and the shares and attempts plausible."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

needs_tools = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("redis-server") is None,
    reason="wrk and redis-server are needed (apt-get install wrk redis-server)",
)


def run(tmp_path: Path, *mode: str) -> dict[str, float]:
    out = tmp_path / "state.json"
    short = ("--rounds", "1", "--duration", "1", "--warmup", "0")
    done = subprocess.run(
        [sys.executable, "-m", "bench.overhead", *mode, *short, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Targets met:" in done.stdout
    report = json.loads(out.read_text())
    assert report["request_errors"] == 0
    figures = {f["name"]: f["median"] for f in report["figures"]}
    assert all(math.isfinite(v) for v in figures.values()), figures
    return figures


@needs_tools
def test_state_redis_benchmark_produces_its_figures(tmp_path: Path) -> None:
    figures = run(tmp_path, "--state", "redis")
    assert len(figures) == 6
    attempts = [v for name, v in figures.items() if name.startswith("upstream attempts")]
    assert len(attempts) == 2 and all(1.0 <= a < 2.0 for a in attempts), figures


@needs_tools
def test_workers_benchmark_produces_its_figures(tmp_path: Path) -> None:
    figures = run(tmp_path, "--workers", "2")
    assert len(figures) == 6
    assert 0.1 < figures["smaller worker's share of the requests"] <= 0.5, figures
