"""The route table: exact paths, ``{name}`` segments, methods, and paths no route has."""

from __future__ import annotations

import pytest

from spillgate.http.messages import Request
from spillgate.http.response import ResponseWriter
from spillgate.http.routes import Params, Route, RouteTable


async def _noop(request: Request, writer: ResponseWriter, params: Params) -> None:
    return None


TABLE = RouteTable(
    [
        Route("/v1/chat/completions", ("POST",), _noop, "api"),
        Route("/healthz", ("GET", "HEAD"), _noop, "api"),
        Route("/admin/requests/{id}", ("GET", "HEAD"), _noop, "admin"),
        Route("/admin/accounts/{name}/{action}", ("POST",), _noop, "admin"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "pattern", "allowed", "params"),
    [
        ("POST", "/v1/chat/completions", "/v1/chat/completions", True, {}),
        ("GET", "/v1/chat/completions", "/v1/chat/completions", False, {}),
        ("HEAD", "/healthz", "/healthz", True, {}),
        ("GET", "/admin/requests/sg-1", "/admin/requests/{id}", True, {"id": "sg-1"}),
        ("GET", "/admin/requests/a%2Fb", "/admin/requests/{id}", True, {"id": "a/b"}),
        ("GET", "/admin/requests/", None, False, {}),  # an empty segment binds nothing
        (
            "POST",
            "/admin/accounts/oa-1/drain",
            "/admin/accounts/{name}/{action}",
            True,
            {"name": "oa-1", "action": "drain"},
        ),
        (
            "GET",
            "/admin/accounts/oa-1/drain",
            "/admin/accounts/{name}/{action}",
            False,
            {"name": "oa-1", "action": "drain"},
        ),
        ("POST", "/admin/accounts/oa-1", None, False, {}),
        ("POST", "/admin/accounts/oa-1/drain/x", None, False, {}),
        ("GET", "/v1/chat/completions/", None, False, {}),
        ("GET", "/nowhere", None, False, {}),
    ],
)
def test_match(method: str, path: str, pattern: str | None, allowed: bool, params: dict[str, str]) -> None:
    match = TABLE.match(method, path)
    assert (match.route.pattern if match.route else None, match.allowed, match.params) == (
        pattern,
        allowed,
        params,
    )


def test_two_routes_for_one_path_are_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match="two routes for /healthz"):
        RouteTable([Route("/healthz", ("GET",), _noop, "api"), Route("/healthz", ("POST",), _noop, "api")])
