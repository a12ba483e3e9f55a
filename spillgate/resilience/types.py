"""The vocabulary shared by the classifier, the health state and the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class ErrorClass(Enum):
    CAPACITY = "capacity"
    """The model (on this account) has no capacity now: "Selected model is at capacity"."""
    OVERLOADED = "overloaded"
    """The provider is overloaded for this model: 529 overloaded_error, "servers are overloaded"."""
    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    AUTH = "auth"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_POLICY = "content_policy"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    """The route's upstream does not know the model (a config problem on that route)."""
    UPSTREAM_ERROR = "upstream_error"
    CONNECT_FAILED = "connect_failed"
    RESET = "reset"
    TIMEOUT = "timeout"
    STREAM_CUT = "stream_cut"
    STREAM_STALL = "stream_stall"
    STREAM_MALFORMED = "stream_malformed"


class Scope(Enum):
    """What a failure says is unhealthy."""

    REQUEST = "request"
    """Only this request (its content): nothing to mark."""
    ACCOUNT = "account"
    ACCOUNT_MODEL = "account_model"
    PROVIDER_MODEL = "provider_model"
    PROVIDER = "provider"


class Phase(Enum):
    """Where in the exchange a failure happened."""

    BEFORE_HEADERS = "before_headers"
    """No response yet: connect failure, reset, silence."""
    BEFORE_CONTENT = "before_content"
    """A response (status, maybe stream preamble) but no content sent to the client."""
    AFTER_CONTENT = "after_content"
    """Content already reached the client: only continuation, replay or an in-band error."""


class Transport(Enum):
    """Failures below HTTP, as the upstream client reports them."""

    CONNECT = "connect"
    CONNECT_TIMEOUT = "connect_timeout"
    RESET = "reset"
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"
    FIRST_CONTENT_TIMEOUT = "first_content_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    MALFORMED = "malformed"
    SILENT_CLOSE = "silent_close"
    """The connection closed after seconds of silence, before any byte of a response."""
    POOL_FULL = "pool_full"
    """Every connection the gateway may open to the upstream was busy: nothing was sent."""


@dataclass(frozen=True, slots=True)
class Signal:
    """Everything the classifier may look at about one failed attempt."""

    phase: Phase
    status: int | None = None
    """HTTP status; ``None`` for a failure below HTTP."""
    error_type: str | None = None
    """OpenAI ``error.type`` / Anthropic ``error.type``."""
    error_code: str | None = None
    """OpenAI ``error.code`` (Anthropic has none)."""
    message: str = ""
    """The upstream's error message (may be empty)."""
    transport: Transport | None = None
    in_stream: bool = False
    """The error arrived inside a 200 stream (response.failed, event: error, an error chunk)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers, lower-case names."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failure is, what it marks unhealthy, and what the client should be told."""

    error_class: ErrorClass
    scope: Scope
    rule: str
    """The name of the rule that matched (built-in or operator); every rule has a hit counter."""
    count: bool = True
    """Whether this failure counts toward health (cooldowns, breakers)."""
    client_status: int | None = None
    """An operator rewrite of the status sent to the client, if any."""
    client_message: str | None = None
    """An operator rewrite of the message sent to the client, if any."""
    widen: bool = True
    """Whether more evidence may widen ``scope`` (see :mod:`spillgate.resilience.scoping`);
    false when an operator rule names the scope."""
