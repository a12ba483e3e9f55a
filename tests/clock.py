"""A hand-driven clock for the pure logic that takes one (``clock: Callable[[], float]``)."""

from __future__ import annotations


class FakeClock:
    """Returns ``now``; tests move it by assigning ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
