"""Headers between the client and the upstream: what passes, what is replaced."""

from __future__ import annotations

from spillgate.config.schema import Account, Provider

# Never forwarded to the upstream: hop-by-hop headers, framing we recompute, and the
# client's own credentials (the chosen account's credential replaces them).
_REQUEST_DROP = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "expect",
        "accept-encoding",
        "authorization",
        "x-api-key",
        "cookie",
    }
)

# Never relayed to the client: hop-by-hop and framing headers, and upstream cookies.
_RESPONSE_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "set-cookie",
        "alt-svc",
        "server",
    }
)

ANTHROPIC_VERSION = "2023-06-01"


def upstream_headers(
    client_headers: dict[str, str], provider: Provider, account: Account | None
) -> list[tuple[str, str]]:
    """Client headers minus credentials and hop-by-hop ones, plus the account's credential."""
    out = [(k, v) for k, v in client_headers.items() if k not in _REQUEST_DROP]
    out.append(("accept-encoding", "identity"))
    secret = account.api_key if account is not None else provider.api_key
    if provider.protocol == "anthropic":
        if "anthropic-version" not in client_headers:
            out.append(("anthropic-version", ANTHROPIC_VERSION))
        if secret is not None:
            out.append(("x-api-key", secret.reveal()))
    elif secret is not None:
        out.append(("authorization", "Bearer " + secret.reveal()))
    if provider.headers:
        overridden = {k.lower() for k, _ in provider.headers}
        out = [(k, v) for k, v in out if k not in overridden]
        out.extend((k.lower(), v) for k, v in provider.headers)
    return out


def client_headers(upstream: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers fit to relay to the client."""
    return [(k, v) for k, v in upstream if k not in _RESPONSE_DROP]
