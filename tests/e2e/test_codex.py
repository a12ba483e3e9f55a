"""The real Codex CLI doing a coding turn (reasoning, a shell command in its read-only sandbox,
a final answer) while its model's primary upstream fails, directly and through Spillgate.

Every scenario runs ``codex exec`` twice against the same faults:

* **direct** (the control): Codex talks to the fake upstream itself, model ``up-primary``, so
  the primary's fault hits it as it would hit Codex in front of that upstream;
* **through Spillgate**: model ``gpt-test``, whose routes are the failing primary and the
  secondary (healthy, or at capacity too in the last scenario).

Both routes answer with the fake's scripted coding turn (:class:`Conversation`): the first
request gets a reasoning item and an ``exec_command`` call of ``echo spillgate-e2e``, the
follow-up carrying the command's output gets ``SPILLGATE-E2E-DONE`` plus that output.

Both runs use the same Codex retry overrides (``tests/e2e/codex.py``: one transport retry, one
turn retry, a 20 s stream idle timeout) so that control runs end in seconds. Each scenario's
outcome, direct and through Spillgate, is written to ``test-output/e2e-codex.json`` (and a
Markdown table next to it) for the README.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spillgate.fake import HEALTHY, AttemptRecord, FakeUpstream, Fault
from spillgate.fake.conversation import DEFAULT_ANSWER, ECHO_PREFIX
from tests.e2e.codex import (
    REQUEST_MAX_RETRIES,
    RUN_TIMEOUT,
    STREAM_MAX_RETRIES,
    CodexRun,
    attempt_summary,
    overrides,
    run_codex,
    tool_followups,
)
from tests.e2e.conftest import CLIENT_KEY, CLIENTS, CODEX_MODEL, PRIMARY, SECONDARY, Stack

ANSWER = f"{DEFAULT_ANSWER}\n{ECHO_PREFIX}spillgate-e2e"
"""The scripted final message, echoing what ``echo spillgate-e2e`` printed in Codex's sandbox."""
AT_CAPACITY = "Selected model is at capacity"
"""How Codex's own message for a 503 / in-stream ``server_is_overloaded`` starts: it ends the turn
at once (it discards the server's message and prints this)."""
TRANSPORT_TRIES = 1 + REQUEST_MAX_RETRIES
"""Requests Codex sends for one turn round when the upstream keeps answering a retryable status."""
TURN_ROUNDS = 1 + STREAM_MAX_RETRIES
"""Rounds of a turn Codex runs when a stream breaks or a retryable error persists."""
REPORT = Path(__file__).resolve().parents[2] / "test-output" / "e2e-codex.json"
ROUTE_NAMES = {PRIMARY: "primary", SECONDARY: "secondary"}

IN_STREAM_CAPACITY = Fault(
    stream_error_after_events=2,  # response.created, response.in_progress, then response.failed
    stream_error_code="server_is_overloaded",
    stream_error_message="Selected model is at capacity. Please try a different model.",
)
# Frames of the scripted first answer: 0 response.created, 1 response.in_progress, 2-7 the
# reasoning item (4: its summary delta), 8 the function call's output_item.added, 9-13 its
# argument deltas, 14-15 its done events, 16 response.completed.
CUT_AFTER_REASONING = Fault(cut_after_events=5)
"""The connection drops right after the reasoning summary delta (content already sent)."""
CUT_MID_TOOL_CALL = Fault(cut_after_events=10)
"""The connection drops after the first delta of the ``exec_command`` call's arguments."""


@dataclass(frozen=True)
class Control:
    """What Codex does on its own, talking to the failing primary directly."""

    completes: bool
    attempts: int
    """Requests the upstream receives before Codex succeeds or gives up."""
    error: str | None = None
    """A part of the ``turn.failed`` message (when it does not complete)."""


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    primary: Fault
    control: Control
    secondary: Fault = HEALTHY
    reconnects: int = 0
    """Codex reconnects allowed through Spillgate. A stream that breaks after reasoning or a tool
    call has started cannot be replayed exactly, so the gateway ends it with an in-band
    ``response.failed`` (``server_error``) and opens the route: Codex replays the turn, once,
    and that replay lands on the healthy route."""

    @property
    def secondary_healthy(self) -> bool:
        return self.secondary == HEALTHY


