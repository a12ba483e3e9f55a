"""Query parameters of the admin API: instants, time ranges, windows and limits.

An instant is epoch seconds (``1767225600``), an ISO-8601 time (``2026-01-01T00:00:00Z``; without a
zone it is UTC), ``now``, or a time relative to now (``15m``, ``24h``, ``7d``, ``-90s``: that long
ago). Every function raises :class:`~spillgate.admin.errors.AdminError` (400) naming the parameter.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

from spillgate.admin.errors import AdminError, bad_parameter
from spillgate.config.durations import duration_seconds

_EPOCH = re.compile(r"^\d+(?:\.\d+)?$")
_MS_THRESHOLD = 1e11
"""An epoch number above this (year 5138 in seconds) is milliseconds sent by mistake."""

INSTANT_HELP = (
    "expected epoch seconds, an ISO-8601 time (2026-01-01T00:00:00Z) or a relative time like 15m, 24h or 7d"
)


def query_params(query: str) -> dict[str, str]:
    """The query string as name -> last value (blank values kept)."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except ValueError as exc:
        raise AdminError(400, f"malformed query string: {exc}", "invalid_query") from None
    return {name: values[-1] for name, values in parsed.items()}


def duration(text: str, param: str) -> float:
    """A positive length of time: ``90s``, ``15m``, ``24h``, ``7d``, ``1w`` or a number of seconds."""
    seconds = duration_seconds(text)
    if seconds is None:
        raise bad_parameter(param, f"expected a duration like 90s, 15m, 24h or 7d, got {_quote(text)}")
    if not seconds > 0 or math.isinf(seconds):
        raise bad_parameter(param, f"a duration must be positive, got {_quote(text)}")
    return seconds


def instant(text: str, param: str, now: float) -> float:
    """Unix seconds for epoch seconds, an ISO-8601 time, ``now`` or a time relative to ``now``."""
    value = text.strip()
    lowered = value.lower()
    if lowered == "now":
        return now
    if _EPOCH.match(value):
        seconds = float(value)
        if seconds > _MS_THRESHOLD:
            raise bad_parameter(param, f"{_quote(text)} looks like milliseconds: send epoch seconds")
        return seconds
    relative = lowered.removeprefix("-")
    ago = None if _EPOCH.match(relative) else duration_seconds(relative)  # a relative time has a unit
    if ago is not None:
        return now - ago
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_parameter(param, f"{INSTANT_HELP}, got {_quote(text)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def time_range(
    since: str | None, until: str | None, now: float, default_span: float = 86400.0
) -> tuple[float, float]:
    """``[since, until)``: ``until`` defaults to now, ``since`` to ``default_span`` before ``until``."""
    end = now if until is None or not until.strip() else instant(until, "until", now)
    start = end - default_span if since is None or not since.strip() else instant(since, "since", now)
    if start >= end:
        raise bad_parameter(
            "since", f"the range is empty: since ({start:.0f}) must be before until ({end:.0f})"
        )
    return start, end


def limit(text: str | None, default: int, maximum: int, param: str = "limit") -> int:
    if text is None or not text.strip():
        return default
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise bad_parameter(param, f"expected a whole number from 1 to {maximum}, got {_quote(text)}")
    return min(int(value), maximum)


def choice(text: str | None, param: str, allowed: tuple[str, ...], default: str) -> str:
    if text is None or not text.strip():
        return default
    value = text.strip()
    if value not in allowed:
        raise bad_parameter(param, f"expected one of {', '.join(allowed)}, got {_quote(text)}")
    return value


def _quote(text: str) -> str:
    """The user's input, shortened, for an error message."""
    return repr(text if len(text) <= 60 else text[:57] + "...")
