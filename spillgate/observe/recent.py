"""A small in-memory record of recent failures: per route and account, and overall.

An event observer (it runs on the event loop for every attempt and request): only failures do
any work, an append to a bounded deque. It answers "what went wrong lately on this route /
account" for the admin health view, and "the last failures" when no usage store is configured.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from spillgate.observe.events import AttemptFinished, Event, RequestFinished


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    time: float
    """Unix time (seconds) the failure was reported."""
    request_id: str
    public_model: str
    route: str
    provider: str
    account: str | None
    upstream_model: str
    status: int | None
    error_class: str | None
    scope: str | None
    rule: str | None
    phase: str | None
    kind: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class FailedRequest:
    time: float
    request_id: str
    public_model: str
    client_key: str | None
    client_app: str | None
    status: int
    error_class: str | None
    attempts: int
    route: str | None
    account: str | None
    latency_ms: float


_Failure = TypeVar("_Failure", FailedAttempt, FailedRequest)


class RecentFailures:
    """The last ``per_member`` failed attempts of each (route, account), and the last ``overall``
    failed attempts and requests; at most ``max_members`` (route, account) pairs (LRU)."""

    def __init__(
        self,
        per_member: int = 8,
        overall: int = 200,
        max_members: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_member = per_member
        self.max_members = max_members
        self._clock = clock
        self._members: OrderedDict[tuple[str, str | None], deque[FailedAttempt]] = OrderedDict()
        self.attempts: deque[FailedAttempt] = deque(maxlen=overall)
        self.requests: deque[FailedRequest] = deque(maxlen=overall)

    def __call__(self, event: Event) -> None:
        if event.ok:
            return
        if isinstance(event, AttemptFinished):
            self._attempt(event)
        elif isinstance(event, RequestFinished):
            self.requests.append(
                FailedRequest(
                    time=self._clock(),
                    request_id=event.request_id,
                    public_model=event.public_model,
                    client_key=event.client_key,
                    client_app=event.client_app,
                    status=event.status,
                    error_class=event.error_class,
                    attempts=event.attempts,
                    route=event.route,
                    account=event.account,
                    latency_ms=event.latency * 1000.0,
                )
            )

    def _attempt(self, event: AttemptFinished) -> None:
        note = FailedAttempt(
            time=self._clock(),
            request_id=event.request_id,
            public_model=event.public_model,
            route=event.route,
            provider=event.provider,
            account=event.account,
            upstream_model=event.upstream_model,
            status=event.status,
            error_class=event.error_class,
            scope=event.scope,
            rule=event.rule,
            phase=event.phase,
            kind=event.kind,
            latency_ms=event.latency * 1000.0,
        )
        self.attempts.append(note)
        member = (event.route, event.account)
        notes = self._members.get(member)
        if notes is None:
            notes = self._members[member] = deque(maxlen=self.per_member)
            if len(self._members) > self.max_members:
                self._members.popitem(last=False)
        else:
            self._members.move_to_end(member)
        notes.append(note)

    def for_member(self, route: str, account: str | None) -> list[FailedAttempt]:
        """Recent failed attempts of ``account`` (``None``: the provider key) on ``route``, newest first."""
        notes = self._members.get((route, account))
        return list(reversed(notes)) if notes else []

    def failed_attempts(self, limit: int, since: float | None = None) -> list[FailedAttempt]:
        """Newest first."""
        return _newest(self.attempts, limit, since)

    def failed_requests(self, limit: int, since: float | None = None) -> list[FailedRequest]:
        """Newest first."""
        return _newest(self.requests, limit, since)


def _newest(items: deque[_Failure], limit: int, since: float | None) -> list[_Failure]:
    out: list[_Failure] = []
    for item in reversed(items):
        if len(out) >= limit or (since is not None and item.time < since):
            break
        out.append(item)
    return out
