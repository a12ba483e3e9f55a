"""The pure decisions: next step after a failure, the most informative class, the final error."""

from __future__ import annotations

import pytest

from spillgate.protocols.apis import Api
from spillgate.protocols.errors import render_error
from spillgate.resilience.policy import Step, final_error, most_informative, next_step, no_route_error
from spillgate.resilience.types import ErrorClass as C

STEPS = [
    (C.CAPACITY, False, Step.FAIL_OVER),
    (C.OVERLOADED, False, Step.FAIL_OVER),
    (C.RATE_LIMITED, False, Step.FAIL_OVER),
    (C.QUOTA_EXHAUSTED, False, Step.FAIL_OVER),
    (C.AUTH, False, Step.FAIL_OVER),
    (C.NOT_FOUND, False, Step.FAIL_OVER),
    (C.UPSTREAM_ERROR, False, Step.RETRY_SAME),
    (C.UPSTREAM_ERROR, True, Step.FAIL_OVER),
    (C.RESET, False, Step.RETRY_SAME),
    (C.RESET, True, Step.FAIL_OVER),
    (C.CONNECT_FAILED, False, Step.FAIL_OVER),
    (C.TIMEOUT, False, Step.FAIL_OVER),
    (C.STREAM_CUT, False, Step.FAIL_OVER),
    (C.STREAM_STALL, False, Step.FAIL_OVER),
    (C.STREAM_MALFORMED, False, Step.FAIL_OVER),
    (C.CONTEXT_TOO_LONG, False, Step.LARGER_CONTEXT),
    (C.CONTENT_POLICY, False, Step.STOP),
    (C.BAD_REQUEST, False, Step.STOP),
]


@pytest.mark.parametrize(("cls", "retried", "step"), STEPS, ids=[f"{c.value}-{r}" for c, r, _ in STEPS])
def test_next_step(cls: C, retried: bool, step: Step) -> None:
    assert next_step(cls, retried_same=retried) is step


def test_every_class_has_a_step_and_a_rank() -> None:
    assert {c for c, _, _ in STEPS} == set(C)
    for cls in C:
        assert most_informative([cls, C.CONNECT_FAILED]) in (cls, C.CONNECT_FAILED)


@pytest.mark.parametrize(
    ("classes", "winner"),
    [
        ([C.CONNECT_FAILED, C.CAPACITY], C.CAPACITY),
        ([C.CAPACITY, C.RATE_LIMITED], C.RATE_LIMITED),
        ([C.TIMEOUT, C.OVERLOADED, C.RESET], C.OVERLOADED),
        ([C.QUOTA_EXHAUSTED, C.CAPACITY], C.QUOTA_EXHAUSTED),
        ([C.STREAM_CUT, C.UPSTREAM_ERROR], C.UPSTREAM_ERROR),
    ],
)
def test_most_informative(classes: list[C], winner: C) -> None:
    assert most_informative(classes) is winner


# api, class, retry_after -> status, OpenAI code / Anthropic type, Retry-After, x-should-retry
FINAL = [
    (Api.OPENAI_RESPONSES, C.CAPACITY, 3.2, 503, "server_error", "4", "true"),
    (Api.OPENAI_CHAT, C.OVERLOADED, None, 503, "server_error", None, "true"),
    (Api.ANTHROPIC_MESSAGES, C.CAPACITY, 2.0, 529, "overloaded_error", "2", "true"),
    (Api.OPENAI_RESPONSES, C.RATE_LIMITED, None, 429, "rate_limit_exceeded", "1", "true"),
    (Api.ANTHROPIC_MESSAGES, C.RATE_LIMITED, 7.0, 429, "rate_limit_error", "7", "true"),
    (Api.OPENAI_CHAT, C.QUOTA_EXHAUSTED, 3600.0, 429, "insufficient_quota", "3600", "false"),
    (Api.OPENAI_CHAT, C.QUOTA_EXHAUSTED, 30.0, 429, "insufficient_quota", "30", "true"),
    (Api.OPENAI_CHAT, C.AUTH, None, 503, "server_error", None, "false"),
    (Api.OPENAI_CHAT, C.CONTEXT_TOO_LONG, None, 400, "context_length_exceeded", None, "false"),
    (Api.OPENAI_CHAT, C.TIMEOUT, None, 504, "server_error", None, "true"),
    (Api.OPENAI_CHAT, C.CONNECT_FAILED, 1.0, 502, "server_error", "1", "true"),
    (Api.ANTHROPIC_MESSAGES, C.UPSTREAM_ERROR, None, 502, "api_error", None, "true"),
]


