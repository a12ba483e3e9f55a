"""The gateway's HTTP handler: endpoints, auth, parsing, routing, forwarding."""

from __future__ import annotations

import logging
import random
import time

import orjson

from spillgate.config.schema import WILDCARD, ModelAlias, Route, Settings
from spillgate.http.client import HttpClient
from spillgate.http.server import Request, ResponseWriter
from spillgate.protocols.apis import ROUTES, Api, family_for_path
from spillgate.protocols.errors import ErrorKind, GatewayError, error_for_status, render_error
from spillgate.protocols.request import ParsedRequest, parse_request
from spillgate.routing.plan import compatible_routes, order_routes
from spillgate.routing.selection import choose_account
from spillgate.state.memory import HealthState, InflightCounter, SessionAffinity, account_scope

from .auth import ClientAuth
from .relay import Attempt, relay

log = logging.getLogger("spillgate.gateway")

_JSON = [("content-type", "application/json")]


class Gateway:
    """Owns the per-process runtime state; :meth:`handle` is the HTTP server's handler."""

    def __init__(self, settings: Settings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.auth = ClientAuth(settings.client_keys)
        self.clients = {
            name: HttpClient(p.base_url, max_connections=p.max_connections)
            for name, p in settings.providers.items()
        }
        self.health = HealthState()
        self.inflight = InflightCounter()
        self.affinity = SessionAffinity(settings.limits.session_bindings)
        self._rng = rng or random.Random()
        self._rotation = 0
        self._routes: dict[tuple[str, Api], tuple[Route, ...]] = {
            (alias.name, api): compatible_routes(alias, api, settings.providers)
            for alias in settings.models.values()
            for api in Api
        }
        self._models_openai = orjson.dumps(self._model_list_openai())
        self._models_anthropic = orjson.dumps(self._model_list_anthropic())

    # -- HTTP entry point ---------------------------------------------------------------
    async def handle(self, request: Request, writer: ResponseWriter) -> None:
        try:
            api = ROUTES.get(request.path)
            if api is not None:
                if request.method != "POST":
                    raise _method_not_allowed(request, "POST")
                await self._serve_api(api, request, writer)
            elif request.path in ("/v1/models", "/models"):
                if request.method != "GET":
                    raise _method_not_allowed(request, "GET")
                self.auth.authenticate(request.headers)
                anthropic = "anthropic-version" in request.headers
                await writer.send(200, _JSON, self._models_anthropic if anthropic else self._models_openai)
            elif request.path == "/healthz":
                if request.method not in ("GET", "HEAD"):
                    raise _method_not_allowed(request, "GET")
                await writer.send(200, _JSON, b'{"status":"ok"}')
            else:
                raise GatewayError(
                    404,
                    ErrorKind.NOT_FOUND,
                    f"no such endpoint: {request.method} {request.path}; Spillgate serves "
                    "POST /v1/chat/completions, POST /v1/responses, POST /v1/messages and GET /v1/models",
                    code="unknown_url",
                    should_retry=False,
                )
        except GatewayError as error:
            if writer.started:
                writer.abort()
                return
            headers, body = render_error(family_for_path(request.path), error)
            await writer.send(error.status, headers, body)

    def error_responder(self, status: int, message: str, path: str) -> tuple[list[tuple[str, str]], bytes]:
        """Errors the HTTP layer answers on its own (oversized or malformed requests)."""
        return render_error(family_for_path(path), error_for_status(status, message))

    # -- API endpoints ------------------------------------------------------------------
    async def _serve_api(self, api: Api, request: Request, writer: ResponseWriter) -> None:
        self.auth.authenticate(request.headers)
        parsed = parse_request(api, request.body, request.headers)
        alias, replacement = self.settings.resolve(parsed.model)
        if alias is None:
            raise self._unknown_model(parsed.model)
        routes = self._routes[(alias.name, api)]
        if not routes:
            raise GatewayError(
                404,
                ErrorKind.NOT_FOUND,
                f"model {parsed.model!r} has no route that speaks the {api.title} API; "
                "add a route to a provider of that protocol",
                code="model_not_found",
                param="model",
                should_retry=False,
            )
        attempt = self._first_attempt(alias, routes, parsed)
        extra = [("x-spillgate-route", attempt.route.label)]
        if replacement is not None:
            extra.append(("deprecation", "true"))
            extra.append(("x-spillgate-model-replacement", replacement))
        account = attempt.account
        if account is not None:
            self.inflight.acquire(account.id)
        try:
            await relay(attempt, parsed, request.headers, self.clients[attempt.provider.name], writer, extra)
        finally:
            if account is not None:
                self.inflight.release(account.id)

    def _first_attempt(self, alias: ModelAlias, routes: tuple[Route, ...], parsed: ParsedRequest) -> Attempt:
        """The first usable route and account, in the alias's order."""
        reasons: list[str] = []
        for route in order_routes(routes, self._rng) if len(routes) > 1 else routes:
            provider = self.settings.providers[route.provider]
            upstream_model = route.upstream_model(parsed.model)
            if not route.accounts:
                return Attempt(route, provider, None, upstream_model)
            pool = [self.settings.accounts[a] for a in route.accounts]
            session = f"{route.label}|{parsed.session_key}" if parsed.session_key else None
            self._rotation += 1
            choice = choose_account(
                pool,
                upstream_model,
                bound=self.affinity.get(session) if session else None,
                healthy=lambda account_id: self.health.is_available(account_scope(account_id)),
                inflight=self.inflight.counts,
                rotation=self._rotation,
            )
            if choice.account is None:
                reasons.append(f"{route.label}: {choice.reason}")
                continue
            if session is not None and choice.rebind:
                self.affinity.bind(session, choice.account.id)
            return Attempt(route, provider, choice.account, upstream_model)
        raise GatewayError(
            503,
            ErrorKind.UPSTREAM_UNAVAILABLE,
            f"no route of model {alias.name!r} can take the request now ({'; '.join(reasons)})",
            code="server_error",
            retry_after=self._retry_after(routes),
            should_retry=True,
        )

    def _retry_after(self, routes: tuple[Route, ...]) -> int:
        """Seconds until the first account of these routes leaves its cooldown (at least 1)."""
        now = time.monotonic()
        waits = [
            cooldown.until - now
            for route in routes
            for account_id in route.accounts
            if (cooldown := self.health.cooldown(account_scope(account_id))) is not None
        ]
        finite = [w for w in waits if w != float("inf")]
        return max(1, min(60, int(min(finite) + 0.999))) if finite else 1

    def _unknown_model(self, model: str) -> GatewayError:
        names = sorted(n for n in [*self.settings.models, *self.settings.deprecated] if n != WILDCARD)
        listing = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
        return GatewayError(
            404,
            ErrorKind.NOT_FOUND,
            f"model {model!r} is not served by this gateway (available: {listing or 'none'})",
            code="model_not_found",
            param="model",
            should_retry=False,
        )

    # -- model listings -----------------------------------------------------------------
    def _public_names(self) -> list[str]:
        return [n for n in [*self.settings.models, *self.settings.deprecated] if n != WILDCARD]

    def _model_list_openai(self) -> dict[str, object]:
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "spillgate"}
                for n in self._public_names()
            ],
        }

    def _model_list_anthropic(self) -> dict[str, object]:
        names = self._public_names()
        return {
            "data": [
                {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}
                for n in names
            ],
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def _method_not_allowed(request: Request, allowed: str) -> GatewayError:
    return GatewayError(
        405,
        ErrorKind.METHOD_NOT_ALLOWED,
        f"method {request.method} is not allowed on {request.path}; use {allowed}",
        code="method_not_allowed",
        should_retry=False,
        extra_headers=(("allow", allowed),),
    )
