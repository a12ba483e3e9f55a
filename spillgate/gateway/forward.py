"""Headers between the client and the upstream: what passes, what is replaced."""

from __future__ import annotations

from collections.abc import Callable

from spillgate.config.schema import Account, Provider
from spillgate.protocols.adapter import family_adapter

# Client headers forwarded upstream, by allowlist: what the APIs and the agents' own protocols
# need. Anything else (credentials, org / project selectors, cookies, hop-by-hop headers, a
# header that would change how the upstream authenticates) never leaves the gateway; an operator
# adds names with ``providers.<name>.forward_headers``.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "user-agent",
        "anthropic-version",
        "anthropic-beta",
        "openai-beta",
        "idempotency-key",
        "x-request-id",
        "x-client-request-id",
        # Codex CLI: its session and turn, for the upstream's prompt cache and its own logs.
        "session-id",
        "session_id",
        "thread-id",
        "originator",
        "version",
        "x-codex-turn-metadata",
        "x-codex-beta-features",
    }
)
FORWARDED_REQUEST_PREFIXES = ("x-stainless-",)
"""The openai / anthropic SDKs' platform headers (language, package version, retry count)."""

# Upstream response headers relayed to the client, by allowlist: the body's type and encoding,
# what a client retries by, and request ids; never cookies, server banners, org ids or anything an
# upstream might echo a credential into.
RELAYED_RESPONSE_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "cache-control",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-request-id",
        "request-id",
        "openai-processing-ms",
    }
)
RELAYED_RESPONSE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "x-codex-")
"""Rate-limit state (OpenAI, Anthropic) and Codex's usage-window headers, which Codex shows."""


def upstream_headers(
    client_headers: dict[str, str], provider: Provider, account: Account | None
) -> list[tuple[str, str]]:
    """The allowed client headers, plus the account's credential and the provider's own headers."""
    extra = provider.forward_headers
    out = [
        (k, v)
        for k, v in client_headers.items()
        if k in FORWARDED_REQUEST_HEADERS or k.startswith(FORWARDED_REQUEST_PREFIXES) or k in extra
    ]
    out.append(("accept-encoding", "identity"))
    secret = account.api_key if account is not None else provider.api_key
    auth = family_adapter(provider.protocol)
    out.extend(auth.auth_headers(secret.reveal() if secret is not None else None, client_headers))
    if provider.headers:
        overridden = {k.lower() for k, _ in provider.headers}
        out = [(k, v) for k, v in out if k not in overridden]
        out.extend((k.lower(), v) for k, v in provider.headers)
    return out


def client_headers(upstream: list[tuple[str, str]], redact: Callable[[str], str]) -> list[tuple[str, str]]:
    """The allowed upstream response headers, credentials masked in their values."""
    return [
        (k, redact(v))
        for k, v in upstream
        if k in RELAYED_RESPONSE_HEADERS or k.startswith(RELAYED_RESPONSE_PREFIXES)
    ]
