"""Client API keys: stored as SHA-256 hashes, checked without keeping the key."""

from __future__ import annotations

import hashlib
import secrets

from spillgate.config.schema import ClientKey
from spillgate.protocols.errors import ErrorKind, GatewayError


def hash_key(key: str) -> str:
    """The config form of a client key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "sk-sg-" + secrets.token_urlsafe(32)


def presented_key(headers: dict[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer`` or ``x-api-key`` (Anthropic style)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class ClientAuth:
    """Maps a presented key to its :class:`ClientKey`; open when no keys are configured."""

    def __init__(self, keys: tuple[ClientKey, ...]) -> None:
        self._by_digest = {k.sha256: k for k in keys}
        self.enabled = bool(keys)

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
