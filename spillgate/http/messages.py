"""What the HTTP server hands its handler and its hooks: the request, the callables' shapes,
the refusal reasons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spillgate.http.response import ResponseWriter

Headers = Iterable[tuple[str, str]]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers are joined with ``", "``."""
    body: bytes
    keep_alive: bool
    remote: str
    http10: bool = False


class ClientDisconnected(ConnectionError):
    """The client went away while its response was being written."""


ErrorResponder = Callable[[int, str, str], tuple[Headers, bytes]]
"""(status, message, request path) -> (headers, body) for errors the server answers itself."""

Handler = Callable[[Request, "ResponseWriter"], Awaitable[None]]

EarlyReply = tuple[int, Headers, bytes]
"""A complete error response: status, headers, body."""

EarlyCheck = Callable[[str, str, dict[str, str]], EarlyReply | None]
"""(method, path, headers) -> the error to answer instead of reading the body, or ``None`` to go on.

Called once a request's headers are in, before its body is read and before ``100 Continue``.
A refused request is answered and its connection closed; the body is never buffered."""

REFUSAL_REASONS = (
    "malformed",
    "url_too_long",
    "header_too_large",
    "too_many_headers",
    "header_timeout",
    "body_timeout",
    "body_too_large",
    "length_required",
    "connect_refused",
    "upgrade_refused",
    "early_reject",
    "idle_timeout",
    "write_timeout",
    "too_many_connections",
    "pipeline_overflow",
)
"""The keys of :attr:`HttpServer.refusals` (each also a ``reason`` label in /metrics)."""


def plain_error(status: int, message: str, path: str) -> tuple[Headers, bytes]:
    return [("content-type", "text/plain; charset=utf-8")], message.encode() + b"\n"
