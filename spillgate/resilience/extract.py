"""Error fields out of upstream error bodies and in-stream error events (pure functions, never raise).

Understands the shapes real upstreams send:

- OpenAI (and a chat stream's error chunk): ``{"error": {"message", "type", "param", "code"}}``;
- Anthropic: ``{"type": "error", "error": {"type": "overloaded_error", "message": "..."}}``;
- Responses stream failures: ``{"type": "response.failed", "response": {"error": {"code", "message"}}}``
  and the ``error`` event ``{"type": "error", "code": ..., "message": ...}``;
- FastAPI / vLLM: ``{"detail": "..."}``, ``{"detail": [{"msg": ...}]}``, ``{"message": ..., "code": ...}``,
  ``{"error": "plain string"}``;
- the same errors sent as SSE frames (``event: error`` / ``data: {...}``) instead of a JSON body;
- anything else (HTML, plain text, empty): the text itself (HTML tags dropped), whitespace-collapsed and
  truncated.

A retry hint comes from the message ("Please try again in 1.5s", "retry after 30 seconds") or from a
Codex usage-limit body (``resets_in_seconds`` / ``resets_at``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from spillgate.resilience.types import Phase, Signal

TEXT_LIMIT = 300
"""Characters kept of a body that is not a recognised JSON error."""
MESSAGE_LIMIT = 2000
"""Characters kept of a message taken from a JSON error."""

_WHITESPACE = re.compile(r"\s+")
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_RETRY_IN = re.compile(
    r"(?:try again|retry)\s+(?:in|after)\s+"
    r"((?:\d+(?:\.\d+)?\s*(?:milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)"
    r"(?![a-z])\s*)+)",
    re.IGNORECASE,
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """What an upstream said went wrong, as far as its body tells."""

    error_type: str | None = None
    error_code: str | None = None
    message: str = ""
    retry_hint: float | None = None
    """Seconds the upstream asked us to wait, when its body says so."""

    def signal(
        self,
        phase: Phase,
        status: int | None = None,
        *,
        in_stream: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Signal:
        """The classifier's input for a failure carrying these fields."""
        return Signal(
            phase=phase,
            status=status,
            error_type=self.error_type,
            error_code=self.error_code,
            message=self.message,
            in_stream=in_stream,
            headers={} if headers is None else headers,
        )


def error_fields(body: bytes, now: float | None = None) -> ErrorFields:
    """The error fields of an upstream error body. ``now`` (unix seconds) resolves ``resets_at``."""
    stripped = body.strip()
    if not stripped:
        return ErrorFields()
    if stripped[:1] in (b"{", b"["):
        try:
            parsed: object = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
            parsed = parsed[0]  # some upstreams (Gemini) wrap the error in a one-element list
        if isinstance(parsed, dict):
            fields = _from_mapping(parsed, now)
            if fields is not None:
                return fields
    elif stripped.startswith((b"event:", b"data:")):
        fields = _from_sse(stripped, now)
        if fields is not None:
            return fields
    text = stripped[:65536].decode("utf-8", errors="replace")
    if text.startswith("<"):
        text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    message = _collapse(text)
    return ErrorFields(message=message, retry_hint=_hint_from_message(message))


def event_error_fields(event_name: str | None, data: bytes, now: float | None = None) -> ErrorFields | None:
    """The error fields of one SSE event when it is an in-stream failure, else ``None``.

    Failures: a Responses ``response.failed`` or ``error`` event, an Anthropic ``event: error``, a chat
    ``data: {"error": ...}`` chunk. Cheap on ordinary events: JSON is parsed only when the data can be one.
    """
    named = event_name in ("error", "response.failed")
    if not named and b'"error"' not in data and b"response.failed" not in data:
        return None
    stripped = data.strip()
    if not named:
        try:
            parsed: object = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        kind = parsed.get("type")
        if kind not in ("error", "response.failed") and parsed.get("error") in (None, "", {}):
            return None
    return error_fields(stripped, now)


# -- internals ----------------------------------------------------------------------------


