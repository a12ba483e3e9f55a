"""At DEBUG every attempt, answered or failed, is one log line: a request can be followed in the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from spillgate.fake import FakeUpstream, Fault

from ..harness import CLIENT_KEY, UPSTREAM_KEYS, base_config, start_harness

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}


def attempt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "spillgate.dispatch"
        and r.levelno == logging.DEBUG
        and " attempt " in r.getMessage()
        and r.getMessage().startswith("request ")
    ]


def one_account_first(fake: FakeUpstream) -> dict[str, Any]:
    """Alias coder over two OpenAI routes of one account each: a failover goes to the second route."""
    config = base_config(fake)
    config["models"]["coder"]["routes"] = [
        {"accounts": ["oa-1"], "model": "up-coder"},
        {"accounts": ["oa-2"], "model": "up-coder-2"},
    ]
    return config


async def follow(fake: FakeUpstream, caplog: pytest.LogCaptureFixture) -> tuple[str, list[str]]:
    """Send one chat request through a gateway at DEBUG: its request id and its attempt lines."""
    harness = await start_harness(fake, one_account_first(fake))
    try:
        with caplog.at_level(logging.DEBUG, logger="spillgate.dispatch"):
            reply = await harness.call("/v1/chat/completions", CHAT)
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
    assert reply.status == 200, reply.body
    lines = attempt_lines(caplog)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (CLIENT_KEY, *UPSTREAM_KEYS.values()):
        assert secret not in logged, "a key must never be logged"
    return reply.headers["x-spillgate-request-id"], lines


async def test_a_single_answered_attempt_is_one_debug_line(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    request_id, lines = await follow(fake, caplog)
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith(f"request {request_id} attempt 1 (attempt): route coder[0] account oa-1 ")
    assert "provider up-openai model up-coder -> 200 ok in " in line and line.endswith(" ms")


async def test_a_failover_is_two_debug_lines(fake: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    fake.set("up-coder", Fault.capacity())
    request_id, lines = await follow(fake, caplog)
    assert len(lines) == 2, lines
    failed, answered = lines
    assert failed.startswith(f"request {request_id} attempt 1 (attempt): route coder[0] account oa-1 ")
    assert "model up-coder -> 503 failed capacity (rule " in failed
    assert answered.startswith(f"request {request_id} attempt 2 (failover): route coder[1] account oa-2 ")
    assert "provider up-openai model up-coder-2 -> 200 ok in " in answered


async def test_nothing_is_logged_per_attempt_at_info(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    harness = await start_harness(fake, base_config(fake))
    try:
        with caplog.at_level(logging.INFO, logger="spillgate.dispatch"):
            reply = await harness.call("/v1/chat/completions", CHAT)
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
    assert reply.status == 200
    assert attempt_lines(caplog) == []
