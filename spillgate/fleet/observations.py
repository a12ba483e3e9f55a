"""Routing evidence every instance gathers, replayed on the others: how long a model has been out
(when to tell clients to stop retrying), failures that widen a scope (several models of one
credential, several credentials of one provider) and the loop signal's per-session history.

Each is the in-memory structure with its observations also published (pipelined, no round trip on
the request path); another instance applies an observation as if it had made it. What an
instance learned while the store was away stays its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spillgate.fleet.link import RedisLink
from spillgate.observe.loops import LoopDetector
from spillgate.resilience.outage import OutageBoard
from spillgate.resilience.scoping import ScopeEvidence, _Evidence
from spillgate.resilience.types import ErrorClass


class SharedOutages(OutageBoard):
    """An :class:`OutageBoard` whose outages every instance sees."""

    def __init__(self, link: RedisLink, stop_after: float, clock: Callable[[], float]) -> None:
        super().__init__(stop_after, clock=clock)
        self.link = link
        link.on("outage", self._received)

    def failed(self, model: str) -> float:
        out = super().failed(model)
        self.link.publish("outage", {"m": model, "for": out})
        return out

    def answered(self, model: str) -> None:
        if model in self._out:
            self.link.publish("outage", {"m": model, "for": None})
        super().answered(model)

    def _received(self, body: dict[str, Any]) -> None:
        model, out_for = body["m"], body["for"]
        if not isinstance(model, str):
            raise TypeError("model is not a string")
        if out_for is None:
            super().answered(model)
            return
        now = self._clock()
        since = now - float(out_for)
        mine = self._out.pop(model, None)
        if mine is not None and now - mine[1] <= self.quiet:
            since = min(since, mine[0])
        self._out[model] = (since, now)


class SharedEvidence(ScopeEvidence):
    """A :class:`ScopeEvidence` counting the failures of every instance."""

    def __init__(self, link: RedisLink, window: float, clock: Callable[[], float]) -> None:
        super().__init__(window, clock=clock)
        self.link = link
        link.on("evidence", self._received)
        link.on("evidence_clear", self._cleared)

    def _note(self, table: _Evidence, key: str, cls: ErrorClass, name: str, now: float) -> int:
        which = "owners" if table is self._owners else "providers"
        self.link.publish("evidence", {"w": which, "k": key, "c": cls.value, "n": name})
        return super()._note(table, key, cls, name, now)

    def record_success(self, owner: str, provider: str) -> None:
        if owner in self._owners or provider in self._providers:
            self.link.publish("evidence_clear", {"o": owner, "p": provider})
        super().record_success(owner, provider)

    def _received(self, body: dict[str, Any]) -> None:
        table = self._owners if body["w"] == "owners" else self._providers
        key, name = body["k"], body["n"]
        if not isinstance(key, str) or not isinstance(name, str):
            raise TypeError("key and name must be strings")
        super()._note(table, key, ErrorClass(body["c"]), name, self._clock())

    def _cleared(self, body: dict[str, Any]) -> None:
        self._owners.pop(str(body["o"]), None)
        self._providers.pop(str(body["p"]), None)


class SharedLoops(LoopDetector):
    """A :class:`LoopDetector` that sees a session's requests on every instance."""

    def __init__(self, link: RedisLink, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.link = link
        link.on("loop", self._received)

    def observe(self, session: str, fingerprint: int, ok: bool, cost: float | None = None) -> None:
        super().observe(session, fingerprint, ok, cost)
        self.link.publish("loop", {"s": session, "f": fingerprint, "ok": ok, "c": cost})

    def _received(self, body: dict[str, Any]) -> None:
        session = body["s"]
        if not isinstance(session, str):
            raise TypeError("session is not a string")
        cost = body.get("c")  # absent from an instance of an older version: unknown
        super().observe(session, int(body["f"]), bool(body["ok"]), None if cost is None else float(cost))
