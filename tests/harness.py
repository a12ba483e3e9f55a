"""The shared test harness: a gateway (App) in front of the fake upstream on loopback, configs,
an independent HTTP client, and the replies it reads. The conftests hold only fixtures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream
from spillgate.gateway.auth import hash_key
from spillgate.gateway.runtime import Runtime

from .clock import ShiftedClock

PRIMARY, SECONDARY = "up-primary", "up-secondary"
CLIENT_KEY = "sk-sg-test-client-key"
UPSTREAM_KEYS = {
    "oa-1": "sk-up-openai-1",
    "oa-2": "sk-up-openai-2",
    "an-1": "sk-up-ant-1",
    "an-2": "sk-up-ant-2",
}


def base_config(fake: FakeUpstream) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "test", "hash": hash_key(CLIENT_KEY)}],
        "providers": {
            "up-openai": {
                "protocol": "openai",
                "base_url": fake.openai_base_url,
                "timeouts": {
                    "connect": "2s",
                    "first_byte": "1s",
                    "first_token": "2s",
                    "stream_idle": "2s",
                    "total": "5s",
                },
            },
            "up-anthropic": {"protocol": "anthropic", "base_url": fake.anthropic_base_url},
        },
        "accounts": [
            {"id": "oa-1", "provider": "up-openai", "api_key": "${KEY_OA_1}"},
            {"id": "oa-2", "provider": "up-openai", "api_key": "${KEY_OA_2}"},
            {"id": "an-1", "provider": "up-anthropic", "api_key": "${KEY_AN_1}"},
            {"id": "an-2", "provider": "up-anthropic", "api_key": "${KEY_AN_2}"},
        ],
        "models": {
            # Each client API on its own provider only: these tests are about resilience within
            # one protocol (tests/translation/ serves clients across protocols).
            "coder": {
                "routes": [
                    {"accounts": ["oa-1", "oa-2"], "model": "up-coder", "translate": False},
                    {"accounts": ["an-1", "an-2"], "model": "up-claude", "translate": False},
                ]
            },
            "old-coder": {"alias_of": "coder"},
        },
    }


ENV = {
    "KEY_OA_1": "sk-up-openai-1",
    "KEY_OA_2": "sk-up-openai-2",
    "KEY_AN_1": "sk-up-ant-1",
    "KEY_AN_2": "sk-up-ant-2",
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> list[tuple[str | None, str]]:
        """SSE events as (event name, data) in order."""
        out: list[tuple[str | None, str]] = []
        for block in self.body.decode().split("\n\n"):
            if not block.strip():
                continue
            name = None
            data: list[str] = []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
            if data or name:
                out.append((name, "\n".join(data)))
        return out


@dataclass
class Harness:
    app: App
    fake: FakeUpstream
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.app.url

    async def call(
        self,
        path: str,
        body: Any = None,
        *,
        method: str = "POST",
        key: str | None = CLIENT_KEY,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if key is not None and "x-api-key" not in sent:
            sent["authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            sent.setdefault("content-type", "application/json")
        async with self.http.request(method, self.url + path, data=data, headers=sent) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read())


async def start_harness(fake: FakeUpstream, config: dict[str, Any]) -> Harness:
    app = App(parse_settings(config, env=ENV, source="test"))
    await app.start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    return Harness(app, fake, http)


TIMEOUTS = {"connect": "1s", "first_byte": "1s", "first_token": "1s", "stream_idle": "500ms", "total": "3s"}


def scenario_config(fake: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "providers": {
            "oa": {"protocol": "openai", "base_url": fake.openai_base_url, "timeouts": TIMEOUTS},
            "an": {"protocol": "anthropic", "base_url": fake.anthropic_base_url, "timeouts": TIMEOUTS},
        },
        "accounts": [
            {"id": "oa-p", "provider": "oa", "api_key": "sk-oa-p"},
            {"id": "oa-s", "provider": "oa", "api_key": "sk-oa-s"},
            {"id": "an-p", "provider": "an", "api_key": "sk-an-p"},
            {"id": "an-s", "provider": "an", "api_key": "sk-an-s"},
        ],
        # Each client API on its own provider's routes only (``translate: false``): these scenarios
        # are about resilience within one protocol; tests/translation/ crosses protocols.
        "models": {
            "coder": {
                "routes": [
                    {"accounts": ["oa-p"], "model": PRIMARY, "translate": False},
                    {"accounts": ["oa-s"], "model": SECONDARY, "translate": False},
                    {"accounts": ["an-p"], "model": PRIMARY, "translate": False},
                    {"accounts": ["an-s"], "model": SECONDARY, "translate": False},
                ]
            },
            "solo": {
                "routes": [
                    {"accounts": ["oa-p"], "model": PRIMARY, "translate": False},
                    {"accounts": ["an-p"], "model": PRIMARY, "translate": False},
                ]
            },
        },
        "resilience": {
            "max_attempts": 4,
            "deadline": "8s",
            "max_retry_wait": "2s",
            "backoff": {"base": "100ms", "cap": "1s"},
            "cooldowns": {
                "capacity": "1s",
                "capacity_max": "4s",
                "overloaded": "1s",
                "overloaded_max": "4s",
                "rate_limited": "2s",
            },
            "breaker": {"cooldown": "1s", "cooldown_max": "4s"},
        },
    }
    for key, value in overrides.items():
        config[key] = value
    return config


BODIES: dict[str, dict[str, Any]] = {
    "chat": {"model": "coder", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "coder", "input": [{"role": "user", "content": "hi"}]},
    "messages": {"model": "coder", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
}
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


@dataclass
class Result:
    reply: Reply
    elapsed: float

    @property
    def status(self) -> int:
        return self.reply.status

    def header(self, name: str) -> str | None:
        return self.reply.headers.get(name)

    def text(self, api: str, stream: bool) -> str:
        """The answer text the client received (complete or not)."""
        if not stream:
            body = self.reply.json()
            if api == "chat":
                return str(body["choices"][0]["message"]["content"])
            if api == "responses":
                return "".join(c["text"] for item in body["output"] for c in item.get("content", []))
            return "".join(block.get("text", "") for block in body["content"])
        out = []
        for name, data in self.reply.events():
            if data == "[DONE]":
                continue
            payload = orjson.loads(data)
            if api == "chat" and payload.get("choices"):
                out.append(payload["choices"][0]["delta"].get("content") or "")
            elif api == "responses" and name == "response.output_text.delta":
                out.append(payload["delta"])
            elif (
                api == "messages"
                and name == "content_block_delta"
                and payload["delta"]["type"] == "text_delta"
            ):
                out.append(payload["delta"]["text"])
        return "".join(out)

    def ended_normally(self, api: str) -> bool:
        events = self.reply.events()
        if not events:
            return False
        name, data = events[-1]
        if api == "chat":
            return data == "[DONE]"
        if api == "responses":
            return name == "response.completed"
        return name == "message_stop"


@dataclass
class Scenario:
    app: App
    fake: FakeUpstream
    http: aiohttp.ClientSession
    clock: ShiftedClock
    """The gateway's clock: ``clock.advance(s)`` ends cooldowns without waiting them out."""

    async def ask(self, api: str, stream: bool = False, model: str = "coder", **extra: Any) -> Result:
        body = {**BODIES[api], "model": model, **extra}
        if stream:
            body["stream"] = True
        headers = {"content-type": "application/json"}
        if api == "messages":
            headers["anthropic-version"] = "2023-06-01"
        started = time.monotonic()
        async with self.http.post(
            self.app.url + PATHS[api], data=orjson.dumps(body), headers=headers
        ) as resp:
            raw = await resp.read()
            reply = Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, raw)
        return Result(reply, time.monotonic() - started)

    def seen(self, model: str) -> int:
        return len(self.fake.attempts_for(model))

    def times(self, model: str) -> list[float]:
        return [a.time for a in self.fake.attempts_for(model)]


async def start_scenario(
    fake: FakeUpstream, config: dict[str, Any], clock: ShiftedClock | None = None
) -> Scenario:
    """``clock``: the gateway's (pass the ``clock`` fixture, the fake upstream's, to move both)."""
    settings = parse_settings(config, env={}, source="test")
    clock = clock if clock is not None else ShiftedClock()
    app = App(settings, runtime=Runtime.create(settings, clock=clock))
    await app.start()
    return Scenario(app, fake, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)), clock)
