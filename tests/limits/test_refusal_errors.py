"""How each client-limit refusal reaches the client (:func:`spillgate.gateway.auth.refusal_error`)."""

from __future__ import annotations

import pytest

from spillgate.config.schema import KeyLimits
from spillgate.gateway.auth import refusal_error
from spillgate.limits.limiter import Refusal, budget_refusal, rpm_refusal, spend_refusal
from spillgate.protocols.errors import ErrorKind

_DAY = KeyLimits(token_budget=1000, spend_budget=50.0, budget_period="day")
_TOTAL = KeyLimits(spend_budget=50.0, budget_period="total")


@pytest.mark.parametrize(
    ("refusal", "status", "kind", "code", "retry_after", "should_retry"),
    [
        (Refusal("model", "no", None), 403, ErrorKind.PERMISSION, "model_not_allowed", None, False),
        (budget_refusal(_DAY, 3600.0, 0.0), 429, ErrorKind.QUOTA, "insufficient_quota", 3600, False),
        (spend_refusal(_DAY, 3600.0, 0.0), 429, ErrorKind.QUOTA, "insufficient_quota", 3600, False),
        (spend_refusal(_TOTAL, None, 0.0), 429, ErrorKind.QUOTA, "insufficient_quota", None, False),
        (rpm_refusal(60, 2.5), 429, ErrorKind.RATE_LIMITED, "rate_limit_exceeded", 3, True),
    ],
)
def test_refusal_errors(
    refusal: Refusal, status: int, kind: ErrorKind, code: str, retry_after: int | None, should_retry: bool
) -> None:
    error = refusal_error(refusal)
    assert (error.status, error.kind, error.code, error.retry_after, error.should_retry) == (
        status,
        kind,
        code,
        retry_after,
        should_retry,
    )
    assert error.message == refusal.message
