"""Opening the backend a DSN names (the DSN grammar: :mod:`spillgate.config.dsn`), and
``migrate`` (what ``spillgate migrate --dsn`` runs)."""

from __future__ import annotations

from spillgate.config.dsn import Target as Target
from spillgate.config.dsn import parse_dsn as parse_dsn
from spillgate.store.base import UsageStore


def open_store(dsn: str) -> UsageStore:
    """Open the store a DSN names. Blocking (connects, and migrates SQLite): call it at start-up, or
    through ``asyncio.to_thread``. PostgreSQL raises :class:`StoreError` unless its schema is current."""
    target = parse_dsn(dsn)
    if target.backend == "sqlite":
        from spillgate.store.sqlite import SqliteStore

        return SqliteStore(target.location)
    from spillgate.store.postgres import PostgresStore

    return PostgresStore(target.location)


def migrate(dsn: str) -> list[str]:
    """Apply the missing migrations (idempotent, safe to run concurrently); returns the ones applied,
    e.g. ``["0001_usage"]``, or ``[]`` when the schema was already current."""
    target = parse_dsn(dsn)
    if target.backend == "sqlite":
        from spillgate.store.sqlite import connect_sqlite, migrate_sqlite

        conn = connect_sqlite(target.location)
        try:
            return migrate_sqlite(conn)
        finally:
            conn.close()
    from spillgate.store.postgres import connect_postgres, migrate_postgres

    with connect_postgres(target.location) as pg:
        return migrate_postgres(pg)


def schema_version(dsn: str) -> int | None:
    """The schema version a store is at (None: no schema yet)."""
    target = parse_dsn(dsn)
    if target.backend == "sqlite":
        from spillgate.store.sqlite import connect_sqlite, sqlite_version

        conn = connect_sqlite(target.location)
        try:
            return sqlite_version(conn)
        finally:
            conn.close()
    from spillgate.store.postgres import connect_postgres, postgres_version

    with connect_postgres(target.location) as pg:
        return postgres_version(pg)
