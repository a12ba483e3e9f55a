"""The dashboard page: one self-contained HTML file (inline CSS and JS, SVG charts drawn by hand).

The page holds no data and needs no token to load; its script reads the admin token from the URL
fragment (``#token=...``, never sent to the server) or a form, keeps it in sessionStorage and polls
the admin JSON API with it. The Content-Security-Policy lets it talk to this gateway only.
"""

from __future__ import annotations

import functools
from importlib import resources

DASHBOARD_HEADERS = [
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
]


@functools.cache
def dashboard_html() -> bytes:
    """The page, read once from the package (``spillgate/admin/dashboard.html``)."""
    return resources.files("spillgate.admin").joinpath("dashboard.html").read_bytes()
