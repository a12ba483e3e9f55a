"""The three upstream APIs the fake speaks: their paths and their error shapes."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import orjson

ApiProtocol = Literal["openai-chat", "openai-responses", "anthropic-messages"]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

CHAT: Final = "openai-chat"
RESPONSES: Final = "openai-responses"
ANTHROPIC: Final = "anthropic-messages"

PROTOCOL_BY_PATH: Final[dict[str, ApiProtocol]] = {
    "/v1/chat/completions": CHAT,
    "/v1/responses": RESPONSES,
    "/v1/messages": ANTHROPIC,
}

ApiName = Literal["chat", "responses", "messages"]
"""The short name of an API in the fake's settings (a fault's ``apis``)."""

PROTOCOL_BY_API: Final[dict[ApiName, ApiProtocol]] = {
    "chat": CHAT,
    "responses": RESPONSES,
    "messages": ANTHROPIC,
}
API_NAMES: Final[tuple[ApiName, ...]] = tuple(PROTOCOL_BY_API)
"""Every API the fake can serve, in the order settings list them."""

# status -> (type, code, message) for OpenAI-shaped error bodies.
_OPENAI_DEFAULTS: Final[dict[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Request not allowed."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    405: ("invalid_request_error", None, "Method not allowed."),
    413: ("invalid_request_error", None, "Request body too large."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: (
        "server_error",
        "server_is_overloaded",
        "Selected model is at capacity. Please try a different model.",
    ),
    504: ("server_error", None, "Gateway timeout."),
    529: ("server_error", "server_is_overloaded", "The server is overloaded. Please try again later."),
}

# status -> (type, message) for Anthropic-shaped error bodies.
_ANTHROPIC_DEFAULTS: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    405: ("invalid_request_error", "Method not allowed."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("overloaded_error", "Overloaded"),
    504: ("api_error", "Gateway timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def protocol_for_path(path: str) -> ApiProtocol:
    """The protocol whose error shape suits ``path`` (Anthropic for /v1/messages, else OpenAI)."""
    return ANTHROPIC if path.startswith("/v1/messages") else PROTOCOL_BY_PATH.get(path, CHAT)


def not_served_json(protocol: ApiProtocol, method: str, path: str, served: tuple[ApiName, ...]) -> bytes:
    """The 404 body of a request on the path of an API the server does not serve, as a server
    that has only some of the APIs answers it (llama.cpp's server 404s ``/v1/responses``):
    OpenAI's invalid-URL shape on OpenAI paths, Anthropic's ``not_found_error`` on ``/v1/messages``."""
    apis = f"the {' and '.join(served)} API" + ("s" if len(served) > 1 else "")
    message = f"{method} {path} not found: this upstream serves only {apis}"
    if protocol == ANTHROPIC:
        return orjson.dumps({"type": "error", "error": {"type": "not_found_error", "message": message}})
    return orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    )


def _openai_defaults(status: int) -> tuple[str, str | None, str]:
    found = _OPENAI_DEFAULTS.get(status)
    if found is not None:
        return found
    if status >= 500:
        return ("server_error", None, "The server had an error while processing your request.")
    return ("invalid_request_error", None, f"Request failed with status {status}.")


def _anthropic_defaults(status: int) -> tuple[str, str]:
    found = _ANTHROPIC_DEFAULTS.get(status)
    if found is not None:
        return found
    if status >= 500:
        return ("api_error", "Internal server error")
    return ("invalid_request_error", f"Request failed with status {status}.")


def error_json(
    protocol: ApiProtocol,
    status: int,
    *,
    message: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
) -> bytes:
    """An error body in ``protocol``'s shape; unset parts default from ``status``.

    OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
    Anthropic: ``{"type": "error", "error": {"type", "message"}}`` (``code`` is not used).
    """
    if protocol == ANTHROPIC:
        a_type, a_message = _anthropic_defaults(status)
        return orjson.dumps(
            {"type": "error", "error": {"type": error_type or a_type, "message": message or a_message}}
        )
    o_type, o_code, o_message = _openai_defaults(status)
    return orjson.dumps(
        {
            "error": {
                "message": message or o_message,
                "type": error_type or o_type,
                "param": None,
                "code": code if code is not None else o_code,
            }
        }
    )