SCENARIOS = [
    Scenario(
        "capacity-503",
        "primary 100 % at capacity: HTTP 503 `server_is_overloaded`",
        Fault.capacity(),
        Control(completes=False, attempts=TRANSPORT_TRIES, error=AT_CAPACITY),
    ),
    Scenario(
        "capacity-in-stream",
        "primary at capacity in-stream: HTTP 200, `response.failed` `server_is_overloaded`",
        IN_STREAM_CAPACITY,
        Control(completes=False, attempts=1, error=AT_CAPACITY),
    ),
    Scenario(
        "capacity-50pct",
        "primary 50 % at capacity (every 2nd request a 503 `server_is_overloaded`)",
        Fault.capacity(rate=0.5),
        # Request 1 (ok), request 2 (503), its transport retry (ok): Codex gets lucky.
        Control(completes=True, attempts=3),
    ),
    Scenario(
        "429-retry-after",
        "primary 429 with `Retry-After: 1`",
        Fault.rate_limited(1),
        Control(completes=False, attempts=TURN_ROUNDS, error="429 Too Many Requests"),
    ),
    Scenario(
        "429-no-retry-after",
        "primary 429 without `Retry-After`",
        Fault.rate_limited(),
        Control(completes=False, attempts=1, error="429 Too Many Requests"),
    ),
    Scenario(
        "cut-after-reasoning",
        "primary cuts every stream after the reasoning summary delta",
        CUT_AFTER_REASONING,
        Control(completes=False, attempts=TURN_ROUNDS, error="stream disconnected before completion"),
        reconnects=1,
    ),
    Scenario(
        "cut-mid-tool-call",
        "primary cuts every stream inside the shell tool call's arguments",
        CUT_MID_TOOL_CALL,
        Control(completes=False, attempts=TURN_ROUNDS, error="stream disconnected before completion"),
        reconnects=1,
    ),
    Scenario(
        "all-at-capacity",
        "every route at capacity (HTTP 503 `server_is_overloaded`)",
        Fault.capacity(),
        Control(completes=False, attempts=TRANSPORT_TRIES, error=AT_CAPACITY),
        secondary=Fault.capacity(),
    ),
]


# -- the report -----------------------------------------------------------------------------------


def outcome(run: CodexRun, attempts: list[AttemptRecord]) -> dict[str, Any]:
    start = attempts[0].time if attempts else 0.0
    return {
        "exit_code": run.exit_code,
        "completed": run.completed,
        "final_message": run.final_message,
        "error": run.failure,
        "reconnects": run.reconnects,
        "upstream_attempts": len(attempts),
        "attempts": attempt_summary(attempts, ROUTE_NAMES),
        "attempt_times_s": [round(a.time - start, 2) for a in attempts],
        "elapsed_s": round(run.run.elapsed, 2),
        "timed_out": run.run.timed_out,
    }


def _cell(result: dict[str, Any]) -> str:
    """``exit 0, `SPILLGATE-E2E-DONE`; upstream: P 503 · S ok · S ok; 0.4 s``."""
    if result["completed"]:
        what = f"exit 0, `{str(result['final_message'] or '').splitlines()[0]}`"
    else:
        error = str(result["error"] or "?").split(", url:")[0].split(", request id:")[0]
        what = f"exit {result['exit_code']}: “{error}”"
    steps = []
    for attempt in result["attempts"]:
        route, _, happened = str(attempt).partition(":")
        steps.append(f"{route[:1].upper()} {happened.removeprefix('status:')}")
    return f"{what}; upstream: {' · '.join(steps)}; {result['elapsed_s']:.1f} s"


def markdown(entries: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | Codex direct | Codex through Spillgate |",
        "|---|---|---|",
    ]
    for entry in entries:
        direct, via = entry["direct"], entry.get("spillgate")
        lines.append(f"| {entry['title']} | {_cell(direct)} | {_cell(via) if via else '—'} |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def codex_report() -> Iterator[dict[str, dict[str, Any]]]:
    """Scenario id -> its outcomes; written to ``test-output/`` when the module is done."""
    entries: dict[str, dict[str, Any]] = {}
    yield entries
    if not entries:
        return
    package = json.loads((CLIENTS / "package.json").read_text())
    ordered = [entries[s.id] for s in SCENARIOS if s.id in entries]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {
                "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "codex_cli": package["dependencies"]["@openai/codex"],
                "codex_overrides": overrides(),
                "scenarios": ordered,
            },
            indent=2,
        )
        + "\n"
    )
    REPORT.with_suffix(".md").write_text(markdown(ordered))


