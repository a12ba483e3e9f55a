"""Which usage-store backend a DSN names (validated by the config loader, opened by the store).

DSN forms:

- ``sqlite:///var/lib/spillgate/usage.db`` — an absolute path (URL form: empty host, path);
- ``sqlite:usage.db`` or a bare path (``usage.db``, ``./data/usage.db``, ``/abs/usage.db``) — as given;
- ``postgresql://user:password@host:5432/db?sslmode=require`` (or ``postgres://…``) — anything libpq takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class Target:
    backend: Literal["sqlite", "postgres"]
    location: str
    """The SQLite path, or the full PostgreSQL DSN."""


def parse_dsn(dsn: str) -> Target:
    """Which backend a DSN names; :class:`ValueError` (with the forms accepted) for anything else."""
    text = dsn.strip()
    if not text:
        raise ValueError("usage store DSN is empty (use sqlite:///path/to/usage.db or postgresql://…)")
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else None
    if scheme is None or (len(scheme) == 1 and re.match(r"^[A-Za-z]:[\\/]", text)):
        return Target("sqlite", text)  # a bare path (or a Windows drive path)
    if scheme == "sqlite":
        rest = text[len("sqlite:") :]
        if rest.startswith("//"):
            host, slash, path = rest[2:].partition("/")
            if host or not slash or not path.strip("/"):
                raise ValueError(
                    f"bad SQLite DSN {dsn!r}: use sqlite:///absolute/path.db, "
                    "sqlite:relative.db or a bare path"
                )
            return Target("sqlite", "/" + path)
        if not rest:
            raise ValueError(f"bad SQLite DSN {dsn!r}: no path")
        return Target("sqlite", rest)
    if scheme in ("postgresql", "postgres"):
        return Target("postgres", text)
    raise ValueError(
        f"unsupported usage store DSN scheme {scheme!r}: use sqlite:///path/to/usage.db, "
        "a bare path, or postgresql://user@host/db"
    )