def _from_sse(body: bytes, now: float | None) -> ErrorFields | None:
    """Fields from an error sent as SSE frames in place of a JSON body: the first failure event."""
    event_name: str | None = None
    for line in body.splitlines():
        if line.startswith(b"event:"):
            event_name = line[6:].strip().decode("utf-8", errors="replace")
        elif line.startswith(b"data:"):
            fields = event_error_fields(event_name, line[5:], now)
            if fields is not None:
                return fields
        elif not line.strip():
            event_name = None
    return None


def _from_mapping(obj: dict[str, Any], now: float | None) -> ErrorFields | None:
    """Fields from a decoded JSON object, or ``None`` when it holds no recognisable error."""
    kind = obj.get("type")
    if kind == "response.failed":
        response = obj.get("response")
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict):
            return _from_error(error, obj, now)
        return ErrorFields()
    error = obj.get("error")
    if isinstance(error, dict):
        return _from_error(error, obj, now)
    if isinstance(error, str) and error.strip():
        return _fields(None, _code(obj.get("code")), error, obj, None, now)
    if "message" in obj or (kind == "error" and "code" in obj):
        # The Responses ``error`` event and FastAPI-style ``{"message", "code"}``.
        error_type = _str(kind) if kind != "error" else _str(obj.get("error_type"))
        return _fields(error_type, _code(obj.get("code")), obj.get("message"), obj, None, now)
    detail = obj.get("detail")
    if isinstance(detail, str):
        return _fields(None, None, detail, obj, None, now)
    if isinstance(detail, list):
        parts = [_text(item.get("msg")) if isinstance(item, dict) else _text(item) for item in detail]
        return _fields(None, None, "; ".join(p for p in parts if p), obj, None, now)
    if isinstance(detail, dict):
        return _from_mapping(detail, now)
    return None


def _from_error(error: dict[str, Any], outer: dict[str, Any], now: float | None) -> ErrorFields:
    error_type = _str(error.get("type")) or _str(error.get("status"))  # Gemini: "status": "UNAVAILABLE"
    return _fields(error_type, _code(error.get("code")), error.get("message"), outer, error, now)


def _fields(
    error_type: str | None,
    error_code: str | None,
    message: object,
    outer: dict[str, Any],
    inner: dict[str, Any] | None,
    now: float | None,
) -> ErrorFields:
    text = _text(message)
    hint = _hint_from_message(text)
    if hint is None:
        hint = _hint_from_reset(inner, now) if inner is not None else None
        if hint is None:
            hint = _hint_from_reset(outer, now)
    return ErrorFields(error_type, error_code, text[:MESSAGE_LIMIT], hint)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: object) -> str | None:
    """An error code as text: strings as they are, numbers stringified, anything else dropped."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float | bool):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return ""


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:TEXT_LIMIT]


def _hint_from_message(message: str) -> float | None:
    """Seconds from "try again in 1.5s / 20ms / 6m0s", "retry after 30 seconds" and the like."""
    if not message:
        return None
    found = _RETRY_IN.search(message)
    if found is None:
        return None
    seconds = 0.0
    for number, unit in _DURATION_PART.findall(found.group(1)):
        seconds += float(number) * _unit_seconds(unit.lower())
    return seconds


def _unit_seconds(unit: str) -> float:
    if unit.startswith(("ms", "msec", "milli")):
        return 0.001
    if unit.startswith("h"):
        return 3600.0
    if unit.startswith("m"):
        return 60.0
    return 1.0


def _hint_from_reset(obj: dict[str, Any], now: float | None) -> float | None:
    """Seconds from a Codex usage-limit body: ``resets_in_seconds``, else ``resets_at`` (unix time)."""
    resets_in = _number(obj.get("resets_in_seconds"))
    if resets_in is not None:
        return max(0.0, resets_in)
    resets_at = _number(obj.get("resets_at"))
    if resets_at is not None:
        if resets_at > 1e11:  # milliseconds
            resets_at /= 1000.0
        return max(0.0, resets_at - (time.time() if now is None else now))
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