@pytest.mark.parametrize(("api", "cls", "after", "status", "code", "retry_after", "should_retry"), FINAL)
def test_final_error(
    api: Api, cls: C, after: float | None, status: int, code: str, retry_after: str | None, should_retry: str
) -> None:
    error = final_error(api, cls, "gpt-x", ["gpt-x[0]/oa-1", "gpt-x[1]"], after, "upstream said no")
    headers, body = render_error(api.family, error)
    h = dict(headers)
    assert error.status == status
    assert h.get("retry-after") == retry_after
    assert h["x-should-retry"] == should_retry
    text = body.decode()
    assert code in text
    assert "gpt-x" in text and "gpt-x[0]/oa-1" in text and "upstream said no" in text
    assert "server_is_overloaded" not in text and "slow_down" not in text
    if status == 429:
        assert retry_after is not None  # never a 429 without Retry-After


# class, the wait health announces -> the Retry-After sent with a 5 s cap
CAPPED = [
    (C.CAPACITY, 3.2, "4"),
    (C.CAPACITY, 20.0, "5"),  # the capacity cooldown grew: the client still hears a few seconds
    (C.OVERLOADED, 19.0, "5"),
    (C.UPSTREAM_ERROR, 12.0, "5"),
    (C.TIMEOUT, 30.0, "5"),
    (C.RATE_LIMITED, 42.0, "42"),  # a reset time the upstream announced: the truth
    (C.QUOTA_EXHAUSTED, 3600.0, "3600"),
]


@pytest.mark.parametrize(("cls", "after", "sent"), CAPPED, ids=[f"{c.value}-{a:g}" for c, a, _ in CAPPED])
def test_outage_retry_after_is_capped_limits_keep_theirs(cls: C, after: float, sent: str) -> None:
    error = final_error(Api.OPENAI_CHAT, cls, "gpt-x", ["gpt-x[0]"], after, cap=5.0)
    assert dict(render_error("openai", error)[0]).get("retry-after") == sent


# api, class -> status, code / type of the stop signal
STOPS = [
    (Api.OPENAI_RESPONSES, C.CAPACITY, 503, "server_is_overloaded"),  # Codex's own final error
    (Api.OPENAI_RESPONSES, C.TIMEOUT, 503, "server_is_overloaded"),
    (Api.OPENAI_CHAT, C.CAPACITY, 503, "server_error"),
    (Api.OPENAI_CHAT, C.UPSTREAM_ERROR, 503, "server_error"),
    (Api.ANTHROPIC_MESSAGES, C.OVERLOADED, 529, "overloaded_error"),
    (Api.ANTHROPIC_MESSAGES, C.STREAM_CUT, 529, "overloaded_error"),
]


@pytest.mark.parametrize(
    ("api", "cls", "status", "code"), STOPS, ids=[f"{a.value}-{c.value}" for a, c, *_ in STOPS]
)
def test_stop_signal(api: Api, cls: C, status: int, code: str) -> None:
    stop = "model 'gpt-x' has been unavailable for 2 min (every route failed)"
    error = final_error(api, cls, "gpt-x", ["gpt-x[0]"], 4.0, "at capacity", cap=5.0, stop=stop)
    headers, body = render_error(api.family, error)
    h = dict(headers)
    assert error.status == status
    assert h["x-should-retry"] == "false"  # the SDKs and Claude Code stop on it
    assert "retry-after" not in h  # Codex would space its last quick retries by it
    text = body.decode()
    assert code in text and stop in text and "gpt-x[0]" in text and "at capacity" in text


@pytest.mark.parametrize("cls", [C.RATE_LIMITED, C.QUOTA_EXHAUSTED, C.CONTEXT_TOO_LONG, C.AUTH])
def test_no_stop_signal_where_the_class_says_what_to_do(cls: C) -> None:
    plain = final_error(Api.OPENAI_RESPONSES, cls, "gpt-x", [], 30.0, cap=5.0)
    stopped = final_error(Api.OPENAI_RESPONSES, cls, "gpt-x", [], 30.0, cap=5.0, stop="out for 2 min")
    assert stopped == plain


def test_no_route_error_capped_and_stopped() -> None:
    error = no_route_error(Api.OPENAI_CHAT, "coder", "coder[0]: skipped", 40.0, cap=5.0, stop=None)
    assert (error.status, error.retry_after, error.should_retry) == (503, 5, True)
    assert "coder[0]: skipped" in error.message
    error = no_route_error(Api.OPENAI_RESPONSES, "coder", "coder[0]: skipped", 40.0, cap=5.0, stop="out")
    assert (error.status, error.retry_after, error.should_retry, error.code) == (
        503,
        None,
        False,
        "server_is_overloaded",
    )
