"""The validated configuration: frozen, typed, compiled once at start-up.

The dataclasses also describe the config file: every ``init`` field is a key of its section,
named and bounded by its type and ``field(metadata=key(...))`` (:mod:`spillgate.validation`),
and :mod:`spillgate.config.keys` derives the allowed keys and how each value is read from them.
So a new setting is one field here. Without metadata: a ``float`` is a duration (``5s``,
``250ms``, positive), an ``int`` is at least 1, ``X | None`` also takes ``null``; ``key(custom=True)``
fields are read by :mod:`spillgate.config.sections` (references, environment variables).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from spillgate.http.egress import Proxy, TlsOptions
from spillgate.protocols.apis import Api
from spillgate.protocols.apis import ProviderProtocol as ProviderProtocol
from spillgate.resilience.health import HealthConfig
from spillgate.resilience.rules import Rule
from spillgate.validation import key

WILDCARD = "*"
"""A model alias (or a route's upstream model) of ``*`` matches any requested name."""


class Secret:
    """A credential. Its text is only reachable through :meth:`reveal`; it never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. A silent or slow-to-start upstream is abandoned for the next route after these.

    ``first_byte``: a streamed request's response headers. ``first_token``: a stream's first
    content event (reasoning models legitimately think for minutes: the default leaves them
    room). ``stream_idle``: silence between events once streaming. ``total``: a non-streamed
    response, headers and body.
    """

    connect: float = 10.0
    first_byte: float = 60.0
    first_token: float = 300.0
    stream_idle: float = 300.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Provider:
    name: str = field(metadata=key(read=False))
    """The key of its entry under ``providers``."""
    protocol: ProviderProtocol
    base_url: str = field(metadata=key(custom=True))
    timeouts: Timeouts = field(default_factory=Timeouts)
    headers: tuple[tuple[str, str], ...] = field(default=(), metadata=key(custom=True))
    api_key: Secret | None = None
    max_connections: int = 256
    forward_headers: frozenset[str] = field(default=frozenset(), metadata=key(custom=True))
    """Client headers (lower case) forwarded upstream beyond the built-in allowlist."""
    apis: tuple[Api, ...] = field(default=(), metadata=key(custom=True))
    """The wire APIs it serves natively, in order of preference (``chat``, ``responses``,
    ``messages``); the loader fills in its protocol's defaults (``openai``: chat and responses,
    ``anthropic``: messages). A client API it lacks is served through translation."""
    tls: TlsOptions = field(default_factory=TlsOptions, metadata=key(custom=True))
    """A private CA, no check (``verify: false``), a client certificate; its files are read and
    checked at load (:mod:`spillgate.http.egress`)."""
    proxy: Proxy | None = field(default=None, metadata=key(custom=True))
    """An HTTP(S) proxy new connections tunnel through (``CONNECT``); ``None``: straight out."""

    def serves(self, api: Api) -> bool:
        return api in self.apis


@dataclass(frozen=True, slots=True)
class Account:
    id: str = field(metadata=key(custom=True))
    provider: str = field(metadata=key(custom=True))
    api_key: Secret
    max_concurrency: int | None = None
    models: frozenset[str] | None = None
    """Upstream model names this account serves; ``None`` serves all."""

    def serves(self, upstream_model: str) -> bool:
        return self.models is None or upstream_model in self.models


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a route's model can take, so that the planner never sends it a request it cannot
    serve (checked for translated requests; a native request goes as the client sent it)."""

    tools: bool = True
    images: bool = True
    reasoning: bool | None = None
    """The model reasons (``None``: unknown, decided from its name)."""
    max_output_tokens: int | None = None
    """The most output tokens it takes: a translated request asking for more is clamped (and
    the default output limit of an API that needs one)."""

    @property
    def restricts(self) -> bool:
        """Some request content (tools, images) is declared out of reach: a native request must be
        read to know whether it fits."""
        return not (self.tools and self.images)


@dataclass(frozen=True, slots=True)
class Route:
    provider: str = field(metadata=key(custom=True, required=False))
    """Given, or the provider of the route's account pool."""
    model: str
    """Upstream model name; ``*`` sends the name the client asked for."""
    accounts: tuple[str, ...] = field(default=(), metadata=key(custom=True))
    """A pool of accounts; empty means the provider's own credential (or none)."""
    weight: int = 1
    priority: int = field(default=0, metadata=key(minimum=0))
    """Lower is tried first; routes of equal priority share traffic by weight. Unset: the
    route's position in its list."""
    context_window: int | None = None
    timeouts: Timeouts | None = field(default=None, metadata=key(custom=True))
    """Overrides the provider's timeouts for this route."""
    supports_prefill: bool = False
    """The upstream continues an assistant message it is given (prefill), so a stream that
    broke mid-answer can be continued here from the text already sent."""
    translate: bool = True
    """Serve clients of an API the provider lacks, through translation (``false``: only
    clients of the provider's own APIs). A ``*`` route is never translated: it forwards the
    client's own model name, which belongs to its own API's provider."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    label: str = field(default="", metadata=key(read=False))
    """A stable name for headers, logs and metrics, e.g. ``gpt-5.3-codex[0]``."""

    def upstream_model(self, requested: str) -> str:
        return requested if self.model == WILDCARD else self.model


@dataclass(frozen=True, slots=True)
class ModelAlias:
    """A ``models`` entry; the other form of entry, ``{alias_of: NAME}``, is a deprecated name."""

    name: str = field(metadata=key(read=False))
    routes: tuple[Route, ...] = field(metadata=key(custom=True))
    deprecated_names: tuple[str, ...] = field(default=(), metadata=key(read=False))


BudgetPeriod = Literal["day", "month", "total"]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What one client key may do. ``None`` leaves a dimension unlimited."""

    models: frozenset[str] | None = None
    """Public model names (or alias names) the key may call."""
    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Tokens (input + output) per minute."""
    max_concurrent: int | None = None
    """Requests in flight at once."""
    token_budget: int | None = None
    """Tokens (input + output) per ``budget_period``."""
    spend_budget: float | None = field(default=None, metadata=key(unit="usd"))
    """USD per ``budget_period``: what the key's requests cost, every attempt included (prices from
    ``pricing``; an attempt whose price is unknown counts 0)."""
    budget_period: BudgetPeriod = "month"
    """``day`` and ``month`` are UTC calendar periods; ``total`` never resets."""

    @property
    def budgeted(self) -> bool:
        """Whether the key has a budget (tokens or money) counted per ``budget_period``."""
        return self.token_budget is not None or self.spend_budget is not None

    @property
    def unlimited(self) -> bool:
        return (
            self.models is None
            and self.rpm is None
            and self.tpm is None
            and self.max_concurrent is None
            and self.token_budget is None
            and self.spend_budget is None
        )


UNLIMITED = KeyLimits()


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str = field(metadata=key(custom=True))
    sha256: str = field(metadata=key("hash", custom=True))
    """Lower-case hex digest of the key (``hash: sha256:...`` in the file)."""
    limits: KeyLimits = field(default=UNLIMITED, metadata=key(flatten=True))
    """Written beside ``name`` and ``hash``, not under a key of their own."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = field(default=32 * 1024 * 1024, metadata=key(unit="size"))
    session_bindings: int = 100_000
    """How many session → account bindings are remembered (least recently used go first)."""
    key_refresh: float = 5.0
    """Seconds between re-reads of the stored client keys (``spillgate keys create``/``revoke``) and
    of their budgets' token counts from the usage store."""
    max_header_bytes: int = field(default=64 * 1024, metadata=key(unit="size"))
    """The request line and headers of one request: 431 (414 for the URL alone) above it."""
    max_headers: int = 100
    """Header lines in one request: 431 above it."""
    header_timeout: float = 10.0
    """Seconds for the request line and headers to arrive once their first byte has: 408."""
    body_timeout: float = 60.0
    """Seconds for the body to arrive once the headers have: 408."""
    idle_timeout: float = 60.0
    """Seconds a keep-alive connection (or a new one) may stay without a request before it is closed."""
    write_timeout: float = 30.0
    """Seconds a response write may wait for a client that does not read: the connection is dropped
    and its request (the upstream call included) cancelled."""
    max_connections: int = 4096
    """Open client connections; a new one beyond it gets 503 and is closed."""
    shutdown_grace: float = field(default=180.0, metadata=key(zero=True))
    """Seconds a stopping instance (SIGTERM) lets running requests finish — agents' turns stream
    for minutes — after it has turned not ready and stopped accepting; then the rest are cut."""
    send_buffer: int = field(default=128 * 1024, metadata=key(unit="size", zero=True))
    """The kernel send buffer of a client connection (``SO_SNDBUF``; 0: the kernel's autotuning,
    up to ``net.ipv4.tcp_wmem``, 4 MiB by default): what a client that does not read can make
    the kernel hold before the write timeout starts counting."""
    max_replay_text: int = field(default=128 * 1024, metadata=key(unit="size"))
    """Characters of answer text a stream keeps to continue or replay it after a cut; past it
    the stream is no longer recoverable mid-way (its recovery decision says so)."""
    max_event_bytes: int = field(default=4 * 1024 * 1024, metadata=key(unit="size"))
    """One SSE event (or line) from an upstream: a larger one fails the stream as malformed."""
    max_upstream_header_bytes: int = field(default=64 * 1024, metadata=key(unit="size"))
    """An upstream response's status line and headers: more is a protocol failure."""
    max_upstream_body_bytes: int = field(default=64 * 1024 * 1024, metadata=key(unit="size"))
    """A non-streamed upstream response body: more is a protocol failure (failed over)."""


