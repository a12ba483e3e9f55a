"""Human durations: parse ``250ms``, ``5s``, ``2m``, ``7d`` or seconds; say ``45 s``, ``12 min``.

The one grammar lives in :mod:`spillgate.validation` (the fake upstream's behaviours read
durations too, below ``config``); it is re-exported here for the config-side callers.
"""

from __future__ import annotations

import math

from spillgate.validation import duration_seconds, parse_duration

__all__ = ["duration_seconds", "format_wait", "parse_duration"]


def format_wait(seconds: float) -> str:
    """``1 s``, ``45 s``, ``12 min``, ``3 h 20 min`` (rounded up to whole seconds/minutes)."""
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
