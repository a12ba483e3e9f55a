"""Record builders shared by the store tests and the crash script."""

from __future__ import annotations

from typing import Any

from spillgate.observe.events import AttemptFinished, RequestFinished
from spillgate.store import AttemptRecord, RequestRecord


def request(i: int = 0, **over: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "time": 1_700_000_000.0 + i,
        "request_id": f"req-{i}",
        "client_key": "team",
        "client_app": "codex_cli_rs/0.50.0",
        "session": f"sess-{i % 3}",
        "public_model": "gpt-5.3-codex",
        "route": "gpt-5.3-codex[0]",
        "account": "oa-1",
        "upstream_model": "gpt-5.3-codex",
        "api": "openai-responses",
        "stream": True,
        "status": 200,
        "error_class": None,
        "attempts": 1,
        "latency_ms": 100.0 + i,
        "ttft_ms": 20.5,
        "input_tokens": 1000,
        "output_tokens": 50,
        "cached_tokens": 800,
        "recovered": None,
    }
    values.update(over)
    return RequestRecord(**values)


def attempt(i: int = 0, n: int = 1, **over: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "time": 1_700_000_000.0 + i,
        "request_id": f"req-{i}",
        "attempt": n,
        "route": "gpt-5.3-codex[0]",
        "provider": "openai",
        "account": "oa-1",
        "upstream_model": "gpt-5.3-codex",
        "ok": True,
        "status": 200,
        "error_class": None,
        "scope": None,
        "rule": None,
        "phase": None,
        "kind": "attempt",
        "latency_ms": 90.0 + i,
        "first_byte_ms": 15.25,
    }
    values.update(over)
    return AttemptRecord(**values)


def request_event(**over: Any) -> RequestFinished:
    values: dict[str, Any] = {
        "request_id": "e1",
        "api": "openai-chat",
        "public_model": "m",
        "client_key": "team",
        "stream": True,
        "ok": True,
        "status": 200,
        "attempts": 2,
        "route": "m[1]",
        "account": "a",
        "upstream_model": "u",
        "error_class": None,
        "latency": 1.25,
        "first_token": 0.5,
        "recovered": None,
        "input_tokens": 10,
        "output_tokens": 3,
        "cached_tokens": 4,
        "session": "s",
        "client_app": "claude-cli/2.0",
    }
    values.update(over)
    return RequestFinished(**values)


def attempt_event(**over: Any) -> AttemptFinished:
    values: dict[str, Any] = {
        "request_id": "e1",
        "attempt": 1,
        "api": "openai-chat",
        "public_model": "m",
        "route": "m[0]",
        "provider": "p",
        "account": None,
        "upstream_model": "u",
        "stream": True,
        "ok": False,
        "status": 429,
        "error_class": "rate_limited",
        "scope": "account",
        "rule": "r",
        "phase": "headers",
        "latency": 0.2,
        "first_byte": None,
        "kind": "attempt",
    }
    values.update(over)
    return AttemptFinished(**values)
