"""The usage store: every request and every attempt, recorded off the critical path.

``open_store(dsn)`` picks the backend (embedded SQLite in WAL mode by default, PostgreSQL when a
``postgresql://`` DSN is configured); ``migrate(dsn)`` applies the schema (``spillgate migrate``);
``UsageRecorder(store).submit(record)`` buffers a record, written in batches by a background task.
"""

from spillgate.store.base import GROUP_BY, GroupBy, StoreError, UsageStore
from spillgate.store.dsn import migrate, open_store, parse_dsn, schema_version
from spillgate.store.migrations import LATEST as SCHEMA_VERSION
from spillgate.store.recorder import UsageRecorder
from spillgate.store.records import AttemptRecord, MinuteRow, Record, RequestRecord, UsageRow
from spillgate.store.sqlite import SqliteStore

__all__ = [
    "GROUP_BY",
    "SCHEMA_VERSION",
    "AttemptRecord",
    "GroupBy",
    "MinuteRow",
    "Record",
    "RequestRecord",
    "SqliteStore",
    "StoreError",
    "UsageRecorder",
    "UsageRow",
    "UsageStore",
    "migrate",
    "open_store",
    "parse_dsn",
    "schema_version",
]


def __getattr__(name: str) -> object:
    if name == "PostgresStore":  # imported on demand: psycopg is only needed for PostgreSQL
        from spillgate.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)
