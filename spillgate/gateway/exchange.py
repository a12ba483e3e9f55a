"""One client request on its way through the gateway, and the request's own bookkeeping."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

from spillgate.config.schema import ModelAlias, Route
from spillgate.http.server import ResponseWriter
from spillgate.protocols.request import ParsedRequest
from spillgate.resilience.types import Verdict

from .call import Outcome
from .translation import Translation

_ids = itertools.count(1)
_RUN = secrets.token_hex(4)
"""Request ids are ``sg-<run>-<n>``: unique across restarts, so the usage store can be searched by one."""


@dataclass(slots=True)
class Exchange:
    """One client request: what it asked, where it may go, and what its attempts came to."""

    parsed: ParsedRequest
    client_headers: dict[str, str]
    alias: ModelAlias
    routes: tuple[Route, ...]
    writer: ResponseWriter
    extra_headers: list[tuple[str, str]]
    client_key: str | None
    started: float
    """The runtime clock's time the request arrived (deadlines count from it)."""
    request_id: str = field(default_factory=lambda: f"sg-{_RUN}-{next(_ids)}")
    attempts: int = 0
    """Attempts made so far (counted as each one starts)."""
    failures: list[tuple[Verdict, Outcome]] = field(default_factory=list)
    """Failed attempts that count toward the final error, recorded by whoever judged them."""
    tried: list[str] = field(default_factory=list)
    """Route (and account) labels in the order attempted, for the final error."""
    cost: float | None = 0.0
    """The attempts' costs so far (USD; ``None`` once one billed attempt's price is unknown)."""
    wasted: float | None = 0.0
    cost_estimated: bool = False
    _translation: Translation | None = None

    @property
    def translation(self) -> Translation:
        """The request's translated forms (it decodes nothing until a translated route, or a route
        declaring restrictive capabilities, asks)."""
        found = self._translation
        if found is None:
            found = self._translation = Translation(self.parsed)
        return found

    def add_cost(self, cost: float | None, wasted: float | None, estimated: bool) -> None:
        """One reported attempt's cost, into the request's sum."""
        self.cost = None if cost is None or self.cost is None else self.cost + cost
        self.wasted = None if wasted is None or self.wasted is None else self.wasted + wasted
        self.cost_estimated = self.cost_estimated or estimated

    def failed(self, outcome: Outcome) -> None:
        """Record a judged failure toward the final error."""
        assert outcome.verdict is not None
        self.failures.append((outcome.verdict, outcome))


def estimate_tokens(body: bytes) -> int:
    """A cheap upper-side estimate of a request's prompt size (about 3.5 bytes a token)."""
    return int(len(body) / 3.5) + 1
