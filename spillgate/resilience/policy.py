"""Pure decisions: after a failure, what next; when everything failed, what the client is told."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

from spillgate.protocols.adapter import adapter_for
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

LIMIT_CLASSES = frozenset({ErrorClass.RATE_LIMITED, ErrorClass.QUOTA_EXHAUSTED})
"""Limits with a reset time: their final errors keep the true ``Retry-After`` and are never
turned into a stop signal (waiting is the right thing for the client to do)."""
NOT_OUTAGES = frozenset(
    {ErrorClass.CONTEXT_TOO_LONG, ErrorClass.CONTENT_POLICY, ErrorClass.BAD_REQUEST, *LIMIT_CLASSES}
)
"""Final classes that do not say the model is out: every other one counts toward an outage."""


def _after(retry_after: float | None, cap: float | None) -> int | None:
    if retry_after is None or math.isinf(retry_after):
        return None
    if cap is not None:
        retry_after = min(retry_after, cap)
    return max(1, math.ceil(retry_after))


def final_error(
    api: Api,
    error_class: ErrorClass,
    model: str,
    tried: Sequence[str],
    retry_after: float | None,
    detail: str = "",
    note: str = "",
    *,
    cap: float | None = None,
    stop: str | None = None,
) -> GatewayError:
    """The client-aware answer when every attempt failed.

    ``cap``: the longest ``Retry-After`` sent for an outage (rate limits and quotas keep their
    true reset time). ``stop``: the model has been out so long that the client should stop
    retrying and tell its user (this text says why): ``x-should-retry: false`` for the SDKs and
    Claude Code; on the Responses API ``server_is_overloaded``, which Codex (deaf to that header)
    takes as final with its own "Selected model is at capacity. Please try a different model.".
    Until then never ``server_is_overloaded`` / ``slow_down``; never a 429 without ``Retry-After``
    (Codex stops at once).
    """
    what = ", ".join(tried) if tried else "no route could be tried"
    after = _after(retry_after, None if error_class in LIMIT_CLASSES else cap)
    suffix = (f"; upstream said: {detail}" if detail else "") + (f"; {note}" if note else "")
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
    if error_class is ErrorClass.CONTEXT_TOO_LONG:
        return GatewayError(
            400,
            ErrorKind.INVALID_REQUEST,
            f"the request is longer than the context window of every route of model '{model}' "
            f"({what}){suffix}",
            code="context_length_exceeded",
            should_retry=False,
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
    if stop is not None:
        return stop_error(api, f"{stop} (tried {what}){suffix}")
    if error_class in (ErrorClass.CAPACITY, ErrorClass.OVERLOADED):
        return GatewayError(
            adapter_for(api).capacity_status,
            ErrorKind.OVERLOADED,
            f"model '{model}' is out of capacity (tried {what}){suffix}",
            code="server_error",
            retry_after=after,
            should_retry=True,
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


def no_route_error(
    api: Api, model: str, reasons: str, retry_after: float | None, *, cap: float | None, stop: str | None
) -> GatewayError:
    """Every route was refused before any attempt (disabled, busy, too small)."""
    message = f"no route of model '{model}' can take the request now ({reasons})"
    if stop is not None:
        return stop_error(api, f"{stop}; {message}")
    return GatewayError(
        503,
        ErrorKind.UPSTREAM_UNAVAILABLE,
        message,
        code="server_error",
        retry_after=_after(retry_after, cap) or 1,
        should_retry=True,
    )


def stop_error(api: Api, message: str) -> GatewayError:
    """Stop retrying, in each client's own terms (see :func:`final_error`). No ``Retry-After``:
    Codex spaces its last quick transport retries by it."""
    adapter = adapter_for(api)
    return GatewayError(
        adapter.capacity_status, ErrorKind.OVERLOADED, message, code=adapter.stop_code, should_retry=False
    )
