"""Client API keys: stored as SHA-256 hashes, checked without keeping the key."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

from spillgate.config.schema import ClientKey
from spillgate.limits import SPENT, Refusal
from spillgate.protocols.errors import ErrorKind, GatewayError


def hash_key(key: str) -> str:
    """The config form of a client key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "sk-sg-" + secrets.token_urlsafe(32)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if any."""
    auth = headers.get("authorization")
    if not auth:
        return None
    scheme, _, token = auth.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` or ``x-api-key`` (Anthropic style)."""
    token = bearer_token(headers)
    if token is not None:
        return token
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class ClientAuth:
    """Maps a presented key to its :class:`ClientKey`; open when no keys are configured."""

    def __init__(self, keys: tuple[ClientKey, ...], stored: tuple[ClientKey, ...] = ()) -> None:
        self.configured = keys
        self.stored: tuple[ClientKey, ...] = ()
        self.any_made = False
        self._by_digest: dict[str, ClientKey] = {}
        self.enabled = False
        self.set_stored(stored)

    def set_stored(self, stored: tuple[ClientKey, ...], *, any_made: bool = False) -> None:
        """The active keys made with ``spillgate keys create`` (re-read from the store while running).

        ``any_made``: the store holds keys, revoked ones included. Auth stays on then even with no
        active key: revoking the last key must not open the gateway. A key in both places is the
        config's (its limits are the ones written down there).
        """
        by_digest = {k.sha256: k for k in stored}
        by_digest.update({k.sha256: k for k in self.configured})
        self.stored = stored
        self.any_made = any_made
        self._by_digest = by_digest
        self.enabled = bool(by_digest) or any_made

    @property
    def keys(self) -> tuple[ClientKey, ...]:
        return tuple(self._by_digest.values())

    def authenticate(self, headers: dict[str, str]) -> ClientKey | None:
        """The caller's key, ``None`` when auth is off; raises a 401 GatewayError otherwise."""
        if not self.enabled:
            return None
        key = presented_key(headers)
        if key is None:
            raise GatewayError(
                401,
                ErrorKind.AUTHENTICATION,
                "missing API key: send your Spillgate key as 'Authorization: Bearer <key>' "
                "or 'x-api-key: <key>'",
                code="invalid_api_key",
                should_retry=False,
            )
        found = self._by_digest.get(hashlib.sha256(key.encode("utf-8")).hexdigest())
        if found is None:
            raise GatewayError(
                401,
                ErrorKind.AUTHENTICATION,
                "invalid API key: this key is not one of the gateway's client keys",
                code="invalid_api_key",
                should_retry=False,
            )
        return found


def refusal_error(refusal: Refusal) -> GatewayError:
    """A client-limit refusal in the client's protocol: 403 for a model, 429 + Retry-After otherwise."""
    if refusal.limit == "model":
        return GatewayError(
            403,
            ErrorKind.PERMISSION,
            refusal.message,
            code="model_not_allowed",
            param="model",
            should_retry=False,
        )
    if refusal.limit in SPENT:
        # insufficient_quota: OpenAI clients (Codex) stop instead of retrying into a spent budget.
        return GatewayError(
            429,
            ErrorKind.QUOTA,
            refusal.message,
            code="insufficient_quota",
            retry_after=refusal.retry_after,
            should_retry=False,
        )
    return GatewayError(
        429,
        ErrorKind.RATE_LIMITED,
        refusal.message,
        code="rate_limit_exceeded",
        retry_after=refusal.retry_after,
        should_retry=True,
    )