_HEALTH = HealthConfig()
"""The health board's own defaults: the config keys below default to them (one source)."""


@dataclass(frozen=True, slots=True)
class Cooldowns:
    capacity: float = _HEALTH.capacity_cooldown
    capacity_max: float = _HEALTH.capacity_cooldown_max
    overloaded: float = _HEALTH.overloaded_cooldown
    overloaded_max: float = _HEALTH.overloaded_cooldown_max
    rate_limited: float = _HEALTH.rate_limit_cooldown
    quota_exhausted: float = _HEALTH.quota_cooldown
    not_found: float = _HEALTH.not_found_cooldown


@dataclass(frozen=True, slots=True)
class Breaker:
    failures: int = _HEALTH.failure_threshold
    error_rate: float = field(default=_HEALTH.error_rate_threshold, metadata=key(unit="ratio"))
    window: float = _HEALTH.error_rate_window
    min_requests: int = _HEALTH.error_rate_min_requests
    cooldown: float = _HEALTH.breaker_cooldown
    cooldown_max: float = _HEALTH.breaker_cooldown_max
    probe_ttl: float = _HEALTH.probe_ttl


@dataclass(frozen=True, slots=True)
class Resilience:
    max_attempts: int = 4
    """Upstream attempts per client request, first one included."""
    deadline: float = 60.0
    """No new attempt (and no wait) starts later than this after the request arrived."""
    max_retry_wait: float = field(default=5.0, metadata=key(zero=True))
    """The longest Retry-After the gateway waits out itself within a request (rather than move
    to another model)."""
    try_timeout: float = 20.0
    """A try that is not the last possible one waits at most this long for response headers and
    for its first token (a silent primary costs this, then the next route starts)..."""
    failover_reserve: float = field(default=5.0, metadata=key(custom=True))
    """...and never past ``deadline`` minus this, so that a failover can still start in time.
    Unset, at most a quarter of ``deadline``; 0 is allowed."""
    max_client_retry_after: float = 5.0
    """The longest ``Retry-After`` sent with a final error for a model that is out (capacity,
    overload, 5xx, no route); rate limits and quotas keep their true reset time."""
    stop_retries_after: float = 120.0
    """Once every request for a model has failed for this long, final errors tell clients to
    stop retrying and tell their user."""
    widen_window: float = 60.0
    """Failures of one class on several models of a credential (or credentials of a provider)
    within this window widen the scope they mark."""
    budget_ratio: float = field(default=0.2, metadata=key("ratio", group="retry_budget", unit="ratio"))
    budget_floor: int = field(default=10, metadata=key("floor", group="retry_budget", minimum=0))
    budget_window: float = field(default=10.0, metadata=key("window", group="retry_budget"))
    backoff_base: float = field(default=0.25, metadata=key("base", group="backoff"))
    backoff_cap: float = field(default=4.0, metadata=key("cap", group="backoff"))
    cooldowns: Cooldowns = field(default_factory=Cooldowns)
    breaker: Breaker = field(default_factory=Breaker)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens (``pricing.models.<model>``); a cache rate left unset costs those
    tokens as plain input."""

    input: float = field(metadata=key(unit="number"))
    output: float = field(metadata=key(unit="number"))
    cache_read: float | None = field(default=None, metadata=key(unit="number"))
    cache_write: float | None = field(default=None, metadata=key(unit="number"))


@dataclass(frozen=True, slots=True)
class Pricing:
    """What tokens cost: ``genai-prices`` data, these overrides first; ``pricing: off`` looks
    nothing up (every cost unknown)."""

    enabled: bool = field(default=True, metadata=key(read=False))
    models: Mapping[str, Price] | None = field(default=None, metadata=key(custom=True))
    """Upstream model name → price, whatever the provider."""
    providers: Mapping[str, Mapping[str, Price]] | None = field(default=None, metadata=key(custom=True))
    """Provider name → upstream model name (or ``*``, every model) → price."""


@dataclass(frozen=True, slots=True)
class SharedState:
    """Where the routing state lives: ``state: memory`` (one process) or ``state: redis://…``
    (health, retry budget, concurrency slots, client-key limits and session bindings shared by
    every worker and instance on the same Redis or Valkey)."""

    url: str | None = field(default=None, metadata=key(custom=True))
    """``redis://[user:password@]host:port/db`` or ``rediss://…``; ``None``: in memory."""
    namespace: str = "spillgate"
    """Prefix of every key and channel: gateways with different namespaces share nothing."""
    timeout: float = 0.25
    """Seconds one Redis call may take before the gateway goes on with its local state."""
    slot_ttl: float = 30.0
    """Seconds a concurrency slot lives without renewal: a dead instance's slots are free after it."""
    session_ttl: float = 3600.0
    """Seconds a session → account binding is kept in the store after it was made (running
    instances keep theirs in memory as well; one that starts later loads what is still there)."""

    @property
    def shared(self) -> bool:
        return self.url is not None


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata=key("listen", custom=True))
    port: int = field(default=8080, metadata=key("listen", custom=True))
    """``listen: HOST:PORT``."""
    client_keys: tuple[ClientKey, ...] = field(default=(), metadata=key(custom=True))
    providers: dict[str, Provider] = field(default_factory=dict, metadata=key(custom=True))
    accounts: dict[str, Account] = field(default_factory=dict, metadata=key(custom=True))
    """A list in the file (each entry names its ``id``)."""
    models: dict[str, ModelAlias] = field(default_factory=dict, metadata=key(custom=True))
    deprecated: dict[str, str] = field(default_factory=dict, metadata=key(read=False))
    """Deprecated public name → the alias that replaces it (the ``alias_of`` entries of ``models``)."""
    limits: Limits = field(default_factory=Limits)
    resilience: Resilience = field(default_factory=Resilience, metadata=key(custom=True))
    state: SharedState = field(default_factory=SharedState, metadata=key(custom=True))
    pricing: Pricing = field(default_factory=Pricing, metadata=key(custom=True))
    usage_dsn: str | None = field(default=None, metadata=key("usage", custom=True))
    """Where requests and attempts are recorded: ``sqlite:path`` or ``postgresql://...``;
    ``None`` records nothing. The embedded defaults (no config file) use ``sqlite:spillgate-usage.db``."""
    metrics: bool = field(default=True, metadata=key(unit="switch"))
    """Prometheus ``/metrics`` and the loop signal; ``metrics: off`` spares their (small) cost."""
    admin_token: Secret | None = None
    """Guards /metrics (and the admin API); ``None`` leaves them open (keep the gateway on loopback)."""
    error_rules: tuple[Rule, ...] = field(default=(), metadata=key(custom=True))
    """Operator classification rules, first match wins (:mod:`spillgate.resilience.rules`)."""
    source: str = field(default="config", metadata=key(read=False))
    """Where these settings came from: a file path, ``defaults`` or ``demo``."""

    def resolve(self, requested: str) -> tuple[ModelAlias | None, str | None]:
        """The alias serving ``requested`` and, for a deprecated name, its replacement."""
        alias = self.models.get(requested)
        if alias is not None:
            return alias, None
        replacement = self.deprecated.get(requested)
        if replacement is not None:
            return self.models.get(replacement), replacement
        return self.models.get(WILDCARD), None
