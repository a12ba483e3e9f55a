"""Since when a model has been out: every request for it failed, none was answered in between.

A real outage must reach the human. Clients that honour ``Retry-After`` retry for minutes; once
a model has been out for ``stop_after`` the gateway tells each client to stop (see
:func:`spillgate.resilience.policy.final_error`). An outage starts with a request whose every
route failed, ends with any answered request for that model, and is forgotten when no request
failed for :data:`QUIET` seconds or ``stop_after``, whichever is longer (then nobody was waiting on
it: a later failure starts a new one).

Pure logic on an injected clock; at most :data:`MAX_MODELS` models tracked (oldest first out).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_MODELS = 1024
QUIET = 60.0
"""Seconds without a failed request after which an outage is forgotten (at least)."""


class OutageBoard:
    __slots__ = ("_clock", "_out", "stop_after")

    def __init__(self, stop_after: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not stop_after > 0:
            raise ValueError(f"stop_after must be positive, got {stop_after!r}")
        self.stop_after = stop_after
        self._clock = clock
        self._out: dict[str, tuple[float, float]] = {}
        """model -> (first failure, latest failure) of the running outage."""

    def __len__(self) -> int:
        return len(self._out)

    def failed(self, model: str) -> float:
        """A request for ``model`` failed on every route: how long the model has been out now."""
        now = self._clock()
        since, last = self._out.pop(model, (now, now))
        if now - last > self.quiet:
            since = now
        while len(self._out) >= MAX_MODELS:
            del self._out[next(iter(self._out))]
        self._out[model] = (since, now)
        return now - since

    def answered(self, model: str) -> None:
        """A request for ``model`` was answered: its outage is over. Free when none is running."""
        if self._out:
            self._out.pop(model, None)

    def out_for(self, model: str) -> float | None:
        """Seconds ``model`` has been out, or ``None`` when it is not (or no longer known to be)."""
        entry = self._out.get(model)
        if entry is None:
            return None
        now = self._clock()
        since, last = entry
        if now - last > self.quiet:
            return None
        return now - since

    @property
    def quiet(self) -> float:
        return max(QUIET, self.stop_after)

    def should_stop(self, out_for: float) -> bool:
        return out_for >= self.stop_after
