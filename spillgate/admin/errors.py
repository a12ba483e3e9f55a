"""Admin API errors: an exception carrying status and code, rendered in the OpenAI error shape."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    501: "not_implemented_error",
    503: "service_unavailable_error",
}


@dataclass(frozen=True, slots=True)
class AdminError(Exception):
    status: int
    message: str
    code: str
    param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def render_admin_error(error: AdminError) -> tuple[list[tuple[str, str]], bytes]:
    """``{"error": {"message", "type", "code", "param"}}`` with ``cache-control: no-store``."""
    body = orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": _TYPES.get(error.status, "server_error"),
                "code": error.code,
                "param": error.param,
            }
        }
    )
    return [("content-type", "application/json"), ("cache-control", "no-store"), *error.headers], body


def bad_parameter(param: str, message: str) -> AdminError:
    return AdminError(400, f"{param}: {message}", "invalid_parameter", param=param)
