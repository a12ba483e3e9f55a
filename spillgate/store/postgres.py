"""PostgreSQL, when configured (``postgresql://…``): the schema is applied by ``spillgate migrate``."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from spillgate.store.base import ThreadedStore, check_version, multi_row_inserts, pending_migrations

_LOCK_KEY = 0x5370_696C_6C67  # "Spillg": serialises concurrent `spillgate migrate` runs
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (for messages and logs)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect_postgres(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    # A hung server must not hold the store's thread (and so the recorder) forever.
    conn.execute("SET statement_timeout = '60s'")
    return conn


def migrate_postgres(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    """Apply the missing migrations in one transaction, under an advisory lock."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(_MIGRATIONS_TABLE)
        done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for migration in pending_migrations(done):
            for statement in migration.statements("postgres"):
                conn.execute(statement.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(f"{migration.version:04d}_{migration.name}")
    return applied


def postgres_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return None if row is None or row[0] is None else int(row[0])


class PostgresStore(ThreadedStore):
    """``PostgresStore("postgresql://user:pass@host/db")``; fails unless ``spillgate migrate`` ran."""

    backend = "postgres"
    placeholder = "%s"

    def __init__(self, dsn: str) -> None:
        super().__init__(redact_dsn(dsn))
        self._dsn = dsn
        self._conn = self._connect()

    def _connect(self) -> Any:
        conn = connect_postgres(self._dsn)
        try:
            check_version(postgres_version(conn), self.where)
        except BaseException:
            conn.close()
            raise
        return conn

    def _is_broken(self, conn: Any, exc: BaseException) -> bool:
        return bool(conn.closed or conn.broken)

    def _write_sync(
        self, conn: Any, requests: list[tuple[Any, ...]], attempts: list[tuple[Any, ...]]
    ) -> None:
        with conn.transaction(), conn.cursor() as cur:
            for sql, params in multi_row_inserts(requests, attempts):
                cur.execute(self._sql(sql), params)

    def _p50_sql(self, column: str) -> str:
        return (
            f"SELECT {column}, percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM requests WHERE time >= ? AND time < ? GROUP BY {column}"
        )

    def _bucket_sql(self) -> str:
        return "(floor(time / ?) * ?)::bigint"
