"""bench/soak's abusive clients: idle keep-alives, slowloris and slow readers.

Each kind is a coroutine holding one socket until the gateway closes it (``idle_keepalive``,
``slowloris``, ``slow_reader``); ``abuser`` keeps one connection of a kind open for the whole
soak, reopening each one the gateway closes, and counts in its ``Kind`` how many were opened and
closed, how long they lived and what they were answered.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.harness import CHAT_PATH, HOST, percentile

SLOW_READ_BYTES = 64
SLOW_READER_RCVBUF = 8192
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8
"""``tcpi_state`` of a socket the peer has reset or closed (linux/tcp_states.h)."""
RECONNECT_JITTER_S = 1.0
"""An abuser the gateway closed reconnects after a random delay up to this."""


@dataclass
class Kind:
    name: str
    opened: int = 0
    closed_by_gateway: int = 0
    lifetimes: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    failed_to_open: int = 0

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.lifetimes)
        return {
            "opened": self.opened,
            "closed_by_gateway": self.closed_by_gateway,
            "lifetime_p50_s": round(percentile(ordered, 50), 2) if ordered else None,
            "lifetime_max_s": round(ordered[-1], 2) if ordered else None,
            "answers": dict(self.answers),
            "failed_to_open": self.failed_to_open,
        }


def status_of(data: bytes) -> str:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return match.group(1).decode() if match else ("nothing" if not data else "other")


async def open_socket(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def idle_keepalive(sock: socket.socket, kind: Kind) -> None:
    """One request, read whole; then silence until the gateway closes the connection."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    first = await loop.sock_recv(sock, 65536)
    kind.answers[status_of(first)] += 1
    while await loop.sock_recv(sock, 65536):
        pass


async def slowloris(sock: socket.socket, kind: Kind) -> None:
    """A request line, then header bytes at one a second; whatever comes back ends it."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, f"POST {CHAT_PATH} HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())

    async def drip() -> None:
        try:
            while True:
                await asyncio.sleep(1.0)
                await loop.sock_sendall(sock, b"a")
        except OSError:
            pass  # closed by the gateway: the read below sees it

    dripping = asyncio.create_task(drip())
    try:
        data = await loop.sock_recv(sock, 65536)
        kind.answers[status_of(data)] += 1
        while await loop.sock_recv(sock, 65536):
            pass
    finally:
        dripping.cancel()


async def slow_reader(request: bytes, sock: socket.socket, kind: Kind) -> None:
    """``request``, a streaming request for a long answer, read 64 bytes a second."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request)
    first = await loop.sock_recv(sock, SLOW_READ_BYTES)
    kind.answers[status_of(first)] += 1
    while True:
        await asyncio.sleep(1.0)
        if peer_closed(sock) or not await loop.sock_recv(sock, SLOW_READ_BYTES):
            # Closed by the gateway (what is still buffered here would take minutes to read).
            return


def peer_closed(sock: socket.socket) -> bool:
    """The peer has reset the connection or sent its FIN, whatever is left here to read."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in (TCP_CLOSE, TCP_CLOSE_WAIT)
    except OSError:
        return True


async def abuser(port: int, kind: Kind, run: Any, stop: asyncio.Event, rcvbuf: int | None) -> None:
    """Keeps one abusive connection open until ``stop``: each one the gateway closes is reopened."""
    while not stop.is_set():
        try:
            sock = await open_socket(port, rcvbuf)
        except OSError:
            kind.failed_to_open += 1
            await asyncio.sleep(0.5)
            continue
        kind.opened += 1
        opened = time.monotonic()
        task = asyncio.create_task(run(sock, kind))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.exception()  # a reset is a close too
                kind.closed_by_gateway += 1
                kind.lifetimes.append(time.monotonic() - opened)
                # Reopened soon, but not in lockstep with every other one the same sweep closed.
                await asyncio.sleep(random.uniform(0, RECONNECT_JITTER_S))
        finally:
            task.cancel()
            stopping.cancel()
            sock.close()
