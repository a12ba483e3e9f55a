"""The admin HTTP handler: ``/admin/*`` (JSON, admin token) and ``/dashboard`` (the page shell).

Every ``/admin/`` request is checked by :class:`~spillgate.admin.auth.AdminAuth` first, so an
unknown path says nothing to a caller without the token. The gateway is looked up on the host
per request: a configuration reload replaces it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import orjson

from spillgate.admin import scopes
from spillgate.admin.auth import AdminAuth
from spillgate.admin.dashboard import DASHBOARD_HEADERS, dashboard_html
from spillgate.admin.errors import AdminError, render_admin_error
from spillgate.admin.health_view import health_report
from spillgate.admin.params import choice, duration, instant, limit, query_params, time_range
from spillgate.config.loader import ConfigError
from spillgate.config.schema import Settings
from spillgate.http.browser import browser_denial
from spillgate.http.routes import Endpoint, Params, Route
from spillgate.http.server import Request, ResponseWriter
from spillgate.observe.recent import RecentFailures
from spillgate.observe.timeline import Timeline
from spillgate.store import GROUP_BY, GroupBy, UsageStore

if TYPE_CHECKING:
    from spillgate.gateway.core import Gateway

log = logging.getLogger("spillgate.admin")

_T = TypeVar("_T")

USAGE_BY = ("client_key", "client_app", "public_model", "route", "account")
FAILURE_SOURCES = ("store", "memory")

_PROMETHEUS = [("content-type", "text/plain; version=0.0.4; charset=utf-8")]
_JSON = [("content-type", "application/json"), ("cache-control", "no-store")]

ENDPOINTS = (
    "GET /admin/health",
    "POST /admin/accounts/{id}/drain",
    "POST /admin/accounts/{id}/enable",
    "POST /admin/providers/{name}/drain",
    "POST /admin/providers/{name}/enable",
    "POST /admin/reload",
    "GET /admin/usage?by=client_key|client_app|public_model|route|account&since=&until=&limit=",
    "GET /admin/failures?limit=&since=&source=store|memory",
    "GET /admin/requests/{x-spillgate-request-id}",
    "GET /admin/keys",
    "GET /admin/timeline?window=15m",
    "GET /admin/loops?limit=",
    "GET /dashboard",
)


class AdminHost(Protocol):
    """What the admin API needs of the application (``spillgate.app.App``)."""

    @property
    def gateway(self) -> Gateway: ...

    @property
    def store(self) -> UsageStore | None: ...


Read = Callable[[Request], Awaitable[object]]


class AdminApi:
    def __init__(
        self,
        host: AdminHost,
        timeline: Timeline,
        recent: RecentFailures,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.timeline = timeline
        self.recent = recent
        self._clock = clock
        self._auth_for: Settings | None = None
        self._auth = AdminAuth(None)
        self._reads: dict[str, Read] = {
            "/admin": self._index,
            "/admin/": self._index,
            "/admin/health": self._health,
            "/admin/usage": self._usage,
            "/admin/failures": self._failures,
            "/admin/timeline": self._timeline,
            "/admin/loops": self._loops,
            "/admin/keys": self._keys,
        }

    # -- routes ---------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The admin API's, the dashboard's and ``/metrics``' entries of the server's route table."""
        reads = ("GET", "HEAD")
        table = [
            Route("/dashboard", reads, self._dashboard, "admin"),
            Route("/dashboard/", reads, self._dashboard, "admin"),
            Route("/metrics", reads, self._metrics, "admin"),
            *(
                Route(path, reads, self._json(_no_params(read)), "admin")
                for path, read in self._reads.items()
            ),
            Route("/admin/reload", ("POST",), self._json(lambda _r, _p: self._reload()), "admin"),
            Route("/admin/requests/{id}", reads, self._json(lambda _r, p: self._request(p["id"])), "admin"),
            Route("/admin/accounts/{name}/{action}", ("POST",), self._json(self._scope_action), "admin"),
            Route("/admin/providers/{name}/{action}", ("POST",), self._json(self._scope_action), "admin"),
        ]
        return table

    async def refuse(self, request: Request, writer: ResponseWriter, route: Route | None) -> None:
        """A path of the admin area that no route has (404), or a method its route does not take
        (405). Under ``/admin`` the token is checked first: an unknown path says nothing to a
        caller without it."""
        try:
            if request.path == "/admin" or request.path.startswith("/admin/"):
                self._guard(request)
                if route is None:
                    raise _unknown_endpoint(request)
            if route is None:
                raise AdminError(
                    404, f"no such page: {request.path}; the dashboard is /dashboard", "unknown_url"
                )
            _allow(request, *route.methods)
        except AdminError as error:
            await _send_error(writer, error)

    async def _dashboard(self, request: Request, writer: ResponseWriter, params: Params) -> None:
        await writer.send(200, DASHBOARD_HEADERS, dashboard_html())

    async def _metrics(self, request: Request, writer: ResponseWriter, params: Params) -> None:
        try:
            self._guard(request)
            gateway = self.host.gateway
            if not gateway.settings.metrics:
                raise AdminError(
                    404, "metrics are off in this gateway's config (metrics: off)", "unknown_url"
                )
        except AdminError as error:
            await _send_error(writer, error)
            return
        fleet = gateway.runtime.fleet
        # One of several workers: the others' counts too (the scrape is of the whole gateway).
        others = (
            await fleet.metrics.others("metrics") if fleet is not None and fleet.metrics is not None else []
        )
        await writer.send(200, _PROMETHEUS, gateway.metrics.render(others))

    def _json(self, work: Callable[[Request, Params], Awaitable[object]]) -> Endpoint:
        """An admin endpoint: the guard, then ``work``'s answer as JSON (or its AdminError)."""

        async def endpoint(request: Request, writer: ResponseWriter, params: Params) -> None:
            try:
                self._guard(request)
                payload = await work(request, params)
            except AdminError as error:
                await _send_error(writer, error)
                return
            await writer.send(
                200, _JSON, orjson.dumps(payload, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)
            )

        return endpoint

    def _guard(self, request: Request) -> None:
        """The admin token (else loopback clients only), and never for another web page."""
        auth = self.auth()
        auth.check(request.headers, request.remote)
        denied = browser_denial(
            request.headers,
            loopback_only=not auth.token_configured,
            state_changing=request.method not in ("GET", "HEAD"),
        )
        if denied is not None:
            raise AdminError(denied.status, denied.message, denied.code)

    def auth(self) -> AdminAuth:
        """The check for the current configuration's admin token (rebuilt after a reload)."""
        settings = self.host.gateway.settings
        if settings is not self._auth_for:
            self._auth = AdminAuth(settings.admin_token)
            self._auth_for = settings
        return self._auth

    async def _scope_action(self, request: Request, params: Params) -> object:
        """``POST /admin/accounts/{name}/drain|enable`` and ``/admin/providers/{name}/…``."""
        if params["action"] not in ("drain", "enable"):
            raise _unknown_endpoint(request)
        if request.path.startswith("/admin/accounts/"):
            return self._account_action(params["name"], params["action"])
        return self._provider_action(params["name"], params["action"])

    # -- endpoints ----------------------------------------------------------------------------------

    async def _index(self, request: Request) -> object:
        return {"endpoints": list(ENDPOINTS)}

    async def _worker_exports(self, name: str) -> list[Any]:
        """The other workers' last ``name`` export when this process is one of several, else []."""
        fleet = self.host.gateway.runtime.fleet
        if fleet is None or fleet.metrics is None:
            return []
        return await fleet.metrics.others(name)

    async def _health(self, request: Request) -> object:
        gw = self.host.gateway
        inflight: Mapping[str, int] = gw.inflight.counts
        others = await self._worker_exports("inflight")
        if others:  # every worker's own requests in flight, summed
            summed = dict(gw.inflight.local_counts)
            for counts in others:
                for account, n in dict(counts).items():
                    summed[str(account)] = summed.get(str(account), 0) + int(n)
            inflight = summed
        report = health_report(gw.settings, gw.health.snapshot(), inflight, self.recent, self._clock())
        return {**_fields(report), "retry_budget": gw.budget.snapshot()}

    async def _keys(self, request: Request) -> object:
        """Every client key (names and limits, never a hash) with its live use of those limits."""
        gw = self.host.gateway
        live = {u.name: u for u in gw.limiter.usage()}
        configured = {k.name for k in gw.auth.configured}
        refused: dict[str, dict[str, int]] = {}
        for (name, which), n in gw.limiter.refusals.items():
            refused.setdefault(name, {})[which] = n
        for other in await self._worker_exports("keys"):  # one of several workers: all of them
            for name, in_flight, refusals in other:
                mine = live.get(name)
                if mine is not None:
                    live[name] = dataclasses.replace(mine, in_flight=mine.in_flight + int(in_flight))
                for which, n in dict(refusals).items():
                    counts = refused.setdefault(name, {})
                    counts[which] = counts.get(which, 0) + int(n)
        keys = []
        for key in sorted(gw.auth.keys, key=lambda k: k.name):
            limits = key.limits
            keys.append(
                {
                    "name": key.name,
                    "source": "config" if key.name in configured else "store",
                    "limits": {
                        "models": None if limits.models is None else sorted(limits.models),
                        "rpm": limits.rpm,
                        "tpm": limits.tpm,
                        "max_concurrent": limits.max_concurrent,
                        "token_budget": limits.token_budget,
                        "spend_budget": limits.spend_budget,
                        "budget_period": limits.budget_period if limits.budgeted else None,
                    },
                    "live": live.get(key.name),
                    "refused": refused.get(key.name, {}),
                }
            )
        auth = "on" if gw.auth.enabled else "off (no client keys: the gateway is open)"
        return {"auth": auth, "keys": keys}

    async def _request(self, request_id: str) -> object:
        """One request and its attempts, by the id in its ``x-spillgate-request-id`` header."""
        store = self._store()
        requests = await _query(store.requests_for(request_id))
        if not requests:
            raise AdminError(
                404,
                f"no request {request_id!r} in the usage store (records arrive within about a second)",
                "unknown_request",
            )
        return {"request": requests[-1], "attempts": await _query(store.attempts_for(request_id))}

    def _account_action(self, account_id: str, action: str) -> object:
        gw = self.host.gateway
        if account_id not in gw.settings.accounts:
            known = ", ".join(sorted(gw.settings.accounts)) or "none"
            raise AdminError(404, f"unknown account {account_id!r} (known: {known})", "unknown_account")
        key = scopes.account_key(account_id)
        inflight = gw.inflight.counts.get(account_id, 0)
        if action == "drain":
            scopes.drain(gw.health, key, self._clock())
            return {
                "account": account_id,
                "state": "drained",
                "inflight": inflight,
                "message": f"no new requests go to account {account_id}; the {inflight} in flight finish",
            }
        cleared = scopes.enable(gw.health, key)
        return {"account": account_id, "state": "closed", "cleared": cleared}

    def _provider_action(self, provider: str, action: str) -> object:
        gw = self.host.gateway
        if provider not in gw.settings.providers:
            known = ", ".join(sorted(gw.settings.providers)) or "none"
            raise AdminError(404, f"unknown provider {provider!r} (known: {known})", "unknown_provider")
        key = scopes.provider_key(provider)
        routes = [
            r.label
            for alias in gw.settings.models.values()
            for r in alias.routes
            if r.provider == provider and not r.accounts
        ]
        if action == "drain":
            if not routes:
                raise AdminError(
                    409,
                    f"no route uses provider {provider!r} with its own key; drain its accounts instead",
                    "nothing_to_drain",
                )
            scopes.drain(gw.health, key, self._clock())
            return {"provider": provider, "state": "drained", "routes": routes}
        cleared = scopes.enable(gw.health, key, provider=provider)
        return {"provider": provider, "state": "closed", "routes": routes, "cleared": cleared}

    async def _reload(self) -> object:
        reload: Callable[[], Awaitable[object]] | None = getattr(self.host, "reload", None)
        if reload is None:
            raise AdminError(501, "this build cannot reload its configuration in place", "reload_unavailable")
        try:
            result = await reload()
        except ConfigError as exc:
            raise AdminError(400, f"configuration not reloaded: {exc}", "config_error") from None
        return {"reloaded": True, "result": result}

    def _store(self) -> UsageStore:
        store = self.host.store
        if store is None:
            raise AdminError(
                503,
                "no usage store is configured, so there is no usage to query: set usage.dsn "
                "(sqlite:PATH or postgresql://...) in the configuration",
                "usage_store_off",
            )
        return store

    async def _usage(self, request: Request) -> object:
        params = query_params(request.query)
        by = choice(params.get("by"), "by", USAGE_BY, "public_model")
        since, until = time_range(params.get("since"), params.get("until"), self._clock())
        count = limit(params.get("limit"), 50, 1000)
        store = self._store()
        if by not in GROUP_BY:
            raise AdminError(
                400, f"by: this usage store cannot group by {by}", "invalid_parameter", param="by"
            )
        rows = await _query(store.usage(cast(GroupBy, by), since, until))
        return {
            "by": by,
            "since": since,
            "until": until,
            "requests": sum(r.requests for r in rows),
            "errors": sum(r.errors for r in rows),
            "cost_usd": sum(r.cost_usd for r in rows),
            "wasted_usd": sum(r.wasted_usd for r in rows),
            "unpriced": sum(r.unpriced for r in rows),
            "rows": rows[:count],
        }

    async def _failures(self, request: Request) -> object:
        params = query_params(request.query)
        count = limit(params.get("limit"), 50, 500)
        since_text = params.get("since")
        since = instant(since_text, "since", self._clock()) if since_text and since_text.strip() else None
        store = self.host.store
        source = choice(
            params.get("source"), "source", FAILURE_SOURCES, "memory" if store is None else "store"
        )
        if source == "memory":
            return {
                "source": "memory",
                "requests": self.recent.failed_requests(count, since),
                "attempts": self.recent.failed_attempts(count, since),
            }
        store = self._store()
        return {
            "source": "store",
            "requests": await _query(store.recent_failures(count, since)),
            "attempts": await _query(store.recent_failed_attempts(count, since)),
        }

    async def _timeline(self, request: Request) -> object:
        params = query_params(request.query)
        text = params.get("window")
        window = duration(text, "window") if text and text.strip() else 900.0
        window = min(window, self.timeline.span)
        timeline = self.timeline
        fleet = self.host.gateway.runtime.fleet
        if fleet is not None and fleet.metrics is not None:  # one of several workers: all of them
            timeline = timeline.with_others(await fleet.metrics.others("timeline"))
        pricing = self.host.gateway.settings.pricing.enabled
        return {"window_seconds": window, "pricing": pricing, **_fields(timeline.view(window))}

    async def _loops(self, request: Request) -> object:
        """Sessions looping now (failing, or repeating one body) and what each spent in the window,
        the costliest first. With a shared state store the detector sees every instance's requests."""
        count = limit(query_params(request.query).get("limit"), 20, 200)
        gw = self.host.gateway
        loops = gw.loops
        reports = sorted(loops.looping(), key=lambda r: (-r.cost_usd, -r.count, r.session))
        return {
            "watching": gw.settings.metrics,
            "window_seconds": loops.window,
            "threshold": loops.threshold,
            "sessions_looping": len(reports),
            "cost_usd": sum(r.cost_usd for r in reports),
            "unpriced": sum(r.unpriced for r in reports),
            "sessions": [_fields(r) for r in reports[:count]],
        }


