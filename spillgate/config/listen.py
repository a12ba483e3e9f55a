"""``HOST:PORT`` listen addresses, shared by the config file's ``listen`` and ``--listen``."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
MAX_PORT = 65535


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` -> ``("127.0.0.1", 8080)``; ``"[::1]:8080"`` -> ``("::1", 8080)``;
    ``":8080"`` listens on 127.0.0.1. Port 0 lets the system pick a free port.

    Raises :class:`ValueError` with a one-line message naming the problem.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    port = int(port_text)
    if port > MAX_PORT:
        raise ValueError(f"port must be between 0 and {MAX_PORT} (0: any free port), got {port} in {text!r}")
    return host.strip("[]") or DEFAULT_HOST, port
