"""Driving the real Codex CLI (``codex exec --json``) in the end-to-end tests.

Codex reads its provider from ``$CODEX_HOME/config.toml``; every run gets its own home and
workspace, the task on the command line, stdin closed, and a hard timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spillgate.fake import AttemptRecord
from spillgate.fake.conversation import tool_outputs
from tests.e2e.conftest import Run, base_env, run_client

PROVIDER = "e2e"
"""The ``model_provider`` id written into ``config.toml``."""
KEY_ENV = "SPILLGATE_E2E_KEY"
"""The environment variable Codex reads the provider's API key from (``env_key``)."""
TASK = "Run `echo spillgate-e2e` in the workspace and report what it printed."

# Codex's retry defaults (request_max_retries = 4, stream_max_retries = 5, stream_idle_timeout_ms
# = 300000) retry a failing turn up to 5 x 6 = 30 times and honour Retry-After at both levels:
# a control run against an upstream at capacity, or a gateway run where every route is at
# capacity (Spillgate's Retry-After follows its cooldown: 2, 4, 8, 16, 30, 30 ... s), would take
# minutes. These overrides keep each run well under a minute; the same ones are used for the
# direct (control) runs and the runs through Spillgate, so the comparison is fair.
REQUEST_MAX_RETRIES = 1
"""Transport-level retries of one request (503, 5xx, 429 with Retry-After...): 2 attempts."""
STREAM_MAX_RETRIES = 1
"""Turn-level retries ("Reconnecting... n/N": stream cut, in-stream server_error, exhausted
transport retries of a retryable status): 2 rounds."""
STREAM_IDLE_TIMEOUT_MS = 20_000
"""A silent stream fails after 20 s instead of 5 min (above the gateway's e2e first-token timeout
of 10 s, so the gateway gives up on a silent upstream first)."""
RUN_TIMEOUT = 60.0
"""Hard limit of one Codex run, after which it is killed by PID."""


def overrides(provider: str = PROVIDER) -> list[str]:
    """The ``-c`` flags applied to every Codex run (see the constants above)."""
    values = {
        "request_max_retries": REQUEST_MAX_RETRIES,
        "stream_max_retries": STREAM_MAX_RETRIES,
        "stream_idle_timeout_ms": STREAM_IDLE_TIMEOUT_MS,
    }
    flags: list[str] = []
    for key, value in values.items():
        flags += ["-c", f"model_providers.{provider}.{key}={value}"]
    return flags


def write_config(home: Path, *, base_url: str, model: str) -> Path:
    """A ``config.toml`` selecting ``model`` on a custom Responses provider at ``base_url``."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text(
        f'model = "{model}"\n'
        f'model_provider = "{PROVIDER}"\n'
        # Nothing but the provider on loopback: no update check, no analytics.
        "check_for_update_on_startup = false\n"
        "\n"
        "[analytics]\n"
        "enabled = false\n"
        "\n"
        f"[model_providers.{PROVIDER}]\n"
        f'name = "{PROVIDER}"\n'
        f'base_url = "{base_url}"\n'
        f'env_key = "{KEY_ENV}"\n'
        'wire_api = "responses"\n'
    )
    return config


@dataclass
class CodexRun:
    """One ``codex exec --json`` run, its event lines read."""

    run: Run
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, run: Run) -> CodexRun:
        events: list[dict[str, Any]] = []
        for line in run.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return cls(run, events)

    @property
    def exit_code(self) -> int:
        return self.run.returncode

    @property
    def completed(self) -> bool:
        """The turn completed (``turn.completed``) and Codex exited 0."""
        return self.exit_code == 0 and any(e.get("type") == "turn.completed" for e in self.events)

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The completed items of one type (``agent_message``, ``command_execution``, ...)."""
        out: list[dict[str, Any]] = []
        for event in self.events:
            item = event.get("item")
            if event.get("type") == "item.completed" and isinstance(item, dict) and item.get("type") == kind:
                out.append(item)
        return out

    @property
    def final_message(self) -> str | None:
        messages = self.items("agent_message")
        return str(messages[-1].get("text", "")) if messages else None

    @property
    def errors(self) -> list[str]:
        """The ``error`` events' messages, in order ("Reconnecting... 1/1 (...)" included)."""
        return [str(e.get("message", "")) for e in self.events if e.get("type") == "error"]

    @property
    def failure(self) -> str | None:
        """The message of ``turn.failed``, if the turn failed."""
        for event in self.events:
            if event.get("type") == "turn.failed":
                error = event.get("error")
                return str(error.get("message", "")) if isinstance(error, dict) else str(error)
        return None

    @property
    def reconnects(self) -> int:
        """How many times Codex retried the turn ("Reconnecting... n/N")."""
        return sum(1 for message in self.errors if message.startswith("Reconnecting..."))

    def describe(self) -> str:
        """What a reader needs when an assertion fails."""
        head = f"exit {self.exit_code} after {self.run.elapsed:.1f}s" + (
            " (KILLED at the timeout)" if self.run.timed_out else ""
        )
        lines = [head, *(json.dumps(e)[:400] for e in self.events)]
        if self.run.stderr.strip():
            lines.append("stderr: " + self.run.stderr.strip()[-1500:])
        return "\n".join(lines)


async def run_codex(
    codex: Path,
    *,
    workdir: Path,
    base_url: str,
    model: str,
    api_key: str,
    task: str = TASK,
    timeout: float = RUN_TIMEOUT,
    flags: Sequence[str] | None = None,
) -> CodexRun:
    """``codex exec --skip-git-repo-check --ephemeral --json -s read-only <task>`` with stdin
    closed, against ``base_url`` with the retry :func:`overrides` (or the ``-c`` ``flags`` given:
    ``[]`` for Codex's own defaults); its own ``CODEX_HOME`` under ``workdir``."""
    home = workdir / "codex-home"
    workspace = workdir / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    write_config(home, base_url=base_url, model=model)
    env = base_env(workdir)
    env["CODEX_HOME"] = str(home)
    env[KEY_ENV] = api_key
    argv = [
        str(codex),
        "exec",
        *(overrides() if flags is None else flags),
        "--skip-git-repo-check",
        "--ephemeral",
        "--json",
        "-s",
        "read-only",
        task,
    ]
    run = await run_client(argv, env=env, cwd=workspace, timeout=timeout)
    return CodexRun.parse(run)


def tool_followups(attempts: Iterable[AttemptRecord]) -> list[AttemptRecord]:
    """The requests that carried a tool's output back (a ``function_call_output`` in ``input``)."""
    out: list[AttemptRecord] = []
    for attempt in attempts:
        try:
            payload = json.loads(attempt.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(payload, dict) and tool_outputs(payload.get("input")):
            out.append(attempt)
    return out


def attempt_summary(attempts: Iterable[AttemptRecord], names: Mapping[str, str]) -> list[str]:
    """``"primary:status:503"``-style lines, one per upstream request, in order."""
    return [f"{names.get(a.model, a.model)}:{a.outcome}" for a in attempts]
