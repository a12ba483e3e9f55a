"""Safe from browsers: a web page on the same machine must not act on the gateway.

Without an admin token the admin API, ``/metrics`` and (with no client keys) the API answer
loopback peers only; but a browser on that machine is a loopback peer too. So:

* with no admin token (or, for the API, no client keys), the request's ``Host`` must be a loopback
  name or address (``localhost``, ``127.0.0.1``, ``[::1]``, any port): a page reaching the gateway
  through DNS rebinding carries its own host name;
* an ``Origin``, when a browser sends one, must be the gateway's own (same host and port as
  ``Host``), token or not: another page's fetch or form is refused;
* without an admin token, a state-changing admin call must be JSON (``content-type:
  application/json``) and carry ``x-spillgate-admin: 1``: a plain HTML form or a ``text/plain``
  POST cannot, and a cross-origin script cannot add the header without a CORS preflight, which
  the gateway never grants (with a token, the ``Authorization`` header does the same).

:func:`browser_denial` is the pure rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

ADMIN_HEADER = "x-spillgate-admin"
"""The header a state-changing admin call must carry (value ``1``); the dashboard sends it."""


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request is refused: an HTTP status, a machine-readable code and a message."""

    status: int
    code: str
    message: str


FOREIGN_HOST = Denied(
    403,
    "host_not_allowed",
    "without an admin token (or client keys) the gateway answers requests addressed to a loopback "
    "host only (localhost, 127.0.0.1, [::1]); set admin_token (client_keys for the API) to serve "
    "other host names",
)
CROSS_ORIGIN = Denied(403, "cross_origin", "requests from another web origin are refused")
NOT_JSON = Denied(
    415,
    "json_required",
    f"a state-changing admin call needs 'content-type: application/json' and '{ADMIN_HEADER}: 1'",
)


def loopback_host(host: str) -> bool:
    """Whether a ``Host`` header value names this machine's loopback (any port)."""
    text = host.strip().lower()
    if text.startswith("["):
        name = text[1 : text.find("]")] if "]" in text else ""
    else:
        name = text.rpartition(":")[0] if text.count(":") == 1 else text
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` is the gateway as addressed by ``Host``."""
    if origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    default = "80" if parts.scheme == "http" else "443"
    return _with_port(parts.netloc.lower(), default) == _with_port(host.strip().lower(), "80")


def _with_port(netloc: str, default: str) -> str:
    if netloc.startswith("["):
        return netloc if "]:" in netloc else f"{netloc}:{default}"
    return netloc if ":" in netloc else f"{netloc}:{default}"


def browser_denial(
    headers: Mapping[str, str], *, loopback_only: bool, state_changing: bool = False
) -> Denied | None:
    """``None`` when the request may proceed, else why not (see the module docstring).
    ``loopback_only``: no token or key guards the endpoint, so only loopback hosts are served."""
    host = headers.get("host", "")
    if loopback_only and not loopback_host(host):
        return FOREIGN_HOST
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, host):
        return CROSS_ORIGIN
    if state_changing and loopback_only:
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/json" or headers.get(ADMIN_HEADER, "").strip() != "1":
            return NOT_JSON
    return None
