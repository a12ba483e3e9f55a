"""The embedded default: SQLite in WAL mode, migrated automatically on open."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from spillgate.store.base import ThreadedStore, multi_row_inserts, pending_migrations

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


def connect_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL loses nothing on a process crash (only on a power loss / OS crash).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate_sqlite(conn: sqlite3.Connection) -> list[str]:
    """Apply the missing migrations in one transaction; returns ``["0001_usage", ...]``."""
    applied: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_MIGRATIONS_TABLE)
        done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for migration in pending_migrations(done):
            for statement in migration.statements("sqlite"):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(f"{migration.version:04d}_{migration.name}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def sqlite_version(conn: sqlite3.Connection) -> int | None:
    try:
        (version,) = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if version is None else int(version)


class SqliteStore(ThreadedStore):
    """``SqliteStore("/var/lib/spillgate/usage.db")``; the file and its directory are created."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"sqlite:{self.path}" if not Path(self.path).is_absolute() else f"sqlite://{self.path}"
        )
        conn = connect_sqlite(self.path)
        try:
            migrate_sqlite(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _connect(self) -> Any:
        return connect_sqlite(self.path)

    def _write_sync(
        self, conn: Any, requests: list[tuple[Any, ...]], attempts: list[tuple[Any, ...]]
    ) -> None:
        conn.execute("BEGIN")
        try:
            for sql, params in multi_row_inserts(requests, attempts):
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _p50_sql(self, column: str) -> str:
        return (
            f"SELECT k, latency_ms FROM (SELECT {column} AS k, latency_ms, "
            f"ROW_NUMBER() OVER (PARTITION BY {column} ORDER BY latency_ms) AS rn, "
            f"COUNT(*) OVER (PARTITION BY {column}) AS n "
            "FROM requests WHERE time >= ? AND time < ?) WHERE rn = (n + 1) / 2"
        )

    def _bucket_sql(self) -> str:
        return "CAST(time / ? AS INTEGER) * ?"
