"""``spillgate serve --workers N``: N gateway processes on one port, each with its own event loop.

The supervisor (this module, in the process the operator started) checks that the configuration
shares its state (``state: redis://…``: without it each worker would keep its own health,
budgets and limits), reserves the port, starts the workers — each one a ``spillgate serve``
that listens with ``SO_REUSEPORT``, so the kernel spreads new connections over them — and then:

- SIGTERM / SIGINT: passed to every worker, which drains (not ready, not accepting, running
  streams finish within ``limits.shutdown_grace``); the supervisor exits when they all have;
- SIGHUP: passed on (each worker reloads its config);
- a worker that dies on its own is started again (after a pause that grows while it keeps dying).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spillgate.config.schema import Settings

REDIS_HINT = (
    "run Redis (or Valkey) on loopback, e.g.\n"
    "  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no\n"
    "and add to the config:\n"
    "  state: redis://127.0.0.1:6379/0"
)
RESTART_FIRST, RESTART_MAX = 0.5, 30.0
"""A worker that died is started again after this pause, doubling while it keeps dying quickly."""
STABLE_AFTER = 30.0
"""A worker that ran this long before dying is restarted after the first pause again."""


def parse_workers(text: str) -> int:
    """``--workers`` value: a positive count, or ``auto`` (the cores this process may use)."""
    if text == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--workers expects a number or auto, got {text!r}") from None
    if n < 1:
        raise ValueError("--workers must be at least 1")
    return n


def refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve ``settings`` (``None``: they can)."""
    if workers > 1 and not settings.state.shared:
        return (
            f"--workers {workers} needs a shared state store: with `state: memory` every worker would "
            "keep its own health board, retry budget, concurrency counts and rate limits (a key's RPM "
            "and an account's max_concurrency would multiply by the workers). " + REDIS_HINT
        )
    return None


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening ``SO_REUSEPORT`` socket: holds the port (and picks one for port 0)
    while the workers bind it too. Connections only go to sockets that listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    pause: float = RESTART_FIRST


def supervise(
    argv: Sequence[str],
    workers: int,
    host: str,
    port: int,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``workers`` copies of ``spillgate serve`` (``argv``: the arguments after ``serve``,
    without ``--workers`` and ``--listen``) on ``host:port`` until signalled."""
    reserved = reserve_port(host, port)
    port = reserved.getsockname()[1]
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    base_env = dict(os.environ if env is None else env)
    group = f"{socket.gethostname()}:{os.getpid()}"

    def start(index: int) -> subprocess.Popen[bytes]:
        child_env = {**base_env, "SPILLGATE_WORKER": f"{index}/{workers}", "SPILLGATE_GROUP": group}
        cmd = [sys.executable, "-m", "spillgate", "serve", *argv, "--listen", listen, "--reuse-port"]
        return subprocess.Popen(cmd, env=child_env)

    stopping = False
    pool = [_Worker(i, start(i), time.monotonic()) for i in range(workers)]
    print(f"Spillgate supervisor (pid {os.getpid()}): {workers} workers on {listen}", flush=True)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for w in pool:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        while True:
            alive = [w for w in pool if w.proc.poll() is None]
            if stopping and not alive:
                break
            if not stopping:
                now = time.monotonic()
                for w in pool:
                    code = w.proc.poll()
                    if code is None:
                        continue
                    ran = now - w.started
                    if ran >= STABLE_AFTER:
                        w.pause = RESTART_FIRST
                    print(
                        f"spillgate: worker {w.index} (pid {w.proc.pid}) exited with {code} after "
                        f"{ran:.0f}s; starting it again in {w.pause:g}s",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(w.pause)
                    w.pause = min(RESTART_MAX, w.pause * 2)
                    if stopping:
                        break
                    w.proc, w.started = start(w.index), time.monotonic()
            time.sleep(0.1)
    finally:
        reserved.close()
    codes = [w.proc.returncode for w in pool]
    return 0 if all(c in (0, -signal.SIGTERM) for c in codes) else 1
