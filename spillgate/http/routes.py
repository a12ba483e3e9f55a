"""The server's one route table: every endpoint (API, model listing, health, metrics, admin API,
dashboard) with its methods, built once at start-up and matched per request.

A pattern is a path whose ``{name}`` segments match one non-empty segment each (percent-decoded
into the endpoint's ``params``). A route's ``area`` says who answers its errors (the API's
protocol or the admin API's JSON); a path no route has belongs to the area its prefix names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from spillgate.http.messages import Request
from spillgate.http.response import ResponseWriter

Params = dict[str, str]
Endpoint = Callable[[Request, ResponseWriter, Params], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: str
    methods: tuple[str, ...]
    endpoint: Endpoint
    area: str
    """Who renders this route's errors (``"api"``, ``"admin"``)."""


@dataclass(frozen=True, slots=True)
class Match:
    route: Route | None
    """The route whose pattern matched (``None``: no route has this path)."""
    params: Params
    allowed: bool
    """The request's method is one of the route's."""


_NO_ROUTE = Match(None, {}, False)


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, Route] = {}
        self._templates: dict[int, list[tuple[list[str], Route]]] = {}
        for route in self.routes:
            if "{" in route.pattern:
                parts = route.pattern.split("/")
                self._templates.setdefault(len(parts), []).append((parts, route))
            elif route.pattern in self._exact:
                raise ValueError(f"two routes for {route.pattern}")
            else:
                self._exact[route.pattern] = route

    def match(self, method: str, path: str) -> Match:
        route = self._exact.get(path)
        if route is not None:
            return Match(route, {}, method in route.methods)
        parts = path.split("/")
        for pattern, route in self._templates.get(len(parts), ()):
            params = _bind(pattern, parts)
            if params is not None:
                return Match(route, params, method in route.methods)
        return _NO_ROUTE


def _bind(pattern: list[str], parts: list[str]) -> Params | None:
    params: Params = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = unquote(got)
        elif want != got:
            return None
    return params
