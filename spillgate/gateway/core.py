"""The gateway's HTTP handler: endpoints, auth, parsing, routing, forwarding."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import orjson

from spillgate.config.schema import WILDCARD, ClientKey, Route, Settings
from spillgate.http.browser import browser_denial
from spillgate.http.server import Request, ResponseWriter
from spillgate.limits import SPENT
from spillgate.observe.loops import LoopReport
from spillgate.protocols.apis import Api, family_for_path
from spillgate.protocols.errors import ErrorKind, GatewayError, error_for_status, render_error
from spillgate.protocols.request import parse_request
from spillgate.routing.plan import compatible_routes

from .auth import ClientAuth, refusal_error
from .dispatch import Dispatcher
from .exchange import Exchange
from .quota import codex_refusal
from .runtime import Runtime, StoredKeys
from .tokens import count_tokens

log = logging.getLogger("spillgate.gateway")

_JSON = [("content-type", "application/json")]


class Gateway:
    """One configuration's request handling on a :class:`Runtime` (the state that outlives it);
    :meth:`handle` is the HTTP server's handler. A reload builds a new Gateway on the same Runtime."""

    dispatcher: Dispatcher

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        """``runtime``: the state to serve on (health, budgets, limits, metrics, pools...); a new
        one for ``settings`` when omitted. A reload first applies the new settings to it with
        :meth:`Runtime.configure`."""
        self.settings = settings
        self.runtime = runtime = runtime if runtime is not None else Runtime.create(settings)
        self.active = 0
        """Requests this gateway is handling (a retired gateway closes its pools at 0)."""
        self.auth = ClientAuth(settings.client_keys)
        self.auth.set_stored(runtime.stored_keys.keys, any_made=runtime.stored_keys.any_made)
        self.clients = runtime.pools.for_settings(settings)
        # Shorthands for the admin API, the dashboard and tests.
        self.health = runtime.health
        self.budget = runtime.budget
        self.inflight = runtime.inflight
        self.events = runtime.events
        self.metrics = runtime.metrics
        self.loops = runtime.loops
        self.limiter = runtime.limiter
        self.classifier = runtime.classifier
        self._count_tokens_if_limited()
        self.metrics.configured = frozenset([*settings.models, *settings.deprecated])
        self.dispatcher = Dispatcher(settings, self.clients, runtime)
        self._routes: dict[tuple[str, Api], tuple[Route, ...]] = {
            (alias.name, api): compatible_routes(alias, api, settings.providers)
            for alias in settings.models.values()
            for api in Api
        }
        if settings.metrics:
            self._register_gauges()
        self._models_openai = orjson.dumps(self._model_list_openai())
        self._models_anthropic = orjson.dumps(self._model_list_anthropic())

    def set_stored_keys(self, keys: tuple[ClientKey, ...], *, any_made: bool) -> None:
        """The active keys of the usage store (``spillgate keys create``), re-read while running."""
        self.runtime.stored_keys = StoredKeys(keys, any_made)
        self.auth.set_stored(keys, any_made=any_made)
        self._count_tokens_if_limited()

    def _count_tokens_if_limited(self) -> None:
        """The limiter follows finished requests' tokens and costs only while some key has a token
        or spend limit (with no observer at all, request events are not even built)."""
        needed = any(k.limits.tpm is not None or k.limits.budgeted for k in self.auth.keys)
        if needed:
            self.events.subscribe(self.limiter)
        else:
            self.events.unsubscribe(self.limiter)

    # -- endpoints (entries of the server's route table; see spillgate.app) -------------------
    async def serve_api(self, api: Api, request: Request, writer: ResponseWriter) -> None:
        """``POST`` to an API endpoint: authenticate, parse, route, dispatch."""
        await self._answering(self._serve_api(api, request, writer), request, writer)

    async def count_tokens(self, api: Api, request: Request, writer: ResponseWriter) -> None:
        """``POST`` to an API's token-count endpoint (``/v1/messages/count_tokens``)."""
        await self._answering(self._count_tokens(api, request, writer), request, writer)

    async def _count_tokens(self, api: Api, request: Request, writer: ResponseWriter) -> None:
        self._check_open_api(request)
        self.auth.authenticate(request.headers)
        parsed = parse_request(api, request.body, request.headers)
        alias, _ = self.settings.resolve(parsed.model)
        if alias is None:
            raise self._unknown_model(parsed.model)
        counted = await count_tokens(
            parsed,
            self._routes[(alias.name, api)],
            self.settings.providers,
            self.clients,
            self.health,
            request.headers,
        )
        await writer.send(200, counted.headers(), counted.body())

    async def list_models(self, request: Request, writer: ResponseWriter) -> None:
        """``GET /v1/models``: the public model names, in the asking client's shape."""
        await self._answering(self._list_models(request, writer), request, writer)

    async def refuse(self, request: Request, writer: ResponseWriter, error: GatewayError) -> None:
        """An error of the API area (unknown endpoint, wrong method), in the path's protocol."""
        await self._answering(_raise(error), request, writer)

    async def _answering(self, work: Awaitable[None], request: Request, writer: ResponseWriter) -> None:
        """Run an endpoint, counted as active (a retired gateway waits for these), its
        :class:`GatewayError` answered in the protocol of the path."""
        self.active += 1
        try:
            await work
        except GatewayError as error:
            if writer.started:
                writer.abort()
                return
            headers, body = render_error(family_for_path(request.path), error)
            await writer.send(error.status, headers, body)
        finally:
            self.active -= 1

    async def _list_models(self, request: Request, writer: ResponseWriter) -> None:
        self._check_open_api(request)
        self.auth.authenticate(request.headers)
        anthropic = "anthropic-version" in request.headers
        await writer.send(200, _JSON, self._models_anthropic if anthropic else self._models_openai)

    def _register_gauges(self) -> None:
        m, health, budget, classifier = self.metrics, self.health, self.budget, self.classifier
        counters = self.runtime.counters
        m.gauge(
            "spillgate_scope_open",
            "Health scopes that are not closed (1 per scope): state open, half_open or disabled.",
            ("scope", "state", "error_class"),
            lambda: [
                ((s.key, s.state, s.last_error.value if s.last_error else ""), 1.0)
                for s in health.snapshot()
                if s.state != "closed"
            ],
            fleet_wide=True,
        )
        m.gauge(
            "spillgate_scope_cooldown_seconds",
            "Seconds until an open scope may be tried again (+Inf: disabled until an operator acts).",
            ("scope",),
            lambda: [((s.key,), float(s.until)) for s in health.snapshot() if s.until is not None],
            fleet_wide=True,
        )
        m.gauge(
            "spillgate_inflight_requests",
            "Requests in flight per account.",
            ("account",),
            lambda: [((a,), float(n)) for a, n in self.inflight.local_counts.items()],
        )
        m.gauge(
            "spillgate_retry_budget_limit",
            "Extra attempts the retry budget allows in its current window.",
            (),
            lambda: [((), budget.snapshot().limit)],
            fleet_wide=True,
        )
        m.gauge(
            "spillgate_loop_sessions",
            "Sessions whose requests keep failing or repeating the same body in the last minute.",
            ("reason",),
            lambda: _count_by_reason(self.loops.looping()),
            fleet_wide=True,
        )
        m.counter_from(
            "spillgate_retry_budget_rejections_total",
            "Extra attempts refused because the retry budget was spent.",
            (),
            lambda: [((), float(budget.rejected_total))],
        )
        m.counter_from(
            "spillgate_error_rule_hits_total",
            "Failures matched by each classification rule (built-in and operator rules, rewrites included).",
            ("rule",),
            lambda: [((name,), float(n)) for name, n in classifier.hits.items() if n],
        )
        m.counter_from(
            "spillgate_client_limit_refusals_total",
            "Requests refused by a client key's limits (model, rpm, tpm, concurrency, budget).",
            ("client_key", "limit"),
            lambda: [((key, limit), float(n)) for (key, limit), n in self.limiter.refusals.items()],
        )
        m.counter_from(
            "spillgate_upstream_pool_full_total",
            "Attempts that found every pooled connection to the provider busy for their whole wait "
            "(providers.<name>.max_connections): nothing was sent, the next route was tried.",
            ("provider",),
            lambda: [((name,), float(c.pool_full)) for name, c in self.clients.items()],
        )
        m.counter_from(
            "spillgate_malformed_events_total",
            "Malformed stream events dropped.",
            (),
            lambda: [((), float(counters.malformed_events))],
        )
        prices = self.runtime.prices
        m.counter_from(
            "spillgate_unpriced_attempts_total",
            "Attempts costed without a known price, by upstream model (their cost is unknown, not 0): "
            "set one under pricing.models or pricing.providers.",
            ("model",),
            lambda: m.labelled_models(prices.unknown),
        )

    def error_responder(self, status: int, message: str, path: str) -> tuple[list[tuple[str, str]], bytes]:
        """Errors the HTTP layer answers on its own (oversized or malformed requests)."""
        return render_error(family_for_path(path), error_for_status(status, message))

    # -- API endpoints ------------------------------------------------------------------
    def _check_open_api(self, request: Request) -> None:
        """With no client keys the API is open to loopback: not to a web page on that machine."""
        if self.auth.enabled:
            return
        denied = browser_denial(request.headers, loopback_only=True)
        if denied is not None:
            raise GatewayError(
                denied.status, ErrorKind.PERMISSION, denied.message, code=denied.code, should_retry=False
            )

    async def _serve_api(self, api: Api, request: Request, writer: ResponseWriter) -> None:
        self._check_open_api(request)
        client_key = self.auth.authenticate(request.headers)
        parsed = parse_request(api, request.body, request.headers)
        alias, replacement = self.settings.resolve(parsed.model)
        if alias is None:
            raise self._unknown_model(parsed.model)
        routes = self._routes[(alias.name, api)]
        if not routes:
            raise GatewayError(
                404,
                ErrorKind.NOT_FOUND,
                f"model {parsed.model!r} has no route that serves the {api.title} API: its routes' "
                "providers do not serve it and none may translate (translate: false, or a '*' route); "
                "add a route to a provider of that API, or allow translation",
                code="model_not_found",
                param="model",
                should_retry=False,
            )
        extra: list[tuple[str, str]] = []
        if replacement is not None:
            extra.append(("deprecation", "true"))
            extra.append(("x-spillgate-model-replacement", replacement))
        exchange = Exchange(
            parsed=parsed,
            client_headers=request.headers,
            alias=alias,
            routes=routes,
            writer=writer,
            extra_headers=extra,
            client_key=client_key.name if client_key else None,
            started=self.runtime.clock(),
        )
        if client_key is None or client_key.limits.unlimited:
            await self.dispatcher.serve(exchange)
            return
        refusal = await self.limiter.check(client_key, parsed.model, alias.name)
        if refusal is not None:
            error = refusal_error(refusal)
            final = None
            if refusal.limit in SPENT:
                final = codex_refusal(api, parsed.stream, parsed.model, request.headers, error)
            if final is None:
                raise error
            await writer.send(200, *final)
            return
        try:
            await self.dispatcher.serve(exchange)
        finally:
            self.limiter.release(client_key)

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

    async def retire(self, *, poll: float = 0.1, limit: float = 3600.0) -> None:
        """After a reload: once this gateway's last request (a long stream, say) has ended, close
        the connection pools the runtime no longer uses (the successor did not take them over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while self.active > 0 and loop.time() < deadline:
            await asyncio.sleep(poll)
        kept = self.runtime.pools.in_use()
        for client in self.clients.values():
            if id(client) not in kept:
                await client.close()


def _count_by_reason(reports: list[LoopReport]) -> list[tuple[tuple[str, ...], float]]:
    counts = {"failing": 0.0, "repeating": 0.0}
    for report in reports:
        counts[report.reason] += 1
    return [((reason,), n) for reason, n in counts.items()]


async def _raise(error: GatewayError) -> None:
    raise error


def method_not_allowed(request: Request, methods: tuple[str, ...]) -> GatewayError:
    return GatewayError(
        405,
        ErrorKind.METHOD_NOT_ALLOWED,
        f"method {request.method} is not allowed on {request.path}; use {' or '.join(methods)}",
        code="method_not_allowed",
        should_retry=False,
        extra_headers=(("allow", ", ".join(methods)),),
    )


def unknown_endpoint(request: Request) -> GatewayError:
    return GatewayError(
        404,
        ErrorKind.NOT_FOUND,
        f"no such endpoint: {request.method} {request.path}; Spillgate serves "
        "POST /v1/chat/completions, POST /v1/responses, POST /v1/messages and GET /v1/models",
        code="unknown_url",
        should_retry=False,
    )
