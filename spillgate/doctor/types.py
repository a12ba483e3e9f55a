"""The doctor's vocabulary: one :class:`Probe` (a minimal request) and its :class:`ProbeResult`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from spillgate.doctor.target import Endpoint
from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage
from spillgate.resilience.types import ErrorClass, Transport


class Role(Enum):
    """Why a probe is sent: what its answer tells the diagnosis."""

    MODEL = "model"
    """The model the user asked about."""
    LIST = "list"
    """``GET /v1/models``: is the key accepted, which models exist."""
    OTHER = "other"
    """Another model of the same endpoint: is it only this model, or the whole endpoint?"""
    RETRY = "retry"
    """The model again after a short pause (after a rate limit)."""
    ROUTE = "route"
    """One route/account of a configured alias, straight to its provider."""
    API = "api"
    """The model on the other API of a local OpenAI-compatible server (Chat <-> Responses): which
    APIs to declare for its provider (``apis:``). Never the verdict on the model."""


class BodyKind(Enum):
    """What an answer's body was, as far as telling an API from a proxy in between goes."""

    JSON = "json"
    SSE = "sse"
    HTML = "html"
    TEXT = "text"
    EMPTY = "empty"


class Category(Enum):
    """The verdict: where the trouble is."""

    OK = "ok"
    AUTH = "auth"
    QUOTA = "quota"
    RATE_LIMITED = "rate_limited"
    MODEL_CAPACITY = "model_capacity"
    PROVIDER_OVERLOADED = "provider_overloaded"
    PROXY_OR_ROUTE_OVERLOAD = "proxy_or_route_overload"
    MODEL_NOT_FOUND = "model_not_found"
    NETWORK = "network"
    BAD_REQUEST = "bad_request"
    UPSTREAM_ERROR = "upstream_error"
    """The API answers with server errors (500, 502, 504 in its own JSON), breaks or stalls."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Probe:
    """One request the doctor sends."""

    role: Role
    endpoint: Endpoint
    api: Api
    model: str = ""
    """Empty for a model listing."""
    stream: bool = False
    wait_before: float = 0.0
    """Seconds to pause before sending (a rate-limited model's second try)."""

    @property
    def method(self) -> str:
        return "GET" if self.role is Role.LIST else "POST"

    @property
    def path(self) -> str:
        """Relative to the provider's base URL, as the gateway appends it."""
        adapter = self.api.adapter
        return adapter.models_suffix if self.role is Role.LIST else adapter.upstream_suffix

    @property
    def shown_path(self) -> str:
        """The request path as the server sees it (the base URL's own path included)."""
        return urlsplit(self.endpoint.provider.base_url).path.rstrip("/") + self.path

    def describe(self) -> str:
        """``POST /v1/chat/completions model=gpt-x stream`` (with the route label in alias mode)."""
        parts = [self.endpoint.label] if self.endpoint.label else []
        parts.append(f"{self.method} {self.shown_path}")
        if self.model:
            parts.append(f"model={self.model}")
        if self.stream:
            parts.append("stream")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe saw: the answer (or the failure below HTTP) and how the classifier reads it."""

    probe: Probe
    status: int | None
    """HTTP status; ``None`` when no response came (refused, reset, silence)."""
    latency: float
    """Seconds until the answer was read (a stream: its first content) or the failure."""
    error_class: ErrorClass | None = None
    """``None``: it answered. Otherwise the classifier's class for the failure."""
    rule: str | None = None
    """The classification rule that matched."""
    error_type: str | None = None
    error_code: str | None = None
    message: str = ""
    """The upstream's error message (keys redacted), or a transport failure's description."""
    transport: Transport | None = None
    in_stream: bool = False
    """The failure came inside a 200 stream (``response.failed``, ``event: error``)."""
    body_kind: BodyKind = BodyKind.EMPTY
    retry_after: float | None = None
    """Seconds the answer asked to wait: Retry-After, reset headers, or the message/body."""
    headers: tuple[tuple[str, str], ...] = ()
    """The response headers that matter for a diagnosis (rate limits, Spillgate's, the server)."""
    models: tuple[str, ...] = ()
    """A model listing's names."""
    first_content: float | None = None
    """A stream: seconds until its first content event."""
    usage: Usage | None = None
    """The token usage the answer reported (a stream's from the rest of it, read after its first
    content for a moment); ``None`` when it reported none."""

    @property
    def ok(self) -> bool:
        return self.error_class is None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def via_spillgate(self) -> bool:
        return self.header("x-spillgate-attempts") is not None or self.header("x-spillgate-route") is not None


UNAVAILABLE: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.CAPACITY,
        ErrorClass.OVERLOADED,
        ErrorClass.UPSTREAM_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.RESET,
        ErrorClass.STREAM_CUT,
        ErrorClass.STREAM_STALL,
        ErrorClass.STREAM_MALFORMED,
    }
)
"""Failures that say "not now" rather than "not you" or "not this request": worth comparing with
other models to tell one model's trouble from the whole endpoint's."""
