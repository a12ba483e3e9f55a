"""The real Claude Code (2.1.328, ``claude -p --output-format stream-json``) against a failing
primary: direct to the upstream vs through Spillgate with a healthy second route.

Every run, direct and through Spillgate alike, has ``CLAUDE_CODE_MAX_RETRIES=2`` (see
:data:`tests.e2e.claude.CLAUDE_MAX_RETRIES`): by default Claude Code retries a 529 ten times
over about three minutes; capped, it makes 3 attempts and a run ends in seconds. Both arms run
at once, each on its own fake upstream. Outcomes go to ``test-output/e2e-claude.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spillgate.fake import Fault
from spillgate.fake.protocol import ANTHROPIC

from .claude import (
    CLAUDE_MAX_RETRIES,
    CLAUDE_TEXT,
    CLAUDE_VERSION,
    SCENARIO_IDS,
    SCENARIOS,
    Arm,
    ClaudeRun,
    RecordingProxy,
    Report,
    Scenario,
    direct_arm,
    run_claude,
    spillgate_arm,
)
from .conftest import CLAUDE_MODEL, PRIMARY, SECONDARY

RUN_TIMEOUT = 60.0
"""Hard limit per Claude Code run (the longest, every route down through Spillgate, takes ~17 s)."""


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    r = Report(
        "e2e-claude",
        {
            "client": f"Claude Code {CLAUDE_VERSION}",
            "command": "claude -p <task> --output-format stream-json --verbose --model <model>",
            "env": {
                "CLAUDE_CODE_MAX_RETRIES": CLAUDE_MAX_RETRIES,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": 1,
                "DISABLE_AUTOUPDATER": 1,
            },
            "direct": f"ANTHROPIC_BASE_URL = the fake upstream, --model {PRIMARY} (the failing primary)",
            "spillgate": f"ANTHROPIC_BASE_URL = Spillgate, --model {CLAUDE_MODEL} "
            f"(routes {PRIMARY}, {SECONDARY})",
            "scripted_answer": CLAUDE_TEXT,
        },
    )
    yield r
    r.write()


def fresh_dir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir(parents=True)
    return path


async def run_arm(arm: Arm, base: Path, runs: int) -> list[ClaudeRun]:
    """``runs`` Claude Code runs in a row, each with a fresh HOME."""
    model = arm.model(CLAUDE_MODEL)
    return [
        await run_claude(arm, fresh_dir(base, f"{arm.name}-{i}"), model=model, timeout=RUN_TIMEOUT)
        for i in range(runs)
    ]


def arm_summary(arm: Arm, runs: list[ClaudeRun]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "succeeded": sum(r.succeeded(CLAUDE_TEXT) for r in runs),
        "runs": [r.summary() for r in runs],
        "api_retries": sum(len(r.retries) for r in runs),
        "upstream_attempts": len(arm.attempts),
        "upstream": arm.upstream_summary(),
    }
    if arm.stack is not None:
        requests = arm.client_requests
        out["client_requests"] = [
            {"status": e.status, "attempts": e.attempts, "route": e.route, "recovered": e.recovered}
            for e in requests
        ]
    return out


def details(name: str, runs: list[ClaudeRun], arm: Arm) -> str:
    return f"{name}: upstream saw {arm.upstream_summary()}\n" + "\n".join(r.describe() for r in runs)


@pytest.mark.parametrize(
    "nonessential",
    [
        # Only with nonessential traffic off: with it on, Claude Code also calls hosts other
        # than its base URL (telemetry), and tests reach nothing but loopback.
        pytest.param(False, id="nonessential-traffic-off"),
    ],
)
async def test_claude_code_requests(
    client_bin: Path, tmp_path: Path, report: Report, nonessential: bool
) -> None:
    """What Claude Code asks for in print mode, every path included (a recording proxy in front of
    Spillgate, one fresh connection per request): with nonessential traffic off (as in every
    other test here) one streamed ``POST /v1/messages`` for ``--model`` and nothing else."""
    healthy = Fault(text=CLAUDE_TEXT)
    async with spillgate_arm(healthy, healthy) as arm:
        proxy = RecordingProxy(arm.base_url)
        await proxy.start()
        try:
            run = await run_claude(
                arm,
                fresh_dir(tmp_path, "discover"),
                model=CLAUDE_MODEL,
                base_url=proxy.url,
                nonessential_traffic=nonessential,
            )
        finally:
            await proxy.close()
    report.add(
        f"requests_sent{'_nonessential_traffic_on' if nonessential else ''}",
        {
            "description": "every request Claude Code sent through Spillgate, healthy upstream, "
            f"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC {'unset' if nonessential else '=1'}",
            "requests": [
                f"{s.method} {s.path} model={s.model} stream={s.stream} -> {s.status}"
                + (f" (relay failed: {s.error})" if s.error else "")
                for s in proxy.seen
            ],
            "run": run.summary(),
        },
    )
    assert run.succeeded(CLAUDE_TEXT), run.describe()
    messages = [s for s in proxy.seen if (s.method, s.path.partition("?")[0]) == ("POST", "/v1/messages")]
    others = [s for s in proxy.seen if s not in messages]
    assert messages, proxy.seen
    assert all((s.model, s.status) == (CLAUDE_MODEL, 200) for s in messages), proxy.seen
    assert [a.model for a in arm.attempts] == [PRIMARY] * len(messages)
    if not nonessential:
        assert others == [], proxy.seen
        return
    assert [(s.method, s.path) for s in others] == [("HEAD", "/api/hello")], proxy.seen
    assert [(s.status, s.error) for s in others] == [(404, None)], proxy.seen


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
async def test_claude_code(scenario: Scenario, client_bin: Path, tmp_path: Path, report: Report) -> None:
    primary, secondary = scenario.faults(ANTHROPIC, CLAUDE_TEXT)
    async with direct_arm(primary) as direct, spillgate_arm(primary, secondary) as gateway:
        direct_runs, gateway_runs = await asyncio.gather(
            run_arm(direct, tmp_path, scenario.runs), run_arm(gateway, tmp_path, scenario.runs)
        )
    report.add(
        scenario.name,
        {
            "description": scenario.description,
            "direct": arm_summary(direct, direct_runs),
            "spillgate": arm_summary(gateway, gateway_runs),
        },
    )
    check_direct(scenario, direct, direct_runs)
    if scenario.every_route_down:
        check_spillgate_all_down(gateway, gateway_runs)
    else:
        check_spillgate_recovers(gateway, gateway_runs)


def check_spillgate_recovers(arm: Arm, runs: list[ClaudeRun]) -> None:
    """A healthy route is left: every run prints the scripted answer, exit 0, with no retry of
    Claude Code's own; every request it made through Spillgate was answered 200."""
    why = details("through Spillgate", runs, arm)
    for run in runs:
        assert run.succeeded(CLAUDE_TEXT), why
        assert run.retries == [], why
    assert any(a.model == PRIMARY and a.fault_applied for a in arm.attempts), why  # the fault did fire
    assert [e.status for e in arm.client_requests] == [200] * len(runs), why


