"""Wiring: build the gateway and its HTTP server from Settings; start and stop them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from spillgate.config.defaults import (
    DEMO_AT_CAPACITY,
    DEMO_MODEL,
    credential_defaults,
    demo_settings,
)
from spillgate.config.loader import load_settings
from spillgate.config.schema import Settings
from spillgate.gateway.core import Gateway
from spillgate.http.server import HttpServer
from spillgate.limits.sync import KeySync
from spillgate.observe.usage import UsageObserver
from spillgate.store import UsageRecorder, UsageStore, open_store
from spillgate.store.keys import KeyRegistry

if TYPE_CHECKING:
    from spillgate.fake import FakeUpstream


class App:
    """A running gateway: the HTTP server, the gateway state and (in demo mode) the fake upstream."""

    def __init__(self, settings: Settings, demo_upstream: FakeUpstream | None = None) -> None:
        self.settings = settings
        self.gateway = Gateway(settings)
        self.server = HttpServer(
            self.gateway.handle,
            max_body_bytes=settings.limits.max_body_bytes,
            error_responder=self.gateway.error_responder,
        )
        self._demo_upstream = demo_upstream
        self.usage: UsageRecorder | None = None
        self.store: UsageStore | None = None
        self.key_sync: KeySync | None = None

    async def start(self) -> None:
        if self.settings.usage_dsn is not None:
            # Opening may touch the disk or the network: off the event loop.
            self.store = await asyncio.to_thread(open_store, self.settings.usage_dsn)
            self.usage = UsageRecorder(self.store)
            self.usage.start()
            self.gateway.events.subscribe(UsageObserver(self.usage))
            self.key_sync = KeySync(
                KeyRegistry(self.store), lambda: self.gateway, self.settings.limits.key_refresh
            )
            # Stored keys are in force before the first request is accepted.
            await self.key_sync.refresh()
            self.key_sync.start()
        await self.server.start(self.settings.host, self.settings.port)

    @property
    def url(self) -> str:
        host = self.server.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server.port}"

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.close(grace)
        await self.gateway.close()
        if self.key_sync is not None:
            await self.key_sync.close()
        if self.usage is not None:
            await self.usage.close()
        if self.store is not None:
            await self.store.close()
        if self._demo_upstream is not None:
            await self._demo_upstream.close()


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
    return App(settings, demo_upstream=demo)


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
            f"{r.provider}:{r.model}" + (f" [{len(r.accounts)} accounts]" if r.accounts else "")
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
    ]
    if s.source == "demo":
        lines += [
            "Demo mode (no config, no OPENAI_API_KEY / ANTHROPIC_API_KEY): model "
            f"'{DEMO_MODEL}' routes to a built-in fake upstream whose first route is at capacity.",
            f"  curl -s {url}/v1/chat/completions -H 'content-type: application/json' "
            f'-d \'{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}\'',
        ]
    return "\n".join(lines)


def serve_until_signalled(
    config_path: str | None, listen: tuple[str, int] | None, env: Mapping[str, str] | None = None
) -> None:
    """Build the app, serve until SIGINT / SIGTERM, then drain in-flight requests."""
    import signal

    async def main() -> None:
        app = await build_app(config_path, env=env, listen=listen)
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
        print(describe(app), flush=True)
        await stop.wait()
        print("Spillgate stopping: finishing in-flight requests", flush=True)
        await app.stop()

    run(main())


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)
