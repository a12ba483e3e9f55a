"""Read what routing needs from a request body, and rewrite its ``model`` in place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.protocols.apis import Api
from spillgate.protocols.errors import GatewayError, invalid


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    api: Api
    model: str
    stream: bool
    session_key: str | None
    body: bytes
    data: dict[str, Any]
    """The decoded body, read-only by convention (kept for a fallback rewrite)."""


def parse_request(api: Api, body: bytes, headers: dict[str, str]) -> ParsedRequest:
    """Validate the little the gateway relies on; everything else passes through untouched."""
    if not body:
        raise invalid(f"the request body is empty; send a JSON object for the {api.title} API")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid(f"the request body must be a JSON object, got {type(data).__name__}")
    model = data.get("model")
    if model is None:
        raise invalid("missing required field 'model'", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' must be a non-empty string", param="model")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid(f"'stream' must be true or false, got {stream!r}", param="stream")
    return ParsedRequest(
        api=api,
        model=model,
        stream=stream,
        session_key=_session_key(api, data, headers),
        body=body,
        data=data,
    )


def _session_key(api: Api, data: dict[str, Any], headers: dict[str, str]) -> str | None:
    """Codex: ``session-id`` / ``session_id`` header or ``prompt_cache_key``; Anthropic: metadata.user_id."""
    for name in ("session-id", "session_id"):
        value = headers.get(name)
        if value:
            return value
    if api is Api.ANTHROPIC_MESSAGES:
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            user = metadata.get("user_id")
            if isinstance(user, str) and user:
                return user
        return None
    key = data.get("prompt_cache_key")
    return key if isinstance(key, str) and key else None


def rewrite_model(parsed: ParsedRequest, upstream_model: str) -> bytes:
    """The body with its top-level ``model`` replaced, every other byte unchanged.

    The common case is a byte splice of the single ``"model": "<name>"`` pair; only when the
    pair occurs more than once (or is spelled with escapes) is the body re-serialised.
    """
    if upstream_model == parsed.model:
        return parsed.body
    pattern = _pair_pattern(parsed.model)
    matches = pattern.findall(parsed.body, 0)
    if len(matches) == 1:
        replacement = b'"model":' + orjson.dumps(upstream_model)
        return pattern.sub(lambda _m: replacement, parsed.body, count=1)
    data = dict(parsed.data)
    data["model"] = upstream_model
    return orjson.dumps(data)


_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def _pair_pattern(model: str) -> re.Pattern[bytes]:
    pattern = _PATTERNS.get(model)
    if pattern is None:
        if len(_PATTERNS) > 4096:
            _PATTERNS.clear()
        pattern = re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(model)))
        _PATTERNS[model] = pattern
    return pattern


__all__ = ["GatewayError", "ParsedRequest", "parse_request", "rewrite_model"]
