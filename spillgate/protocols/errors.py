"""Errors the gateway answers itself, rendered in the protocol of the endpoint called."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson

from spillgate.protocols.apis import ProviderProtocol


class ErrorKind(Enum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    INTERNAL = "internal"


# kind -> (OpenAI type, Anthropic type)
_TYPES: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", "invalid_request_error"),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "authentication_error"),
    ErrorKind.PERMISSION: ("invalid_request_error", "permission_error"),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "not_found_error"),
    ErrorKind.METHOD_NOT_ALLOWED: ("invalid_request_error", "invalid_request_error"),
    ErrorKind.TOO_LARGE: ("invalid_request_error", "request_too_large"),
    ErrorKind.UPSTREAM_UNAVAILABLE: ("server_error", "api_error"),
    ErrorKind.OVERLOADED: ("server_error", "overloaded_error"),
    ErrorKind.RATE_LIMITED: ("rate_limit_error", "rate_limit_error"),
    ErrorKind.QUOTA: ("insufficient_quota", "rate_limit_error"),
    ErrorKind.UPSTREAM_TIMEOUT: ("server_error", "api_error"),
    ErrorKind.INTERNAL: ("server_error", "api_error"),
}


@dataclass(frozen=True, slots=True)
class GatewayError(Exception):
    status: int
    kind: ErrorKind
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: int | None = None
    should_retry: bool | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.kind.value}: {self.message}"


def is_error_body(family: ProviderProtocol, body: bytes) -> bool:
    """Whether ``body`` is an error in ``family``'s own shape (OpenAI ``{"error": {"message"}}``,
    Anthropic ``{"type": "error", "error": {"type", "message"}}``), fit to pass on as it is."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(payload, dict):
        return False
    error = payload.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return False
    if family == "anthropic":
        return payload.get("type") == "error" and isinstance(error.get("type"), str)
    return True


def render_error(family: ProviderProtocol, error: GatewayError) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body for ``error`` in OpenAI or Anthropic error JSON."""
    openai_type, anthropic_type = _TYPES[error.kind]
    if family == "anthropic":
        body = orjson.dumps({"type": "error", "error": {"type": anthropic_type, "message": error.message}})
    else:
        body = orjson.dumps(
            {
                "error": {
                    "message": error.message,
                    "type": openai_type,
                    "param": error.param,
                    "code": error.code,
                }
            }
        )
    headers = [("content-type", "application/json")]
    if error.retry_after is not None:
        headers.append(("retry-after", str(error.retry_after)))
    if error.should_retry is not None:
        headers.append(("x-should-retry", "true" if error.should_retry else "false"))
    headers.extend(error.extra_headers)
    return headers, body


_HTTP_LAYER: dict[int, tuple[ErrorKind, str, bool]] = {
    400: (ErrorKind.INVALID_REQUEST, "invalid_request", False),
    408: (ErrorKind.INVALID_REQUEST, "request_timeout", True),
    411: (ErrorKind.INVALID_REQUEST, "length_required", False),
    413: (ErrorKind.TOO_LARGE, "request_too_large", False),
    414: (ErrorKind.INVALID_REQUEST, "url_too_long", False),
    431: (ErrorKind.INVALID_REQUEST, "headers_too_large", False),
    501: (ErrorKind.INVALID_REQUEST, "not_implemented", False),
    503: (ErrorKind.OVERLOADED, "too_many_connections", True),
}
"""The statuses the HTTP layer answers itself: (kind, code, should_retry)."""


def error_for_status(status: int, message: str) -> GatewayError:
    """A GatewayError for a failure the HTTP layer detects on its own (parse errors, size, limits
    and timeouts, the connection limit); any other status is an internal error."""
    typed = _HTTP_LAYER.get(status)
    if typed is None:
        return GatewayError(status, ErrorKind.INTERNAL, message, code="server_error")
    kind, code, retry = typed
    return GatewayError(status, kind, message, code=code, should_retry=retry)


def invalid(message: str, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, ErrorKind.INVALID_REQUEST, message, code=code, param=param, should_retry=False)
