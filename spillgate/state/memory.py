"""In-process state (the default store): in-flight counts and session affinity."""

from __future__ import annotations

from collections import OrderedDict


class InflightCounter:
    """Requests currently running against each account."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @property
    def local_counts(self) -> dict[str, int]:
        return self.counts

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
