"""Wiring: build the gateway and its HTTP server from Settings; start and stop them."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from spillgate.admin.api import AdminApi
from spillgate.config.defaults import (
    DEMO_AT_CAPACITY,
    DEMO_MODEL,
    credential_defaults,
    demo_settings,
)
from spillgate.config.loader import ConfigError, load_settings
from spillgate.config.reloading import ReloadResult, keep_restart_only, restart_only_changes
from spillgate.config.schema import Settings
from spillgate.gateway.core import Gateway, method_not_allowed, unknown_endpoint
from spillgate.gateway.key_sync import KeySync
from spillgate.gateway.runtime import Runtime
from spillgate.http.routes import Endpoint, Params, Route, RouteTable
from spillgate.http.server import EarlyReply, HttpServer, Request, ResponseWriter
from spillgate.observe.recent import RecentFailures
from spillgate.observe.timeline import Timeline
from spillgate.pricing.book import priced_routes
from spillgate.protocols.adapter import adapters
from spillgate.protocols.apis import ROUTES, Api, family_for_path
from spillgate.protocols.errors import GatewayError, render_error
from spillgate.store import UsageRecorder, UsageStore, open_store
from spillgate.store.keys import KeyRegistry
from spillgate.store.observer import UsageObserver
from spillgate.store.writer import WriterProcess
from spillgate.textutil import plural

if TYPE_CHECKING:
    from pathlib import Path

    from spillgate.doctor.demo import DemoAddress
    from spillgate.fake import FakeUpstream
    from spillgate.fleet.store import Fleet
    from spillgate.observe.metrics import Metrics

log = logging.getLogger("spillgate")


class App:
    """A running gateway: the HTTP server, the gateway state and (in demo mode) the fake upstream."""

    def __init__(
        self,
        settings: Settings,
        demo_upstream: FakeUpstream | None = None,
        env: Mapping[str, str] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        """``runtime``: the state to serve on (tests pass one with a clock they move)."""
        self.settings = settings
        self._env = env
        """The environment ``${VAR}`` in the config file is expanded from (a reload uses it again)."""
        self.runtime = runtime if runtime is not None else Runtime.create(settings)
        """What outlives a reload: health, budgets, limits, metrics, pools, the clock."""
        self.gateway = Gateway(settings, self.runtime)
        # Dashboard data: observers on the event bus, which a reload carries to the new gateway.
        self.timeline = Timeline()
        self.recent = RecentFailures()
        self.gateway.events.subscribe(self.timeline)
        self.gateway.events.subscribe(self.recent)
        self.admin = AdminApi(self, self.timeline, self.recent)
        self.routes = self._route_table()
        limits = settings.limits
        self.server = HttpServer(
            self.handle,
            max_body_bytes=limits.max_body_bytes,
            error_responder=lambda status, message, path: self.gateway.error_responder(status, message, path),
            max_header_bytes=limits.max_header_bytes,
            max_headers=limits.max_headers,
            header_timeout=limits.header_timeout,
            body_timeout=limits.body_timeout,
            idle_timeout=limits.idle_timeout,
            write_timeout=limits.write_timeout,
            max_connections=limits.max_connections,
            send_buffer=limits.send_buffer,
            early_check=self._early_check,
        )
        if settings.metrics:
            refusals = self.server.refusals
            # The registry carries over to the gateway a reload makes: registered once, here.
            self.gateway.metrics.counter_from(
                "spillgate_http_refusals_total",
                "Requests the HTTP server refused and connections it closed, by reason: header and body "
                "limits and timeouts, idle keep-alives, clients that do not read, the connection limit, "
                "the early client-key check.",
                ("reason",),
                lambda: [((reason,), float(n)) for reason, n in refusals.items()],
            )
        if settings.metrics and self.runtime.fleet is not None:
            _register_fleet_metrics(self.gateway.metrics, self.runtime.fleet)
        self._retiring: set[asyncio.Task[None]] = set()
        self._demo_upstream = demo_upstream
        self._demo_published: tuple[Path, DemoAddress] | None = None
        self.reuse_port = False
        """Listen with ``SO_REUSEPORT`` (a worker of ``spillgate serve --workers N``)."""
        self.started = False
        """Listening, its configuration and stored keys in force (``/readyz``)."""
        self.draining = False
        """Stopping: not ready for new work (``/readyz`` 503) while running requests finish."""
        self.usage: UsageRecorder | None = None
        self.store: UsageStore | None = None
        self.key_sync: KeySync | None = None
        self.writer: WriterProcess | None = None

    async def start(self) -> None:
        fleet = self.runtime.fleet
        if fleet is not None:
            from spillgate.fleet.metrics import WorkerSlot

            slot = WorkerSlot.from_env(os.environ if self._env is None else self._env)
            if slot is not None:
                exports: dict[str, Callable[[], object]] = {
                    "timeline": self.timeline.export,
                    "inflight": lambda: dict(self.runtime.inflight.local_counts),
                    "keys": self._key_exports,
                }
                if self.settings.metrics:
                    exports["metrics"] = self.gateway.metrics.export
                share = fleet.join_workers(slot, exports, (self.recent,))
                self.gateway.events.subscribe(share)
            # Waits at most the store's timeout: a store that is away is retried in the background.
            await fleet.start()
            fleet.on_keys_changed(self._refresh_keys_soon)
        if self.settings.usage_dsn is not None:
            # Opening may touch the disk or the network: off the event loop.
            self.store = await asyncio.to_thread(open_store, self.settings.usage_dsn)
            # Writes go through a process of its own (see spillgate.store.writer); the store
            # above serves queries and client keys.
            self.writer = WriterProcess(self.settings.usage_dsn)
            await self.writer.start()
            self.usage = UsageRecorder(self.writer)
            self.usage.start()
            self.gateway.events.subscribe(UsageObserver(self.usage))
            self.key_sync = KeySync(
                KeyRegistry(self.store), lambda: self.gateway, self.settings.limits.key_refresh
            )
            # Stored keys are in force before the first request is accepted.
            await self.key_sync.refresh()
            self.key_sync.start()
        # The price table loads now (~0.1 s), not in the first requests' path.
        await asyncio.to_thread(self.runtime.prices.warm, priced_routes(self.settings))
        await self.server.start(self.settings.host, self.settings.port, reuse_port=self.reuse_port)
        self.started = True
        if self._demo_upstream is not None:
            self._publish_demo(self._demo_upstream)

    def _key_exports(self) -> list[list[object]]:
        """This worker's use of each client key (in flight, refusals) for the others' admin API."""
        limiter = self.runtime.limiter
        refused: dict[str, dict[str, int]] = {}
        for (name, which), n in limiter.refusals.items():
            refused.setdefault(name, {})[which] = n
        names = {u.name: u.in_flight for u in limiter.usage()}
        return [
            [name, names.get(name, 0), refused.get(name, {})] for name in sorted(set(names) | set(refused))
        ]

    def _refresh_keys_soon(self) -> None:
        """Another process created or revoked a stored key: re-read them now, not at the next tick."""
        if self.key_sync is not None:
            task = asyncio.create_task(self.key_sync.refresh_logged(), name="spillgate-key-push")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _publish_demo(self, upstream: FakeUpstream) -> None:
        """Tell ``spillgate doctor --alias demo`` where the demo's fake upstream listens."""
        from spillgate.doctor.demo import DemoAddress, demo_file, publish

        address = DemoAddress(self.url, upstream.openai_base_url, upstream.anthropic_base_url, os.getpid())
        path = demo_file(os.environ if self._env is None else self._env)
        try:
            publish(path, address)
        except OSError as exc:
            log.warning("cannot write %s (for `spillgate doctor --alias demo`): %s", path, exc)
            return
        self._demo_published = (path, address)

    def _early_check(self, method: str, path: str, headers: dict[str, str]) -> EarlyReply | None:
        """An API request's client key, checked on its headers before its body is read (or
        ``100 Continue`` sent): a missing or unknown key is answered at once, in the endpoint's
        protocol, and the body never buffered. The gateway checks the key again as it serves."""
        if method != "POST" or path not in ROUTES:
            return None
        try:
            self.gateway.auth.authenticate(headers)
        except GatewayError as error:
            error_headers, body = render_error(family_for_path(path), error)
            return error.status, error_headers, body
        return None

    def _route_table(self) -> RouteTable:
        """Every endpoint the server has, built once. API endpoints look the gateway up per
        request: a reload replaces it."""

        def api_endpoint(api: Api) -> Endpoint:
            async def endpoint(request: Request, writer: ResponseWriter, _: Params) -> None:
                await self.gateway.serve_api(api, request, writer)

            return endpoint

        def count_endpoint(api: Api) -> Endpoint:
            async def endpoint(request: Request, writer: ResponseWriter, _: Params) -> None:
                await self.gateway.count_tokens(api, request, writer)

            return endpoint

        async def models(request: Request, writer: ResponseWriter, _: Params) -> None:
            await self.gateway.list_models(request, writer)

        async def healthz(request: Request, writer: ResponseWriter, _: Params) -> None:
            await writer.send(200, [("content-type", "application/json")], b'{"status":"ok"}')

        async def readyz(request: Request, writer: ResponseWriter, _: Params) -> None:
            status, body = self.readiness()
            await writer.send(status, [("content-type", "application/json")], orjson.dumps(body))

        return RouteTable(
            [
                *(Route(path, ("POST",), api_endpoint(api), "api") for path, api in ROUTES.items()),
                *(
                    Route(path, ("POST",), count_endpoint(a.api), "api")
                    for a in adapters()
                    for path in a.count_paths()
                ),
                Route("/v1/models", ("GET",), models, "api"),
                Route("/models", ("GET",), models, "api"),
                Route("/healthz", ("GET", "HEAD"), healthz, "api"),
                Route("/readyz", ("GET", "HEAD"), readyz, "api"),
                *self.admin.routes(),
            ]
        )

    async def handle(self, request: Request, writer: ResponseWriter) -> None:
        match = self.routes.match(request.method, request.path)
        route = match.route
        if route is not None and match.allowed:
            await route.endpoint(request, writer, match.params)
            return
        if route is not None:
            area = route.area
        elif request.path.startswith(("/admin/", "/dashboard")) or request.path in ("/admin", "/metrics"):
            area = "admin"
        else:
            area = "api"
        if area == "admin":
            await self.admin.refuse(request, writer, route)
        elif route is None:
            await self.gateway.refuse(request, writer, unknown_endpoint(request))
        else:
            await self.gateway.refuse(request, writer, method_not_allowed(request, route.methods))

    async def reload(self) -> ReloadResult:
        """Re-read the config file and serve new requests with it; requests (streams) already running
        finish on the configuration they started with. Health, budgets, metrics, limits and stored
        keys carry over. Raises :class:`ConfigError` (nothing changes) when the file is not valid."""
        source = self.settings.source
        if source in ("config", "defaults", "demo", "test"):
            raise ConfigError(f"nothing to reload: this gateway runs on {source!r}, not a config file")
        loaded = await asyncio.to_thread(load_settings, source, self._env)
        restart = restart_only_changes(self.settings, loaded)
        settings = keep_restart_only(self.settings, loaded)
        old = self.gateway
        self.runtime.configure(settings)
        new = Gateway(settings, self.runtime)
        self.settings, self.gateway = settings, new
        retire = asyncio.create_task(old.retire(), name="spillgate-retire-gateway")
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        kept = tuple(sorted(name for name, c in new.clients.items() if c in old.clients.values()))
        log.info(
            "config reloaded from %s: models %s (%d requests finish on the previous config)",
            source,
            ", ".join(settings.models),
            old.active,
        )
        if restart:
            log.warning("config reload: a restart is needed to apply %s", ", ".join(restart))
        return ReloadResult(
            source=source,
            models=tuple(settings.models),
            providers=tuple(settings.providers),
            client_keys=len(new.auth.keys),
            pools_kept=kept,
            restart_needed=restart,
            retiring_requests=old.active,
        )

    @property
    def url(self) -> str:
        host = self.server.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server.port}"

    def readiness(self) -> tuple[int, dict[str, str]]:
        """``/readyz``: 200 while the instance takes new work (its config loaded; a usage store
        that cannot be written leaves it serving, ``degraded``), 503 once it is draining."""
        if self.draining or not self.started:
            return 503, {"status": "draining" if self.draining else "starting"}
        body = {"status": "ready"}
        fleet = self.runtime.fleet
        if fleet is not None:
            # Shared state away: serving on local state (limits per instance), degraded.
            body["state_store"] = "ok" if fleet.link.up else "degraded"
        if self.usage is not None:
            # Records past the buffer's bound are dropped (and counted): serving, degraded.
            body["usage_store"] = "degraded" if self.usage.pending >= self.usage.max_pending else "ok"
        return 200, body

    def drain(self) -> None:
        """Turn not ready (``/readyz`` 503): the first step of a stop."""
        self.draining = True

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let running requests finish for ``grace`` seconds, close the rest."""
        self.drain()
        await self.server.close(grace)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.gateway.close()
        if self.key_sync is not None:
            await self.key_sync.close()
        if self.usage is not None:
            await self.usage.close()
        if self.writer is not None:
            await self.writer.close()
        if self.store is not None:
            await self.store.close()
        if self.runtime.fleet is not None:
            await self.runtime.fleet.close()
        if self._demo_upstream is not None:
            await self._demo_upstream.close()
        if self._demo_published is not None:
            from spillgate.doctor.demo import withdraw

            withdraw(*self._demo_published)
            self._demo_published = None


def _register_fleet_metrics(metrics: Metrics, fleet: Fleet) -> None:
    link = fleet.link
    metrics.gauge(
        "spillgate_state_store_up",
        "1 while the shared state store (state: redis://…) answers; 0: serving on local state.",
        (),
        lambda: [((), 1.0 if link.up else 0.0)],
    )
    metrics.counter_from(
        "spillgate_state_store_errors_total",
        "Calls to the shared state store that failed or timed out, by operation.",
        ("op",),
        lambda: [((op,), float(n)) for op, n in sorted(link.errors.items())],
    )
    metrics.counter_from(
        "spillgate_state_store_fallbacks_total",
        "Decisions (limit checks, probe leases, slots) taken on local state because the store was away.",
        (),
        lambda: [((), float(link.fallbacks))],
    )
    metrics.counter_from(
        "spillgate_state_store_dropped_writes_total",
        "Writes to the shared state store dropped while it was away (resynchronised when it is back).",
        (),
        lambda: [((), float(link.dropped_writes))],
    )


async def build_app(
    config_path: str | None,
    env: Mapping[str, str] | None = None,
    listen: tuple[str, int] | None = None,
) -> App:
    """Settings from the config file, else the embedded defaults, else the demo."""
    env = os.environ if env is None else env
    path = config_path or env.get("SPILLGATE_CONFIG")
    demo: FakeUpstream | None = None
    if path:
        settings = load_settings(path, env=env)
    else:
        found = credential_defaults(env)
        if found is None:
            demo = await _start_demo_upstream()
            settings = demo_settings(demo.openai_base_url, demo.anthropic_base_url)
        else:
            settings = found
    if listen is not None:
        settings = dataclasses.replace(settings, host=listen[0], port=listen[1])
    return App(settings, demo_upstream=demo, env=env)


async def _start_demo_upstream() -> FakeUpstream:
    from spillgate.fake import FakeUpstream, Fault

    fake = FakeUpstream({DEMO_AT_CAPACITY: Fault.capacity()})
    await fake.start("127.0.0.1", 0)
    return fake


def describe(app: App) -> str:
    """What the gateway serves and how to point clients at it (no secrets)."""
    s = app.settings
    url = app.url
    lines = [f"Spillgate listening on {url}  (settings: {s.source})"]
    for alias in s.models.values():
        name = "* (any model name)" if alias.name == "*" else alias.name
        routes = ", ".join(
            f"{r.provider}:{r.model}" + (f" [{plural(len(r.accounts), 'account')}]" if r.accounts else "")
            for r in alias.routes
        )
        lines.append(f"  model {name} -> {routes}")
    for old, new in s.deprecated.items():
        lines.append(f"  model {old} -> deprecated, served by {new}")
    lines.append("  client keys: " + (f"{len(s.client_keys)} configured" if s.client_keys else "none (open)"))
    lines += [
        "Point clients at it:",
        f"  OpenAI SDK / Chat / Responses:  base_url={url}/v1",
        f'  Codex CLI:  [model_providers.spillgate] base_url = "{url}/v1", wire_api = "responses"',
        f"  Claude Code / Anthropic SDK:  ANTHROPIC_BASE_URL={url}",
        f"Dashboard: {url}/dashboard"
        + ("  (admin token needed)" if s.admin_token else "  (loopback only: no admin_token is set)"),
    ]
    if s.source == "demo":
        lines += [
            "Demo mode (no config, no OPENAI_API_KEY / ANTHROPIC_API_KEY): model "
            f"'{DEMO_MODEL}' routes to a built-in fake upstream whose first route is at capacity.",
            f"  curl -s {url}/v1/chat/completions -H 'content-type: application/json' "
            f'-d \'{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}\'',
            f"  Probe each route on its own: spillgate doctor --alias {DEMO_MODEL}",
        ]
    return "\n".join(lines)


def serve_until_signalled(
    config_path: str | None,
    listen: tuple[str, int] | None,
    env: Mapping[str, str] | None = None,
    *,
    reuse_port: bool = False,
) -> None:
    """Build the app, serve until SIGINT / SIGTERM (SIGHUP reloads the config file), then drain
    in-flight requests."""
    import signal

    async def main() -> None:
        app = await build_app(config_path, env=env, listen=listen)
        app.reuse_port = reuse_port
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await app.start()
        except OSError as exc:
            await app.stop(0)
            where = f"{app.settings.host}:{app.settings.port}"
            raise SystemExit(f"spillgate: cannot listen on {where}: {exc.strerror or exc}") from None
        # What startup made (modules, the configuration, the price table: ~60k objects) lives as
        # long as the process: out of the collector's sight, a full collection does not walk it
        # again and again (the price table alone adds 10-30 ms to every full collection, which
        # showed at p99). Only here, once a process: an App in a test suite freezes nothing.
        gc.collect()
        gc.freeze()
        reloads: set[asyncio.Task[None]] = set()

        def reload_on_hangup() -> None:
            task = asyncio.create_task(_reload_logged(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload_on_hangup)
        worker = os.environ.get("SPILLGATE_WORKER", "")
        if not worker or worker.startswith("0/"):
            print(describe(app), flush=True)
        await stop.wait()
        grace = app.settings.limits.shutdown_grace
        print(
            f"Spillgate stopping: not ready, not accepting; finishing in-flight requests "
            f"(up to {grace:g}s, limits.shutdown_grace)",
            flush=True,
        )
        await app.stop(grace)

    run(main())


async def _reload_logged(app: App) -> None:
    try:
        await app.reload()
    except ConfigError as exc:
        log.error("config reload refused, the running config stays: %s", exc)


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
