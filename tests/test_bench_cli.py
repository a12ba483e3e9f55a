"""The bench commands start: each wrapper (``bench/overhead``, ``bench/resilience``, ``bench/soak``)
runs its module (``python -m bench.<name>``) from any directory and prints its usage.

Fast (no server is started); the smoke tests beside this one run the benchmarks themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["overhead", "resilience", "soak"])
def test_wrapper_runs_the_module_from_any_directory(name: str, tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()  # a bench/ of the current directory must not shadow the package
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / name), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: bench/{name} "), done.stdout
    assert "--json PATH" in done.stdout


@pytest.mark.parametrize("name", ["overhead", "resilience", "soak"])
def test_module_runs_from_the_repository_root(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: bench/{name} "), done.stdout


def _cpu_per_request(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench.cpu_per_request ARGS`` from the repository root; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cpu_per_request", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_cpu_per_request_compares_pricing_on_and_off() -> None:
    done = _cpu_per_request("12", "--pricing")
    head, *figures = done.stdout.splitlines()
    assert head.startswith("pricing on against pricing: off"), done.stdout
    assert [line.split()[0] for line in figures] == ["plain", "stream"], done.stdout
    assert all("pricing on " in line and "added " in line for line in figures), done.stdout


def test_cpu_per_request_prints_both_figures() -> None:
    done = _cpu_per_request("5")
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["plain", "stream"], done.stdout
    assert all(float(line.split()[4]) > 0 for line in lines), done.stdout


@pytest.mark.parametrize("translation", ["responses-chat", "messages-chat"])
def test_cpu_per_request_measures_a_translated_route_against_the_native_one(translation: str) -> None:
    done = _cpu_per_request("6", "--translation", translation)
    header, *lines = done.stdout.splitlines()
    assert header.startswith(f"translation {translation}: "), done.stdout
    figures = {line.split("  native")[0].strip(): line for line in lines}
    assert list(figures) == [
        "plain cpu per request",
        "stream cpu per request",
        "stream events per request",
        "stream-long cpu per request",
        "stream-long events per request",
        "stream cpu per event (slope)",
        "stream cpu per stream, once",
    ], done.stdout
    for label, line in figures.items():
        words = line.split()
        native, translated = (float(words[words.index(side) + 1]) for side in ("native", "translated"))
        if label != "stream cpu per stream, once":  # an intercept: noisy over a few requests
            assert native > 0 and translated > 0, line
    long = figures["stream-long cpu per request"].split()
    assert float(long[long.index("added") + 1]) > 0, long  # translating 64 deltas costs the gateway
    assert figures["stream cpu per event (slope)"].endswith(("PASS", "MISS")), done.stdout
