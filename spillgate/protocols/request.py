"""Read what routing needs from a request body, and rewrite its ``model`` in place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.protocols.adapter import adapter_for
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


MAX_MODEL_NAME = 256
"""The longest model name a client may send (a name reaches routing, logs and metrics)."""


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
    duplicate = duplicate_top_level_key(body, data)
    if duplicate is not None:
        raise invalid(
            f"the request body names the top-level key {duplicate!r} more than once", param=duplicate[:64]
        )
    model = data.get("model")
    if model is None:
        raise invalid("missing required field 'model'", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' must be a non-empty string", param="model")
    if len(model) > MAX_MODEL_NAME or not model.isprintable():
        raise invalid(f"'model' must be at most {MAX_MODEL_NAME} printable characters", param="model")
    _check_conversation(api, data)
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


def _check_conversation(api: Api, data: dict[str, Any]) -> None:
    """The conversation field has the type its API gives it (a list of messages; Responses'
    ``input`` a string or a list), so a careless client hears it here, in its own protocol."""
    adapter_for(api).check_conversation(data)


def check_messages(data: Mapping[str, Any]) -> None:
    """``messages`` (Chat Completions, Anthropic Messages) is a list of objects when present."""
    value = data.get("messages")
    if value is not None and not isinstance(value, list):
        raise invalid(f"'messages' must be a list of messages, got {describe_type(value)}", param="messages")
    if isinstance(value, list) and any(not isinstance(m, dict) for m in value):
        raise invalid("every item of 'messages' must be an object", param="messages")


def describe_type(value: object) -> str:
    """``an object``, ``a string``…: a JSON value's type, for an error message."""
    return {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def duplicate_top_level_key(body: bytes, data: dict[str, Any]) -> str | None:
    """A top-level key the body names twice (``orjson`` keeps the last value, another parser may
    take the first), else ``None``. Cheap when every key is spelled once and plainly."""
    if b"\\u" not in body and all(body.count(orjson.dumps(key)) == 1 for key in data):
        return None
    pairs: list[list[tuple[str, Any]]] = []

    def keep(items: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs.append(items)
        return {}

    try:
        json.loads(body, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return None  # orjson read it: nothing this parser could add
    seen: set[str] = set()
    for key, _ in pairs[-1] if pairs else ():  # the outermost object is built last
        if key in seen:
            return key
        seen.add(key)
    return None


def _session_key(api: Api, data: dict[str, Any], headers: dict[str, str]) -> str | None:
    """Codex: ``session-id`` / ``session_id`` header or ``prompt_cache_key``; Anthropic: metadata.user_id."""
    for name in ("session-id", "session_id"):
        value = headers.get(name)
        if value:
            return value
    return adapter_for(api).session_key(data)


def rewrite_model(parsed: ParsedRequest, upstream_model: str) -> bytes:
    """The body with its top-level ``model`` member replaced: exactly that member, however it was
    spelled (escapes included), never a nested ``model``. The body is re-serialised from what was
    parsed, so the upstream reads the same document the gateway routed and checked."""
    if upstream_model == parsed.model:
        return parsed.body
    data = dict(parsed.data)
    data["model"] = upstream_model  # keeps its place among the keys
    return orjson.dumps(data)


__all__ = ["GatewayError", "ParsedRequest", "parse_request", "rewrite_model"]
