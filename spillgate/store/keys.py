"""Client keys made with ``spillgate keys create``, kept in the usage store's ``client_keys`` table.

Only the SHA-256 of a key is stored, with a short prefix so an operator can tell keys apart; the key
itself is shown once, when it is made. Revoking keeps the row (usage rows keep naming the key).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.config.schema import BudgetPeriod, ClientKey, KeyLimits
from spillgate.store.base import StoreError, UsageStore

PREFIX_CHARS = 10
"""How much of a key is kept in the clear (``sk-sg-AbCd``): enough to recognise it, useless to use."""

_COLUMNS = (
    "name, sha256, prefix, created_at, revoked_at, models, rpm, tpm, max_concurrent, "
    "token_budget, budget_period, spend_budget"
)


@dataclass(frozen=True, slots=True)
class StoredKey:
    name: str
    sha256: str
    prefix: str
    created_at: float
    revoked_at: float | None
    limits: KeyLimits

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def client_key(self) -> ClientKey:
        return ClientKey(name=self.name, sha256=self.sha256, limits=self.limits)


@dataclass(frozen=True, slots=True)
class KeyUse:
    """What a key's requests recorded in the store used since some time: what its budgets count."""

    tokens: int
    """Input + output tokens."""
    usd: float
    """Their cost (requests whose cost is unknown count 0)."""


NOTHING_USED = KeyUse(0, 0.0)


class KeyExists(StoreError):
    """A key of that name exists (or existed: names of revoked keys stay taken)."""


def _row(row: tuple[Any, ...]) -> StoredKey:
    name, digest, prefix, created, revoked, models, rpm, tpm, conc, budget, period, spend = row
    period_value: BudgetPeriod = period if period in ("day", "month", "total") else "month"
    return StoredKey(
        name=name,
        sha256=digest,
        prefix=prefix,
        created_at=float(created),
        revoked_at=None if revoked is None else float(revoked),
        limits=KeyLimits(
            models=None if models is None else frozenset(orjson.loads(models)),
            rpm=rpm,
            tpm=tpm,
            max_concurrent=conc,
            token_budget=budget,
            spend_budget=None if spend is None else float(spend),
            budget_period=period_value,
        ),
    )


class KeyRegistry:
    def __init__(self, store: UsageStore) -> None:
        self.store = store

    async def create(self, name: str, key: str, limits: KeyLimits) -> StoredKey:
        if await self.store.query("SELECT name FROM client_keys WHERE name = ?", (name,)):
            raise KeyExists(f"a client key named {name!r} exists already (names of revoked keys stay taken)")
        stored = StoredKey(
            name=name,
            sha256=hashlib.sha256(key.encode("utf-8")).hexdigest(),
            prefix=key[:PREFIX_CHARS],
            created_at=time.time(),
            revoked_at=None,
            limits=limits,
        )
        models = None if limits.models is None else orjson.dumps(sorted(limits.models)).decode()
        await self.store.execute(
            f"INSERT INTO client_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.name,
                stored.sha256,
                stored.prefix,
                stored.created_at,
                None,
                models,
                limits.rpm,
                limits.tpm,
                limits.max_concurrent,
                limits.token_budget,
                limits.budget_period,
                limits.spend_budget,
            ),
        )
        return stored

    async def all(self) -> list[StoredKey]:
        rows = await self.store.query(f"SELECT {_COLUMNS} FROM client_keys ORDER BY created_at, name")
        return [_row(r) for r in rows]

    async def active(self) -> tuple[ClientKey, ...]:
        rows = await self.store.query(
            f"SELECT {_COLUMNS} FROM client_keys WHERE revoked_at IS NULL ORDER BY name"
        )
        return tuple(_row(r).client_key() for r in rows)

    async def made_any(self) -> bool:
        """Whether any key was ever made here (revoked ones count)."""
        return bool(await self.store.query("SELECT name FROM client_keys LIMIT 1"))

    async def revoke(self, name: str) -> bool:
        """``True`` if an active key of that name was revoked."""
        changed = await self.store.execute(
            "UPDATE client_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)
        )
        return changed > 0

    async def budget_used(self, periods: list[tuple[str, float]]) -> dict[str, KeyUse]:
        """The tokens and the cost recorded for each ``(key name, since)``."""
        used: dict[str, KeyUse] = {}
        for name, since in periods:
            rows = await self.store.query(
                "SELECT COALESCE(SUM(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)), 0), "
                "COALESCE(SUM(cost_usd), 0) FROM requests WHERE client_key = ? AND time >= ?",
                (name, since),
            )
            used[name] = KeyUse(int(rows[0][0]), float(rows[0][1])) if rows else NOTHING_USED
        return used
