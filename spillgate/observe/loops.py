"""The "loop" signal: sessions whose requests keep failing, or keep repeating the same body — and
what each such session spent in the window (a loop of an agent is money burnt)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from spillgate.observe.events import Event, RequestFinished


@dataclass(frozen=True, slots=True)
class LoopReport:
    session: str
    reason: str
    """``failing`` (most requests in the window failed) or ``repeating`` (the same body again and again)."""
    count: int
    cost_usd: float = 0.0
    """What the session's requests in the window cost (USD), those of unknown cost left out."""
    unpriced: int = 0
    """The session's requests in the window whose cost is unknown."""


_Seen = tuple[float, int, bool, float | None]
"""One request: when, its body's fingerprint, whether it succeeded, what it cost."""


class LoopDetector:
    """Watches each session's last ``window`` seconds; bounded to ``max_sessions`` (LRU)."""

    def __init__(
        self,
        window: float = 60.0,
        threshold: int = 5,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.threshold = threshold
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, deque[_Seen]] = OrderedDict()
        self.detections = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RequestFinished) and event.session:
            self.observe(event.session, event.fingerprint or 0, event.ok, event.cost_usd)

    def observe(self, session: str, fingerprint: int, ok: bool, cost: float | None = None) -> None:
        """One finished request of ``session`` (here, or on another instance of a shared store);
        ``cost``: what it cost (USD), ``None`` when unknown."""
        now = self._clock()
        history = self._sessions.get(session)
        if history is None:
            history = self._sessions[session] = deque(maxlen=64)
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session)
        before = self._verdict(session, history, now)
        history.append((now, fingerprint, ok, cost))
        if before is None and self._verdict(session, history, now) is not None:
            self.detections += 1

    def _verdict(self, session: str, history: deque[_Seen], now: float) -> LoopReport | None:
        while history and history[0][0] < now - self.window:
            history.popleft()
        failures = sum(1 for _, _, ok, _ in history if not ok)
        if failures >= self.threshold:
            return _report(session, "failing", failures, history)
        counts: dict[int, int] = {}
        for _, fingerprint, _, _ in history:
            if fingerprint:
                counts[fingerprint] = counts.get(fingerprint, 0) + 1
        repeated = max(counts.values(), default=0)
        if repeated >= self.threshold:
            return _report(session, "repeating", repeated, history)
        return None

    def looping(self) -> list[LoopReport]:
        now = self._clock()
        out = []
        for session, history in list(self._sessions.items()):
            report = self._verdict(session, history, now)
            if report is not None:
                out.append(report)
            elif not history:
                del self._sessions[session]
        return out


def _report(session: str, reason: str, count: int, history: deque[_Seen]) -> LoopReport:
    costs = [cost for _, _, _, cost in history]
    known = sum(c for c in costs if c is not None)
    return LoopReport(session, reason, count, known, sum(1 for c in costs if c is None))