def check_spillgate_all_down(arm: Arm, runs: list[ClaudeRun]) -> None:
    """Every route at capacity: Claude Code ends within its (capped) retry budget with an error
    that names the model and the cause; it waits out Spillgate's Retry-After between attempts."""
    why = details("through Spillgate", runs, arm)
    (run,) = runs
    assert run.run.returncode != 0 and not run.run.timed_out, why
    assert run.is_error, why
    assert f"'{CLAUDE_MODEL}'" in run.text and "out of capacity" in run.text, why
    assert len(run.retries) == CLAUDE_MAX_RETRIES, why
    assert all(r["error_status"] == 529 for r in run.retries), why
    # Spillgate's Retry-After (>= 1 s, the routes' cooldown) spaces them, not a blind 0.5 s backoff.
    assert all(r["retry_delay_ms"] >= 1000 for r in run.retries), why
    requests = arm.client_requests
    assert [e.status for e in requests] == [529] * (CLAUDE_MAX_RETRIES + 1), why
    assert all(e.attempts <= 2 for e in requests), why  # one try per route, no more
    assert run.run.elapsed < 45, why


def check_direct(scenario: Scenario, arm: Arm, runs: list[ClaudeRun]) -> None:
    """The control: Claude Code alone against the failing primary retries it blindly (the same
    upstream every time) and, unless the fault is intermittent, fails."""
    why = details("direct", runs, arm)
    attempts = arm.attempts
    assert all(a.model == PRIMARY for a in attempts), why
    if scenario.name == "half_overloaded":
        # It gets there by retrying into the healthy half: a retry for every failure it met.
        failures = [a for a in attempts if a.fault_applied]
        assert all(run.succeeded(CLAUDE_TEXT) for run in runs), why
        assert failures, why
        assert sum(len(run.retries) for run in runs) == len(failures), why
        assert len(attempts) == len(runs) + len(failures), why
        return
    (run,) = runs
    assert run.run.returncode != 0 and not run.run.timed_out and run.is_error, why
    assert all(a.fault_applied for a in attempts), why
    if scenario.name in ("in_stream_error", "stream_cut"):
        # A broken stream: retried, then Claude Code falls back to a request without streaming
        # (which has its own, smaller retry loop) — every one of them to the same upstream.
        assert len(attempts) >= 2, why
        assert any(not a.stream for a in attempts), why
        return
    assert len(run.retries) == CLAUDE_MAX_RETRIES, why
    assert len(attempts) == CLAUDE_MAX_RETRIES + 1, why
    status = {"overloaded": 529, "all_at_capacity": 503}.get(scenario.name, 429)
    assert all(r["error_status"] == status for r in run.retries), why
    assert str(status) in run.text, why
    if scenario.name == "rate_limited_retry_after":
        assert all(r["retry_delay_ms"] >= 1900 for r in run.retries), why  # Retry-After: 2 honoured
