"""DSN parsing, ``open_store`` errors, and migrations: numbered, recorded, idempotent, required on
PostgreSQL (see ``conftest.py`` for how the PostgreSQL cases get their server)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from spillgate.store import (
    SCHEMA_VERSION,
    SqliteStore,
    StoreError,
    migrate,
    open_store,
    parse_dsn,
    schema_version,
)
from spillgate.store.migrations import MIGRATIONS
from spillgate.store.postgres import PostgresStore, redact_dsn

ALL = [f"{m.version:04d}_{m.name}" for m in MIGRATIONS]


@pytest.mark.parametrize(
    ("dsn", "backend", "location"),
    [
        ("sqlite:///var/lib/spillgate/usage.db", "sqlite", "/var/lib/spillgate/usage.db"),
        ("sqlite:usage.db", "sqlite", "usage.db"),
        ("sqlite:data/usage.db", "sqlite", "data/usage.db"),
        ("usage.db", "sqlite", "usage.db"),
        ("./data/usage.db", "sqlite", "./data/usage.db"),
        ("/abs/usage.db", "sqlite", "/abs/usage.db"),
        (":memory:", "sqlite", ":memory:"),
        (
            "postgresql://u:p@db:5432/spill?sslmode=require",
            "postgres",
            "postgresql://u:p@db:5432/spill?sslmode=require",
        ),
        ("postgres://db/spill", "postgres", "postgres://db/spill"),
        ("PostgreSQL://db/spill", "postgres", "PostgreSQL://db/spill"),
    ],
)
def test_dsn_forms(dsn: str, backend: str, location: str) -> None:
    target = parse_dsn(dsn)
    assert (target.backend, target.location) == (backend, location)


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("mysql://db/spill", "unsupported usage store DSN scheme 'mysql'"),
        ("redis://x", "unsupported"),
        ("", "empty"),
        ("sqlite://host/usage.db", "bad SQLite DSN"),
        ("sqlite:///", "bad SQLite DSN"),
        ("sqlite:", "no path"),
    ],
)
def test_bad_dsns_are_value_errors(dsn: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(dsn)
    with pytest.raises(ValueError, match=message):
        migrate(dsn)


def test_redact_dsn() -> None:
    assert redact_dsn("postgresql://spill:s3cret@db:5432/x") == "postgresql://spill:***@db:5432/x"
    assert redact_dsn("postgresql://db/x") == "postgresql://db/x"


async def test_sqlite_migrates_on_open_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "usage.db"
    store = open_store(f"sqlite://{path}")
    try:
        assert isinstance(store, SqliteStore)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"requests_time", "requests_failed_time", "attempts_request_id"} <= indexes
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM requests "
                "WHERE (error_class IS NOT NULL OR status >= 400) ORDER BY time DESC LIMIT 5"
            )
        )
        assert "requests_failed_time" in plan
        conn.close()
        sync = store._conn.execute("PRAGMA synchronous").fetchone()
        assert sync == (1,)  # NORMAL
    finally:
        await store.close()
    assert schema_version(f"sqlite://{path}") == SCHEMA_VERSION
    assert migrate(str(path)) == []  # already current
    SqliteStore(path)  # reopening applies nothing and fails nothing


def test_sqlite_migrate_before_open(tmp_path: Path) -> None:
    dsn = f"sqlite:{tmp_path / 'u.db'}"
    assert schema_version(dsn) is None
    assert migrate(dsn) == ALL
    assert migrate(dsn) == []
    assert schema_version(dsn) == SCHEMA_VERSION


def test_postgres_requires_migrate(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match=r"has no schema: run `spillgate migrate --dsn postgresql://"):
        open_store(pg_dsn)
    assert schema_version(pg_dsn) is None
    assert migrate(pg_dsn) == ALL
    assert migrate(pg_dsn) == []
    assert schema_version(pg_dsn) == SCHEMA_VERSION
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        sql = "SELECT indexname FROM pg_indexes WHERE tablename IN ('requests', 'attempts')"
        indexes = {n for (n,) in conn.execute(sql)}
        wanted = {"requests_time", "requests_model_time", "requests_failed_time", "attempts_failed_time"}
        assert wanted <= indexes
    store = open_store(pg_dsn)
    assert isinstance(store, PostgresStore)
    asyncio.run(store.close())


def test_postgres_old_or_newer_schema(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(pg_dsn)
    monkeypatch.setattr("spillgate.store.base.LATEST", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=rf"at schema version {SCHEMA_VERSION}, this Spillgate needs"):
        open_store(pg_dsn)
    monkeypatch.undo()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="newer than this Spillgate knows"):
        open_store(pg_dsn)


def test_postgres_errors_never_show_the_password(pg_server: str) -> None:
    bad = pg_server.replace("/postgres", "/no_such_db").replace("postgres@", "postgres:hunter2@")
    with pytest.raises(psycopg.OperationalError) as info:
        open_store(bad)
    assert "hunter2" not in str(info.value)
    assert redact_dsn(bad).count("hunter2") == 0


def test_postgres_concurrent_migrations(pg_dsn: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(migrate, [pg_dsn] * 4))
    assert sorted(map(len, results)) == [0, 0, 0, len(ALL)]
