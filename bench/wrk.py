"""The wrk driver: non-streaming latency and throughput against one target.

``write_wrk_script`` writes the Lua script (the request, and a ``done()`` hook that undoes wrk's
coordinated-omission correction and prints one marker line), ``run_wrk`` runs wrk pinned to the
load core and parses that line, ``measure_wrk`` is a warm-up plus one measured run with the
cores' busy share.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import (
    HOST,
    REQUEST_TIMEOUT_S,
    LoadResult,
    Pinning,
    SetupError,
    Target,
    cpu_snapshot,
    cpu_usage,
    die_with_parent,
)

WRK_MARKER = "SPILLGATE-BENCH"

# wrk's done() hook. wrk "corrects" its latency histogram for coordinated omission before handing
# it over: for every sample n >= 2e (e = run time / requests per connection) it adds synthetic
# samples n-e, n-2e, ... > e (stats_correct in wrk's src/stats.c). At concurrency 1 against a
# ~40 us upstream, e is ~40 us, so a single 5 ms scheduler hiccup becomes ~120 synthetic samples and
# the direct p99 grows by orders of magnitude while the gateway's (larger e) grows less: the
# "added" figures stop meaning anything. The correction is deterministic, so done() undoes it
# (largest value first: orig[v] = corrected[v] - sum of orig[v + k*e] for v > e) and reports the
# measured distribution, plus wrk's corrected p50/p99 for reference. raw_count must equal the
# number of recorded responses; the Python side checks that and otherwise falls back to wrk's.
WRK_DONE = """
local connections = %(connections)d
local function nearest_rank(values, counts, total, p)
  local rank = math.max(1, math.ceil(p / 100 * total))
  local seen = 0
  for i = 1, #values do
    seen = seen + counts[i]
    if seen >= rank then return values[i] end
  end
  return 0
end

done = function(summary, latency, requests)
  local per_conn = math.floor(summary.requests / connections)
  local e = per_conn > 0 and math.floor(summary.duration / per_conn) or 0
  local n = #latency
  local values, corrected = {}, {}
  for i = 1, n do
    values[i], corrected[i] = latency(i)
  end
  local raw, by_value, total, sum, max = {}, {}, 0, 0, 0
  local top = n > 0 and values[n] or 0
  for i = n, 1, -1 do
    local v, c = values[i], corrected[i]
    if e > 0 and v > e then
      local k = v + e
      while k <= top do
        c = c - (by_value[k] or 0)
        k = k + e
      end
    end
    by_value[v], raw[i] = c, c
    total, sum = total + c, sum + c * v
    if c > 0 and v > max then max = v end
  end
  local err = summary.errors
  io.write(string.format(
    "%(marker)s requests=%%d duration_us=%%d interval_us=%%d raw_count=%%d p50_us=%%d p99_us=%%d "
    .. "mean_us=%%.1f max_us=%%d wrk_p50_us=%%d wrk_p99_us=%%d "
    .. "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\\n",
    summary.requests, summary.duration, e, total,
    nearest_rank(values, raw, total, 50), nearest_rank(values, raw, total, 99),
    total > 0 and sum / total or 0, max,
    latency:percentile(50), latency:percentile(99),
    err.connect, err.read, err.write, err.status, err.timeout))
end
"""


def lua_string(text: str) -> str:
    level = "="
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def write_wrk_script(path: Path, body: bytes, headers: tuple[tuple[str, str], ...], connections: int) -> None:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_string(body.decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers]
    lines.append(WRK_DONE % {"connections": connections, "marker": WRK_MARKER})
    path.write_text("\n".join(lines))


def wrk_seconds(seconds: float) -> int:
    """wrk takes whole seconds only."""
    return max(1, round(seconds))


def run_wrk(
    pin: Pinning, target: Target, script: Path, connections: int, seconds: int, log_dir: Path, label: str
) -> LoadResult:
    argv = [
        *pin.load,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        f"--timeout={REQUEST_TIMEOUT_S:g}s",
        "-s",
        str(script),
        f"http://{HOST}:{target.port}{target.path}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=seconds + 60, preexec_fn=die_with_parent
    )
    (log_dir / f"wrk-{label}.log").write_text(done.stdout + done.stderr)
    match = re.search(WRK_MARKER + r" (.*)", done.stdout)
    if done.returncode != 0 or match is None:
        raise SetupError(f"wrk failed (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
    fields = {k: float(v) for k, v in (item.split("=") for item in match.group(1).split())}
    errors = {k: int(fields[k]) for k in ("connect", "read", "write", "status", "timeout")}
    details: dict[str, Any] = {
        "wrk_corrected_p50_ms": fields["wrk_p50_us"] / 1000,
        "wrk_corrected_p99_ms": fields["wrk_p99_us"] / 1000,
        "wrk_interval_us": int(fields["interval_us"]),
    }
    # Every response is recorded once unless it took longer than the timeout (counted as one).
    if int(fields["raw_count"]) == int(fields["requests"]) - errors["timeout"]:
        details["latency_source"] = "wrk, coordinated-omission correction undone (measured samples)"
    else:
        details["latency_source"] = "wrk, coordinated-omission corrected (could not undo the correction)"
        for name in ("p50_us", "p99_us"):
            fields[name] = fields["wrk_" + name]
    # wrk's own "Non-2xx or 3xx responses" line, as a cross-check of errors.status.
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    if non2xx:
        errors["status"] = max(errors["status"], int(non2xx.group(1)))
    examples = [f"wrk: {k} errors: {v}" for k, v in errors.items() if v]
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration_s=fields["duration_us"] / 1e6,
        requests=int(fields["requests"]),
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        mean_ms=fields["mean_us"] / 1000,
        max_ms=fields["max_us"] / 1000,
        errors=errors,
        error_examples=examples,
        details=details,
    )


def measure_wrk(
    pin: Pinning,
    target: Target,
    connections: int,
    duration: float,
    warmup: float,
    work_dir: Path,
    label: str,
) -> LoadResult:
    script = work_dir / f"{label}.lua"
    write_wrk_script(script, target.body(False), target.headers, connections)
    if warmup > 0:
        run_wrk(pin, target, script, connections, wrk_seconds(warmup), work_dir, label + "-warmup")
    before = cpu_snapshot()
    result = run_wrk(pin, target, script, connections, wrk_seconds(duration), work_dir, label)
    result.details["cpu"] = cpu_usage(before, cpu_snapshot())
    return result


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "not installed"
    return out.split("Copyright")[0].removeprefix("wrk").strip() or "unknown"
