"""A gateway with an admin token in front of the fake upstream, and a client for its admin API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tests.eventually import eventually as eventually

from ..harness import Scenario

ADMIN_TOKEN = "sg-admin-test-token"


@dataclass
class AdminReply:
    status: int
    headers: dict[str, str]
    body: Any


async def admin(
    sc: Scenario, path: str, *, method: str = "GET", token: str | None = ADMIN_TOKEN
) -> AdminReply:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    if method not in ("GET", "HEAD"):  # what a state-changing call carries (the dashboard sends it too)
        headers |= {"content-type": "application/json", "x-spillgate-admin": "1"}
    async with sc.http.request(method, sc.app.url + path, headers=headers) as resp:
        raw = await resp.read()
        body = orjson.loads(raw) if resp.content_type == "application/json" else raw
        return AdminReply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)


def route(health: Any, label: str) -> Any:
    for model in health["models"]:
        for r in model["routes"]:
            if r["label"] == label:
                return r
    raise AssertionError(f"no route {label} in the health report")


def account(health: Any, account_id: str) -> Any:
    for a in health["accounts"]:
        if a["id"] == account_id:
            return a
    raise AssertionError(f"no account {account_id} in the health report")
