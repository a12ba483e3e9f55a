"""A spent budget (tokens or money) as a refusal every client takes as final.

The rule for everyone is a 429 ``insufficient_quota`` with ``x-should-retry: false`` and a
``Retry-After`` to the period's end: the SDKs and Claude Code stop on ``x-should-retry``. Codex
CLI reads neither: it retries a 429 that carries ``Retry-After``, spaced by it, so a refusal for
the rest of the month would park it for a month (../shared/CLIENTS.md). What Codex treats as
final is an in-stream ``response.failed`` whose error code is ``insufficient_quota``: a Codex
streaming request is refused with that (HTTP 200, ``response.created`` then ``response.failed``,
the body ends), and the turn stops with the message.
"""

from __future__ import annotations

from collections.abc import Mapping

from spillgate.protocols.adapter import sse
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import GatewayError

REFUSED_ID = "resp_spillgate_refused"


def is_codex(headers: Mapping[str, str]) -> bool:
    """Codex CLI names itself in ``originator`` (``codex_exec``, ``codex_cli_rs``…) and its user agent."""
    originator = headers.get("originator", "")
    return originator.lower().startswith("codex") or "codex" in headers.get("user-agent", "").lower()


def codex_refusal(
    api: Api, stream: bool, model: str, headers: Mapping[str, str], error: GatewayError
) -> tuple[list[tuple[str, str]], bytes] | None:
    """The in-stream refusal for a Codex streaming Responses request (headers and body of a 200);
    ``None`` for any other client, which gets ``error`` itself."""
    if api is not Api.OPENAI_RESPONSES or not stream or not is_codex(headers):
        return None
    response = {"id": REFUSED_ID, "object": "response", "model": model, "output": []}
    body = sse(
        "response.created",
        {"type": "response.created", "sequence_number": 0, "response": {**response, "status": "in_progress"}},
    ) + sse(
        "response.failed",
        {
            "type": "response.failed",
            "sequence_number": 1,
            "response": {
                **response,
                "status": "failed",
                "error": {"code": error.code or "insufficient_quota", "message": error.message},
            },
        },
    )
    out = [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("x-should-retry", "false"),
        ("x-spillgate-error-class", "insufficient_quota"),
    ]
    return out, body
