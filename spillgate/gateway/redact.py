"""Keeps the gateway's own credentials out of what it says: an upstream (or a proxy in front of
one) may echo the key it was sent in an error message, and that text flows on to clients, logs,
health reasons and the dashboard. One place scrubs it, where a failure enters the gateway."""

from __future__ import annotations

from collections.abc import Iterable

from spillgate.config.schema import Settings

MASK = "[redacted]"
MIN_SECRET_CHARS = 8
"""Shorter values (a test's "x") are not searched for: they would mangle ordinary text."""


_CREDENTIAL_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "session")


class Redactor:
    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another is masked whole.
        found = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._text = tuple(found)
        self._bytes = tuple(s.encode("utf-8") for s in found)

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        secrets = [a.api_key.reveal() for a in settings.accounts.values()]
        secrets += [p.api_key.reveal() for p in settings.providers.values() if p.api_key is not None]
        secrets += [
            value
            for p in settings.providers.values()
            for name, value in p.headers
            if any(word in name.lower() for word in _CREDENTIAL_HEADER_WORDS)
        ]
        if settings.admin_token is not None:
            secrets.append(settings.admin_token.reveal())
        return cls(secrets)

    def text(self, value: str) -> str:
        for secret in self._text:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def body(self, value: bytes) -> bytes:
        for secret in self._bytes:
            if secret in value:
                value = value.replace(secret, MASK.encode())
        return value
