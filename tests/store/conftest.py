"""Fixtures for the usage store tests: a SQLite file per test, and a REAL PostgreSQL server.

PostgreSQL: by default the session starts its own throw-away cluster — ``initdb`` into a temporary
directory, ``pg_ctl start`` on 127.0.0.1 and a free port (Unix socket in that directory, fsync off),
``pg_ctl stop -m immediate`` at the end. It needs the server binaries: ``pg_ctl``/``initdb`` on PATH
or under ``/usr/lib/postgresql/*/bin`` (``apt-get install -y postgresql``). As root, the server runs
as the ``postgres`` user (or ``nobody``) through ``runuser``, since PostgreSQL refuses to run as root.
Each test gets its own database, dropped afterwards.

- ``SPILLGATE_TEST_PG_DSN=postgresql://user:pass@host:port/db`` uses an existing server instead
  (the user must be allowed to CREATE DATABASE; tests create and drop ``spillgate_test_*``).
- ``SPILLGATE_TEST_PG=skip`` skips the PostgreSQL tests, visibly. Without it, a missing or broken
  PostgreSQL FAILS those tests (so CI never passes them silently).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from spillgate.store import UsageStore, migrate, open_store


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + db))


class _Cluster:
    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError(
                "PostgreSQL server binaries not found (initdb/pg_ctl on PATH or under "
                "/usr/lib/postgresql/*/bin): apt-get install -y postgresql, or set SPILLGATE_TEST_PG_DSN"
            )
        self.pg_ctl = pg_ctl
        self.prefix: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="spillgate-pg-"))
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
            runuser = shutil.which("runuser")
            if not runuser:
                raise RuntimeError("running as root, and runuser (util-linux) is missing to drop to a user")
            self.prefix = [runuser, "-u", user, "--"]
            shutil.chown(self.root, user)
        self.data = self.root / "data"
        self.port = _free_port()
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = f"-k {self.root} -h 127.0.0.1 -p {self.port} -F -c max_connections=50"
        self._run(
            [
                pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ]
        )
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = ""
            logfile = self.root / "log"
            if logfile.exists():
                log = logfile.read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}\n{log}"
            )

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """An admin DSN of a running PostgreSQL server."""
    if os.environ.get("SPILLGATE_TEST_PG", "").lower() == "skip":
        pytest.skip("PostgreSQL tests skipped: SPILLGATE_TEST_PG=skip")
    external = os.environ.get("SPILLGATE_TEST_PG_DSN")
    if external:
        yield external
        return
    try:
        cluster = _Cluster()
    except Exception as exc:
        pytest.fail(f"cannot start a PostgreSQL server for the usage store tests: {exc}", pytrace=False)
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database (no schema) on the test server."""
    import psycopg

    name = f"spillgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield _with_db(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture
def sqlite_dsn(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'usage.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated store of each backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'usage.db'}"
    value: str = request.getfixturevalue("pg_dsn")
    migrate(value)
    return value


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[UsageStore]:
    opened = open_store(dsn)
    yield opened
    await opened.close()
