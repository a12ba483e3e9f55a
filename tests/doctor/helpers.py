"""Building probe results by hand for the table tests, and running the doctor's command line."""

from __future__ import annotations

import asyncio
import os
import sys

from spillgate.config.schema import Account, Provider, Secret
from spillgate.doctor.target import Endpoint, UrlTarget
from spillgate.doctor.types import BodyKind, Probe, ProbeResult, Role
from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage
from spillgate.resilience.types import ErrorClass, Transport

KEY = "sk-test-0123456789abcd"
TARGET = UrlTarget("http://api.test:8000", "gpt-x", (Api.OPENAI_CHAT, Api.ANTHROPIC_MESSAGES), Secret(KEY))


def result(
    role: Role = Role.MODEL,
    model: str = "gpt-x",
    *,
    status: int | None = 200,
    cls: ErrorClass | None = None,
    stream: bool = False,
    api: Api = Api.OPENAI_CHAT,
    body: BodyKind = BodyKind.JSON,
    headers: tuple[tuple[str, str], ...] = (),
    retry: float | None = None,
    transport: Transport | None = None,
    in_stream: bool = False,
    wait: float = 0.0,
    code: str | None = None,
    message: str = "",
    models: tuple[str, ...] = (),
    endpoint: Endpoint | None = None,
    usage: Usage | None = None,
) -> ProbeResult:
    probe = Probe(
        role,
        endpoint or TARGET.endpoint(api),
        api,
        "" if role is Role.LIST else model,
        stream=stream,
        wait_before=wait,
    )
    return ProbeResult(
        probe,
        status,
        0.004,
        error_class=cls,
        error_code=code,
        message=message,
        transport=transport,
        in_stream=in_stream,
        body_kind=body,
        retry_after=retry,
        headers=headers,
        models=models,
        usage=usage,
    )


def ok(role: Role = Role.MODEL, model: str = "gpt-x", **kw: object) -> ProbeResult:
    return result(role, model, **kw)  # type: ignore[arg-type]


def listing(*models: str) -> ProbeResult:
    return result(Role.LIST, models=models)


def route(label: str, model: str, provider: str = "up", **kw: object) -> ProbeResult:
    account = Account(id=label.partition("/")[2] or "acct", provider=provider, api_key=Secret(KEY))
    endpoint = Endpoint(
        Provider(name=provider, protocol="openai", base_url=f"http://{provider}.test:9000/v1"), account, label
    )
    return result(Role.ROUTE, model, endpoint=endpoint, **kw)  # type: ignore[arg-type]


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``spillgate doctor ARGS`` as a process of its own, with no config in its environment:
    (exit status, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if k != "SPILLGATE_CONFIG"}
    environ.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spillgate",
        "doctor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
