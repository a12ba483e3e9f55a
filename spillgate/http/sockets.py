"""Socket options shared by the server and the client."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import cast


def adopt(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """The transport as a stream transport, with Nagle off (every SSE event leaves at once)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses


def linger_zero(transport: asyncio.BaseTransport) -> None:
    """Make the next close send a TCP RST instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def limit_send_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Fix the kernel send buffer at ``size`` bytes (the kernel doubles it for bookkeeping),
    which turns its autotuning off: a peer that does not read then holds at most this much."""
    sock = transport.get_extra_info("socket")
    if sock is not None and size > 0:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        except OSError:
            pass
