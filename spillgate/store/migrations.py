"""Numbered schema migrations, one SQL text per backend, recorded in ``schema_migrations``.

Append a new :class:`Migration` to :data:`MIGRATIONS` to change the schema; never edit one that has
shipped. Statements are separated by ``;`` (no ``;`` inside a statement). The SQL lives here rather
than in ``.sql`` files so that it ships in every wheel without package-data configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str

    def statements(self, backend: str) -> list[str]:
        sql = self.sqlite if backend == "sqlite" else self.postgres
        return [s.strip() for s in sql.split(";") if s.strip()]


_INDEXES = """
CREATE INDEX requests_time ON requests (time);
CREATE INDEX requests_model_time ON requests (public_model, time);
CREATE INDEX requests_client_time ON requests (client_key, time);
CREATE INDEX requests_request_id ON requests (request_id);
CREATE INDEX requests_failed_time ON requests (time) WHERE error_class IS NOT NULL OR status >= 400;
CREATE INDEX attempts_time ON attempts (time);
CREATE INDEX attempts_request_id ON attempts (request_id);
CREATE INDEX attempts_failed_time ON attempts (time) WHERE NOT ok;
"""

_0001_SQLITE = (
    """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    client_key TEXT,
    client_app TEXT,
    session TEXT,
    public_model TEXT NOT NULL,
    route TEXT,
    account TEXT,
    upstream_model TEXT,
    api TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error_class TEXT,
    attempts INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_tokens INTEGER,
    recovered TEXT
);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    route TEXT NOT NULL,
    provider TEXT NOT NULL,
    account TEXT,
    upstream_model TEXT NOT NULL,
    ok INTEGER NOT NULL,
    status INTEGER,
    error_class TEXT,
    scope TEXT,
    rule TEXT,
    phase TEXT,
    kind TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    first_byte_ms REAL
);
"""
    + _INDEXES
)

_0001_POSTGRES = (
    """
CREATE TABLE requests (
    id BIGSERIAL PRIMARY KEY,
    time DOUBLE PRECISION NOT NULL,
    request_id TEXT NOT NULL,
    client_key TEXT,
    client_app TEXT,
    session TEXT,
    public_model TEXT NOT NULL,
    route TEXT,
    account TEXT,
    upstream_model TEXT,
    api TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    error_class TEXT,
    attempts INTEGER NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cached_tokens BIGINT,
    recovered TEXT
);
CREATE TABLE attempts (
    id BIGSERIAL PRIMARY KEY,
    time DOUBLE PRECISION NOT NULL,
    request_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    route TEXT NOT NULL,
    provider TEXT NOT NULL,
    account TEXT,
    upstream_model TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    status INTEGER,
    error_class TEXT,
    scope TEXT,
    rule TEXT,
    phase TEXT,
    kind TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    first_byte_ms DOUBLE PRECISION
);
"""
    + _INDEXES
)

_0002 = """
CREATE TABLE client_keys (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at {real} NOT NULL,
    revoked_at {real},
    models TEXT,
    rpm INTEGER,
    tpm BIGINT,
    max_concurrent INTEGER,
    token_budget BIGINT,
    budget_period TEXT NOT NULL
)
"""
"""Client keys made by `spillgate keys create`: the SHA-256 of the key, never the key. ``models`` is a
JSON list (NULL: any model). A revoked key keeps its row (its name stays taken: usage rows name it)."""

_0004 = """
ALTER TABLE requests ADD COLUMN upstream_api TEXT;
ALTER TABLE attempts ADD COLUMN api TEXT;
ALTER TABLE attempts ADD COLUMN upstream_api TEXT;
ALTER TABLE attempts ADD COLUMN omitted TEXT
"""
"""Translation: the API each attempt spoke upstream, and what a translated request left out."""

_0005 = """
ALTER TABLE requests ADD COLUMN cost_usd {real};
ALTER TABLE requests ADD COLUMN wasted_usd {real};
ALTER TABLE requests ADD COLUMN cost_estimated {bool} NOT NULL DEFAULT {false};
ALTER TABLE attempts ADD COLUMN input_tokens BIGINT;
ALTER TABLE attempts ADD COLUMN output_tokens BIGINT;
ALTER TABLE attempts ADD COLUMN cached_tokens BIGINT;
ALTER TABLE attempts ADD COLUMN cache_write_tokens BIGINT;
ALTER TABLE attempts ADD COLUMN cost_usd {real};
ALTER TABLE attempts ADD COLUMN wasted_usd {real};
ALTER TABLE attempts ADD COLUMN estimated {bool} NOT NULL DEFAULT {false};
ALTER TABLE attempts ADD COLUMN stream_ms {real};
ALTER TABLE client_keys ADD COLUMN spend_budget {real}
"""
"""Money: each attempt's tokens and cost (and the wasted part), each request's sum, and the client
keys' spend budgets (USD per ``budget_period``). NULL cost: the price is unknown (never 0)."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "usage", _0001_SQLITE, _0001_POSTGRES),
    Migration(2, "client_keys", _0002.format(real="REAL"), _0002.format(real="DOUBLE PRECISION")),
    # No query reads attempts by time alone (failed ones have their own partial index): one index
    # less to keep up on every attempt row.
    Migration(3, "drop_attempts_time", "DROP INDEX attempts_time", "DROP INDEX attempts_time"),
    Migration(4, "translation", _0004, _0004),
    Migration(
        5,
        "cost",
        _0005.format(real="REAL", bool="INTEGER", false="0"),
        _0005.format(real="DOUBLE PRECISION", bool="BOOLEAN", false="FALSE"),
    ),
)

LATEST = MIGRATIONS[-1].version
