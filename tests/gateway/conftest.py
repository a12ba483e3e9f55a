"""A gateway in front of the fake upstream, both on loopback, and an independent HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream
from spillgate.gateway.auth import hash_key

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
            "coder": {
                "routes": [
                    {"accounts": ["oa-1", "oa-2"], "model": "up-coder"},
                    {"accounts": ["an-1", "an-2"], "model": "up-claude"},
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


@pytest.fixture
async def gw(fake: FakeUpstream) -> AsyncIterator[Harness]:
    harness = await start_harness(fake, base_config(fake))
    yield harness
    await harness.http.close()
    await harness.app.stop(grace=1)
