"""Human durations: parse ``250ms``, ``5s``, ``2m``, ``7d`` or seconds; say ``45 s``, ``12 min``."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration_seconds(text: str) -> float | None:
    """The one duration grammar (config values, admin query parameters): ``250ms``, ``5s``,
    ``2m``, ``1h``, ``7d``, ``1w`` or a bare number of seconds; ``None`` if ``text`` is not one."""
    m = _DURATION.match(text)
    if m is None:
        return None
    unit = m.group(2)
    return float(m.group(1)) * (_UNIT[unit.lower()] if unit else 1.0)


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ValueError with a message saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5s or 250ms, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (parsed := duration_seconds(value)) is not None:
        seconds = parsed
    else:
        raise ValueError(f"expected a duration like 5s, 250ms or 2m, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def format_wait(seconds: float) -> str:
    """``1 s``, ``45 s``, ``12 min``, ``3 h 20 min`` (rounded up to whole seconds/minutes)."""
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