def _no_params(read: Read) -> Callable[[Request, Params], Awaitable[object]]:
    async def work(request: Request, params: Params) -> object:
        return await read(request)

    return work


def _unknown_endpoint(request: Request) -> AdminError:
    return AdminError(
        404,
        f"no such admin endpoint: {request.method} {request.path}; see GET /admin for the list",
        "unknown_url",
    )


async def _send_error(writer: ResponseWriter, error: AdminError) -> None:
    if writer.started:
        writer.abort()
        return
    headers, body = render_admin_error(error)
    await writer.send(error.status, headers, body)


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise AdminError(
            405,
            f"method {request.method} is not allowed on {request.path}; use {' or '.join(methods)}",
            "method_not_allowed",
            headers=(("allow", ", ".join(methods)),),
        )


async def _query(work: Awaitable[_T]) -> _T:
    """A usage-store query; its failure is a 503 that says what went wrong."""
    try:
        return await work
    except Exception as exc:
        log.exception("admin usage query failed")
        raise AdminError(
            503, f"the usage store failed: {type(exc).__name__}: {exc}", "usage_store_error"
        ) from None


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict (one level; orjson serialises the values)."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _jsonable(obj: Any) -> Any:
    """orjson's fallback: mappings and sequences it does not know, else the object's text."""
    if hasattr(obj, "items"):
        return dict(obj.items())
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)
