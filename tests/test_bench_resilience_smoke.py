"""Smoke test for bench/resilience: it runs end to end and produces every figure, and they are sane.

The targets (attempts per request once the breaker is open) are not asserted: that is a
measurement. What is asserted is what must hold whatever the machine: with a healthy secondary
every client request succeeds, with every route at capacity none does, and every client request
costs at least one upstream attempt. One run of ~3 s per scenario (~20 s in all) feeds all tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("primary_100", "primary_30", "all_down", "recovery")
UPSTREAMS = ("up-primary", "up-secondary")
DURATION_S = 3.0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-resilience") / "resilience.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.resilience",
            "--duration",
            str(DURATION_S),
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
    for name in SCENARIOS:
        assert name in done.stdout, done.stdout
    assert "PASS" in done.stdout or "FAIL" in done.stdout, done.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_every_figure_is_present_and_sane(report: dict[str, Any]) -> None:
    assert report["duration_s"] == DURATION_S
    scenarios = report["scenarios"]
    assert list(scenarios) == list(SCENARIOS)
    for name, f in scenarios.items():
        n = f["client_requests"]
        assert n > 0, name
        assert f["transport_errors"] == 0, (name, f["errors"])
        assert sum(f["status_counts"].values()) == n, name
        assert set(f["upstream_attempts"]) == set(UPSTREAMS), name
        attempts = sum(f["upstream_attempts"].values())
        assert attempts >= n, (name, f["upstream_attempts"], n)
        assert f["attempts_per_request"] == pytest.approx(attempts / n), name
        assert f["attempts_per_request"] >= 1.0, name
        assert f["attempts_per_request"] <= 4.0, name  # the default max_attempts
        by_upstream = f["attempts_per_request_by_upstream"]
        assert sum(by_upstream.values()) == pytest.approx(f["attempts_per_request"]), name
        assert f["after_grace"]["client_requests"] > 0, name
        assert f["attempts_per_request_after_grace"] >= 1.0, name
        assert f["gateway_reported_attempts_per_request"] >= 1.0, name
        p50, p99 = f["latency_p50_ms"], f["latency_p99_ms"]
        assert math.isfinite(p50) and 0 < p50 <= p99 <= 10_000, (name, p50, p99)
        assert 0.0 <= f["primary_share"] <= 1.0, name
        assert sum(row["requests"] for row in f["timeline"]) == n, name

    assert scenarios["primary_100"]["primary_share"] == 0.0
    assert scenarios["primary_100"]["secondary_share"] == scenarios["primary_100"]["success_rate"]
    assert scenarios["all_down"]["success_rate"] == 0.0
    assert set(scenarios["all_down"]["status_counts"]) == {"503"}

    recovery = scenarios["recovery"]["recovery"]
    assert recovery["removed_at_s"] == pytest.approx(DURATION_S / 3, abs=0.5)
    assert recovery["primary_again_after_s"] is not None
    assert 0 <= recovery["primary_again_after_s"] < DURATION_S
    if recovery["primary_95pct_after_s"] is not None:
        assert recovery["primary_95pct_after_s"] >= recovery["primary_again_after_s"] - 0.1

    targets = report["targets"]
    assert set(targets) == {"primary_100", "all_down"}
    for name, target in targets.items():
        assert target["value"] == scenarios[name]["attempts_per_request_after_grace"], name
        assert isinstance(target["pass"], bool), name
    assert report["targets_met"] == all(t["pass"] for t in targets.values())


# A fresh gateway meets the load with the primary already at capacity: the first burst of
# requests (one per connection) all reach the primary before its first 503 comes back, and each
# needs a failover. The retry budget lets every request in flight go around a failure once, so
# none of them is refused.
@pytest.mark.parametrize("scenario", ["primary_100", "primary_30"])
def test_every_request_succeeds_with_a_healthy_secondary(report: dict[str, Any], scenario: str) -> None:
    f = report["scenarios"][scenario]
    assert f["success_rate"] == 1.0, (f["status_counts"], f["errors"])


@pytest.mark.parametrize("scenario", ["primary_100", "primary_30"])
def test_no_request_fails_after_the_first_second_with_a_healthy_secondary(
    report: dict[str, Any], scenario: str
) -> None:
    f = report["scenarios"][scenario]
    later = [row for row in f["timeline"] if row["second"] >= 1]
    assert later and all(row["ok"] == row["requests"] for row in later), (f["timeline"], f["errors"])
    assert f["failed_requests"] == 0, f["errors"]
