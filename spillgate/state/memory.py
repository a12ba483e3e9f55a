"""In-process state (the default store): health cooldowns, in-flight counts, session affinity."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float
    """Monotonic time; ``inf`` means until an operator re-enables it."""
    reason: str


class HealthState:
    """Which scopes (accounts, routes) are unavailable, until when and why."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cooldowns: dict[str, Cooldown] = {}

    def mark_unavailable(self, scope: str, seconds: float, reason: str) -> None:
        until = self._clock() + seconds
        current = self._cooldowns.get(scope)
        if current is None or current.until < until:
            self._cooldowns[scope] = Cooldown(until, reason)

    def mark_available(self, scope: str) -> None:
        self._cooldowns.pop(scope, None)

    def is_available(self, scope: str) -> bool:
        cooldown = self._cooldowns.get(scope)
        if cooldown is None:
            return True
        if cooldown.until <= self._clock():
            del self._cooldowns[scope]
            return True
        return False

    def cooldown(self, scope: str) -> Cooldown | None:
        return None if self.is_available(scope) else self._cooldowns.get(scope)


class InflightCounter:
    """Requests currently running against each account."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def release(self, key: str) -> None:
        left = self.counts.get(key, 0) - 1
        if left > 0:
            self.counts[key] = left
        else:
            self.counts.pop(key, None)


class SessionAffinity:
    """Session key → account id, least recently used forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._bindings: OrderedDict[str, str] = OrderedDict()

    def get(self, session: str) -> str | None:
        account = self._bindings.get(session)
        if account is not None:
            self._bindings.move_to_end(session)
        return account

    def bind(self, session: str, account: str) -> None:
        self._bindings[session] = account
        self._bindings.move_to_end(session)
        if len(self._bindings) > self._capacity:
            self._bindings.popitem(last=False)

    def __len__(self) -> int:
        return len(self._bindings)


def account_scope(account_id: str) -> str:
    return f"account:{account_id}"