# -- the test -------------------------------------------------------------------------------------


async def codex_run(
    codex: Path, fake: FakeUpstream, scenario: Scenario, workdir: Path, *, base_url: str, model: str, key: str
) -> tuple[CodexRun, list[AttemptRecord]]:
    """One Codex turn with the scenario's faults freshly set (their request counts start at 0)."""
    fake.set(PRIMARY, scenario.primary.with_conversation())
    fake.set(SECONDARY, scenario.secondary.with_conversation())
    fake.reset_attempts()
    run = await run_codex(codex, workdir=workdir, base_url=base_url, model=model, api_key=key)
    return run, fake.attempts


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
async def test_codex_turn(
    scenario: Scenario,
    client_bin: Path,
    stack: Stack,
    tmp_path: Path,
    codex_report: dict[str, dict[str, Any]],
) -> None:
    codex, fake = client_bin / "codex", stack.fake

    direct, direct_attempts = await codex_run(
        codex, fake, scenario, tmp_path / "direct", base_url=fake.openai_base_url, model=PRIMARY, key="sk-any"
    )
    via, via_attempts = await codex_run(
        codex,
        fake,
        scenario,
        tmp_path / "spillgate",
        base_url=f"{stack.gateway_url}/v1",
        model=CODEX_MODEL,
        key=CLIENT_KEY,
    )
    codex_report[scenario.id] = {
        "id": scenario.id,
        "title": scenario.title,
        "direct": outcome(direct, direct_attempts),
        "spillgate": outcome(via, via_attempts),
    }

    # The control: Codex alone fails, or gets through only by retrying the failing upstream.
    assert not direct.run.timed_out, direct.describe()
    assert direct.completed is scenario.control.completes, direct.describe()
    assert len(direct_attempts) == scenario.control.attempts, direct.describe()
    if scenario.control.error is not None:
        assert direct.failure is not None and scenario.control.error in direct.failure, direct.describe()

    # Through Spillgate.
    assert not via.run.timed_out, via.describe()
    if scenario.secondary_healthy:
        assert_turn_completed(via, via_attempts, scenario.reconnects)
    else:
        assert_clean_failure(via, via_attempts)


def assert_turn_completed(run: CodexRun, attempts: list[AttemptRecord], reconnects: int = 0) -> None:
    """The whole coding turn went through: tool call, sandboxed command, follow-up, answer."""
    assert run.completed, run.describe()
    assert run.reconnects == reconnects, run.describe()
    assert run.final_message == ANSWER, run.describe()
    commands = run.items("command_execution")
    assert [c.get("exit_code") for c in commands] == [0], run.describe()
    assert "spillgate-e2e" in str(commands[0].get("aggregated_output")), run.describe()
    answered = [a for a in tool_followups(attempts) if a.outcome == "ok"]
    assert answered, (
        f"no follow-up request with the tool output was answered: {attempt_summary(attempts, ROUTE_NAMES)}"
    )
    assert not any(message.startswith(AT_CAPACITY) for message in run.errors), run.describe()


def assert_clean_failure(run: CodexRun, attempts: list[AttemptRecord]) -> None:
    """Nothing can serve: Codex stops within its retry budget with an error naming the model and
    the cause, and it is not the fatal "Selected model is at capacity" (Spillgate answers 503
    ``server_error``, which Codex retries)."""
    assert run.exit_code == 1 and not run.completed, run.describe()
    assert run.failure is not None, run.describe()
    assert f"'{CODEX_MODEL}'" in run.failure and "out of capacity" in run.failure, run.describe()
    assert run.failure.startswith("unexpected status 503"), run.describe()
    assert not any(message.startswith(AT_CAPACITY) for message in run.errors), run.describe()
    assert run.reconnects == STREAM_MAX_RETRIES, run.describe()  # it did retry, as far as allowed
    assert run.run.elapsed < RUN_TIMEOUT, run.describe()
    assert attempts and all(a.outcome == "status:503" for a in attempts)
