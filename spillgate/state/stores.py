"""Interfaces of the per-account state the request path shares: in-flight counts and session
affinity. :mod:`spillgate.state.memory` holds the in-process implementations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class InflightStore(Protocol):
    """Requests running against each account (``max_concurrency`` reads it)."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Account id → requests in flight (accounts with none are absent)."""
        ...

    @property
    def local_counts(self) -> Mapping[str, int]:
        """This process's own requests in flight (what its ``/metrics`` adds to the others')."""
        ...

    def acquire(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...


class AffinityStore(Protocol):
    """Session key → the account its requests keep to."""

    def get(self, session: str) -> str | None: ...

    def bind(self, session: str, account: str) -> None: ...

    def __len__(self) -> int: ...
