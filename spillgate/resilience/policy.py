"""Pure decisions: after a failure, what next; when everything failed, what the client is told."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

from spillgate.protocols.apis import Api
from spillgate.protocols.errors import ErrorKind, GatewayError
from spillgate.resilience.types import ErrorClass


class Step(Enum):
    RETRY_SAME = "retry_same"
    """Once, after a backoff: a 500 or a reset before headers may be a blip."""
    FAIL_OVER = "fail_over"
    """Mark the scope, try the next account or route."""
    LARGER_CONTEXT = "larger_context"
    """Only a route with a larger context window can take this request."""
    STOP = "stop"
    """The request itself is the problem: the upstream's answer goes back to the client."""


_RETRY_SAME = frozenset({ErrorClass.UPSTREAM_ERROR, ErrorClass.RESET})
_STOP = frozenset({ErrorClass.CONTENT_POLICY, ErrorClass.BAD_REQUEST})


def next_step(error_class: ErrorClass, *, retried_same: bool) -> Step:
    """What to do after a failed attempt (before anything reached the client)."""
    if error_class in _STOP:
        return Step.STOP
    if error_class is ErrorClass.CONTEXT_TOO_LONG:
        return Step.LARGER_CONTEXT
    if error_class in _RETRY_SAME and not retried_same:
        return Step.RETRY_SAME
    return Step.FAIL_OVER


# Most informative first: when several attempts failed differently, the client hears about
# the one that best explains the situation and best tells it when to come back.
_INFORMATIVE = (
    ErrorClass.QUOTA_EXHAUSTED,
    ErrorClass.RATE_LIMITED,
    ErrorClass.CAPACITY,
    ErrorClass.OVERLOADED,
    ErrorClass.CONTEXT_TOO_LONG,
    ErrorClass.AUTH,
    ErrorClass.NOT_FOUND,
    ErrorClass.TIMEOUT,
    ErrorClass.UPSTREAM_ERROR,
    ErrorClass.STREAM_STALL,
    ErrorClass.STREAM_CUT,
    ErrorClass.STREAM_MALFORMED,
    ErrorClass.RESET,
    ErrorClass.CONNECT_FAILED,
    ErrorClass.CONTENT_POLICY,
    ErrorClass.BAD_REQUEST,
)
_RANK = {c: i for i, c in enumerate(_INFORMATIVE)}


def most_informative(classes: Sequence[ErrorClass]) -> ErrorClass:
    return min(classes, key=lambda c: _RANK.get(c, len(_RANK)))


SDK_MAX_RETRY_AFTER = 60.0
"""Above this, SDKs give up instead of waiting (openai: 60 s); we then say "do not retry"."""


def final_error(
    api: Api,
    error_class: ErrorClass,
    model: str,
    tried: Sequence[str],
    retry_after: float | None,
    detail: str = "",
    note: str = "",
) -> GatewayError:
    """The client-aware answer when every attempt failed.

    Never ``server_is_overloaded`` / ``slow_down`` (Codex shows "Selected model is at
    capacity" and stops); never a 429 without ``Retry-After`` (Codex stops at once).
    """
    what = ", ".join(tried) if tried else "no route could be tried"
    after = None if retry_after is None or math.isinf(retry_after) else max(1, math.ceil(retry_after))
    suffix = (f"; upstream said: {detail}" if detail else "") + (f"; {note}" if note else "")
    if error_class in (ErrorClass.CAPACITY, ErrorClass.OVERLOADED):
        anthropic = api is Api.ANTHROPIC_MESSAGES
        return GatewayError(
            529 if anthropic else 503,
            ErrorKind.OVERLOADED,
            f"model '{model}' is out of capacity (tried {what}){suffix}",
            code="server_error",
            retry_after=after,
            should_retry=True,
        )
    if error_class is ErrorClass.RATE_LIMITED:
        return GatewayError(
            429,
            ErrorKind.RATE_LIMITED,
            f"model '{model}' is rate limited (tried {what}){suffix}",
            code="rate_limit_exceeded",
            retry_after=after or 1,
            should_retry=True,
        )
    if error_class is ErrorClass.QUOTA_EXHAUSTED:
        wait = after or 60
        return GatewayError(
            429,
            ErrorKind.QUOTA,
            f"every account serving model '{model}' is out of quota ({what}){suffix}",
            code="insufficient_quota",
            retry_after=wait,
            should_retry=wait <= SDK_MAX_RETRY_AFTER,
        )
    if error_class is ErrorClass.AUTH:
        return GatewayError(
            503,
            ErrorKind.UPSTREAM_UNAVAILABLE,
            f"the upstream rejected the gateway's credentials for model '{model}' ({what}){suffix}; "
            "an operator must fix the account",
            code="server_error",
            should_retry=False,
        )
    if error_class is ErrorClass.CONTEXT_TOO_LONG:
        return GatewayError(
            400,
            ErrorKind.INVALID_REQUEST,
            f"the request is longer than the context window of every route of model '{model}' "
            f"({what}){suffix}",
            code="context_length_exceeded",
            should_retry=False,
        )
    timeout = error_class in (ErrorClass.TIMEOUT, ErrorClass.STREAM_STALL)
    return GatewayError(
        504 if timeout else 502,
        ErrorKind.UPSTREAM_TIMEOUT if timeout else ErrorKind.UPSTREAM_UNAVAILABLE,
        f"model '{model}' failed (tried {what}){suffix}",
        code="server_error",
        retry_after=after,
        should_retry=True,
    )
