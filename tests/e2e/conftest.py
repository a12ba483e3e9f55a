"""End-to-end harness: the fake upstream and Spillgate on loopback, real clients as subprocesses.

The clients (Codex CLI, Claude Code) are pinned in ``tests/e2e/clients/package.json`` and
installed from the npm registry with ``npm ci`` the first time they are needed. Every client
run has a hard timeout and is killed by PID if it overstays.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream
from spillgate.gateway.auth import hash_key

CLIENTS = Path(__file__).parent / "clients"
BIN = CLIENTS / "node_modules" / ".bin"
CLIENT_KEY = "sk-sg-e2e-client"
PRIMARY, SECONDARY = "up-primary", "up-secondary"
CODEX_MODEL = "gpt-test"
CLAUDE_MODEL = "claude-test"


def ensure_clients() -> Path:
    """Install the pinned clients (``npm ci``) unless they are already there."""
    if not (BIN / "codex").exists() or not (BIN / "claude").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install the real clients (Debian: apt-get install npm)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CLIENTS,
            check=True,
            timeout=600,
        )
    return BIN


@pytest.fixture(scope="session")
def client_bin() -> Path:
    return ensure_clients()


def e2e_config(fake: FakeUpstream, **resilience: Any) -> dict[str, Any]:
    """Model ``gpt-test`` (OpenAI) and ``claude-test`` (Anthropic), each a primary and a secondary route."""
    timeouts = {
        "connect": "2s",
        "first_byte": "5s",
        "first_token": "10s",
        "stream_idle": "2s",
        "total": "20s",
    }
    return {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "e2e", "hash": hash_key(CLIENT_KEY)}],
        "providers": {
            "oa": {"protocol": "openai", "base_url": fake.openai_base_url, "timeouts": timeouts},
            "an": {"protocol": "anthropic", "base_url": fake.anthropic_base_url, "timeouts": timeouts},
        },
        "accounts": [
            {"id": "oa-primary", "provider": "oa", "api_key": "sk-up-oa-primary"},
            {"id": "oa-secondary", "provider": "oa", "api_key": "sk-up-oa-secondary"},
            {"id": "an-primary", "provider": "an", "api_key": "sk-up-an-primary"},
            {"id": "an-secondary", "provider": "an", "api_key": "sk-up-an-secondary"},
        ],
        "models": {
            CODEX_MODEL: {
                "routes": [
                    {"accounts": ["oa-primary"], "model": PRIMARY},
                    {"accounts": ["oa-secondary"], "model": SECONDARY},
                ]
            },
            CLAUDE_MODEL: {
                "routes": [
                    {"accounts": ["an-primary"], "model": PRIMARY},
                    {"accounts": ["an-secondary"], "model": SECONDARY},
                ]
            },
        },
        "resilience": {"deadline": "20s", **resilience},
    }


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool


async def run_client(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float, stdin: bytes = b""
) -> Run:
    """Run a client to completion (or kill it by PID at ``timeout``) without blocking the event loop,
    which keeps serving the in-process gateway and fake upstream meanwhile."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        timed_out = True
        try:
            os.killpg(proc.pid, 9)  # the client and anything it spawned, by its process group
        except ProcessLookupError:
            pass
        out, err = await proc.communicate()
    return Run(
        argv,
        proc.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - started,
        timed_out,
    )


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: no credentials or proxies of the machine leak into a client run."""
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(home)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass
class Stack:
    fake: FakeUpstream
    app: App

    @property
    def gateway_url(self) -> str:
        return self.app.url


async def start_stack(fake: FakeUpstream, config: dict[str, Any]) -> Stack:
    app = App(parse_settings(config, env={}, source="e2e"))
    await app.start()
    return Stack(fake, app)


@pytest.fixture
async def stack(fake: FakeUpstream) -> AsyncIterator[Stack]:
    s = await start_stack(fake, e2e_config(fake))
    yield s
    await s.app.stop(grace=1)
