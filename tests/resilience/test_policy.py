"""The pure decisions: next step after a failure, the most informative class, the final error."""

from __future__ import annotations

import pytest

from spillgate.protocols.apis import Api
from spillgate.protocols.errors import render_error
from spillgate.resilience.policy import Step, final_error, most_informative, next_step
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
