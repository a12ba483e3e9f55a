"""Waits: jittered exponential backoff, and the waits upstreams announce in their headers."""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 86_400
"""The longest ``Retry-After`` we send (seconds); longer waits (and "forever") are said as this."""

_MAX_EXPONENT = 64


def backoff_delay(
    retry_number: int, base: float = 0.25, cap: float = 4.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry ``retry_number`` (0 for the first retry).

    ``base * 2**retry_number`` capped at ``cap``, then jittered uniformly over [0.5x, 1.5x] of
    that and capped again, so concurrent retries spread out instead of arriving together.
    """
    exponent = min(max(retry_number, 0), _MAX_EXPONENT)
    delay = min(cap, base * 2.0**exponent)
    jitter = rng.uniform(0.5, 1.5) if rng is not None else random.uniform(0.5, 1.5)
    return max(0.0, min(cap, delay * jitter))


def format_retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1, at most a day."""
    if math.isnan(seconds) or seconds <= 1:
        return "1"
    if seconds >= MAX_RETRY_AFTER:
        return str(MAX_RETRY_AFTER)
    return str(math.ceil(seconds))


# OpenAI: reset header -> its remaining header (Go-style durations, e.g. "6m0s").
_OPENAI_RESETS = (
    ("x-ratelimit-reset-requests", "x-ratelimit-remaining-requests"),
    ("x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"),
)
# Anthropic: reset header -> its remaining header (RFC 3339 timestamps).
_ANTHROPIC_RESETS = (
    ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-requests-remaining"),
    ("anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining"),
    ("anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-input-tokens-remaining"),
    ("anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-output-tokens-remaining"),
)


def retry_after(headers: Mapping[str, str], now_wall: float | None = None) -> float | None:
    """Seconds to wait as announced by the upstream, or ``None`` when it announced nothing usable.

    In order: ``retry-after-ms``, ``retry-after`` (delta seconds or an HTTP-date), then the
    rate-limit reset headers of OpenAI and Anthropic. Among the reset headers, those whose
    limit is exhausted (its ``remaining`` header is 0) decide, the longest of them; when no
    limit says it is exhausted, the longest reset. Garbage values are skipped; waits in the
    past are 0. ``now_wall`` is the wall clock (``time.time()``) for dates. Never raises.
    """
    try:
        now = time.time() if now_wall is None else now_wall
        ms = _number(headers.get("retry-after-ms"))
        if ms is not None:
            return max(0.0, ms / 1000.0)
        value = headers.get("retry-after")
        seconds = _number(value)
        if seconds is None:
            seconds = _http_date(value, now)
        if seconds is not None:
            return max(0.0, seconds)
        return _reset_headers(headers, now)
    except Exception:  # a header parser must never break the request path
        return None


def _reset_headers(headers: Mapping[str, str], now: float) -> float | None:
    exhausted: list[float] = []
    others: list[float] = []
    for reset, remaining in _OPENAI_RESETS:
        seconds = _go_duration(headers.get(reset))
        if seconds is not None:
            (exhausted if _is_zero(headers.get(remaining)) else others).append(seconds)
    for reset, remaining in _ANTHROPIC_RESETS:
        seconds = _rfc3339(headers.get(reset), now)
        if seconds is not None:
            (exhausted if _is_zero(headers.get(remaining)) else others).append(seconds)
    chosen = exhausted or others
    return max(0.0, max(chosen)) if chosen else None


def _number(value: object) -> float | None:
    """A finite decimal number, or ``None``."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _is_zero(value: object) -> bool:
    number = _number(value)
    return number is not None and number <= 0


def _http_date(value: object, now: float) -> float | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


# Go's time.Duration.String(): "1h2m3.5s", "6m0s", "20ms", "1.5µs", "0s"; also a bare "0".
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(value: object) -> float | None:
    """Seconds from a Go duration string; a bare number is taken as seconds."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    plain = _number(text)
    if plain is not None:
        return plain
    if not _GO_DURATION.fullmatch(text):
        return None
    seconds = sum(float(n) * _GO_UNIT[unit] for n, unit in _GO_PART.findall(text))
    if not math.isfinite(seconds):
        return None
    return -seconds if text.startswith("-") else seconds


_LONG_FRACTION = re.compile(r"(\.\d{7,})")


def _rfc3339(value: object, now: float) -> float | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    text = _LONG_FRACTION.sub(lambda m: m.group(1)[:7], text)  # datetime keeps microseconds only
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now
