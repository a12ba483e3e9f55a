"""Human durations: parse ``250ms``, ``5s``, ``2m`` or a bare number of seconds; say ``45 s``, ``12 min``."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ValueError with a message saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5s or 250ms, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
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
