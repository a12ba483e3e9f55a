"""A gateway with a primary and a secondary route per model, in front of the fake upstream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream
from spillgate.gateway.runtime import Runtime

from ..clock import ShiftedClock
from ..gateway.conftest import Reply

PRIMARY, SECONDARY = "up-primary", "up-secondary"
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
        "models": {
            "coder": {
                "routes": [
                    {"accounts": ["oa-p"], "model": PRIMARY},
                    {"accounts": ["oa-s"], "model": SECONDARY},
                    {"accounts": ["an-p"], "model": PRIMARY},
                    {"accounts": ["an-s"], "model": SECONDARY},
                ]
            },
            "solo": {
                "routes": [{"accounts": ["oa-p"], "model": PRIMARY}, {"accounts": ["an-p"], "model": PRIMARY}]
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


@pytest.fixture
async def sc(fake: FakeUpstream, clock: ShiftedClock) -> AsyncIterator[Scenario]:
    scenario = await start_scenario(fake, scenario_config(fake), clock)
    yield scenario
    await scenario.http.close()
    await scenario.app.stop(grace=1)
