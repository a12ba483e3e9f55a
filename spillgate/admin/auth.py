"""Who may use the admin API (and ``/metrics``): the bearer of the admin token, else loopback only.

* ``admin_token`` configured: ``Authorization: Bearer <admin_token>`` is required (401 without
  it); the presented token's SHA-256 digest is compared in constant time with the configured
  one's, and neither token ever appears in an answer or a log.
* no ``admin_token``: only loopback peers (127.0.0.0/8, ::1) are served; anyone else gets 403
  saying to set ``admin_token``.

:func:`admin_decision` is the pure rule; :class:`AdminAuth` holds the configured digest.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

from spillgate.admin.errors import AdminError
from spillgate.config.schema import Secret
from spillgate.gateway.auth import bearer_token
from spillgate.http.browser import Denied as Denied

_CHALLENGE = (("www-authenticate", 'Bearer realm="spillgate-admin"'),)


MISSING_TOKEN = Denied(
    401,
    "missing_admin_token",
    "the admin API needs the gateway's admin token: 'Authorization: Bearer <admin_token>'",
)
WRONG_TOKEN = Denied(401, "invalid_admin_token", "invalid admin token: it is not this gateway's admin_token")
NOT_LOOPBACK = Denied(
    403,
    "admin_loopback_only",
    "no admin_token is configured, so the admin API answers only loopback clients (127.0.0.1, ::1); "
    "set admin_token in the configuration to use it from elsewhere",
)


def is_loopback(remote: str) -> bool:
    """Whether ``remote`` (``ip:port`` as the HTTP server reports the peer) is a loopback address."""
    text = remote.strip()
    # "127.0.0.1:5000", "::1:5000" (IPv6 without brackets, as the server writes it), "[::1]:5000"
    host = text[1 : text.find("]")] if text.startswith("[") else text.rpartition(":")[0]
    host = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def admin_decision(configured: bytes | None, presented: str | None, remote: str) -> Denied | None:
    """``None`` when the caller may proceed, else why not. ``configured`` is the admin token's
    SHA-256 digest (``None``: no token configured)."""
    if configured is None:
        return None if is_loopback(remote) else NOT_LOOPBACK
    if presented is None:
        return MISSING_TOKEN
    if not hmac.compare_digest(digest(presented), configured):
        return WRONG_TOKEN
    return None


class AdminAuth:
    """The admin check for one configured token (or none). Share it: ``/metrics`` uses the same rule."""

    __slots__ = ("_digest",)

    def __init__(self, token: Secret | None) -> None:
        self._digest = digest(token.reveal()) if token is not None and token.reveal() else None

    @property
    def token_configured(self) -> bool:
        return self._digest is not None

    def decide(self, headers: Mapping[str, str], remote: str) -> Denied | None:
        return admin_decision(self._digest, bearer_token(headers), remote)

    def check(self, headers: Mapping[str, str], remote: str) -> None:
        """Raise :class:`AdminError` (401 / 403) unless the caller may use the admin API."""
        denied = self.decide(headers, remote)
        if denied is not None:
            raise AdminError(
                denied.status, denied.message, denied.code, headers=_CHALLENGE if denied.status == 401 else ()
            )
