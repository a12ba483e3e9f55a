"""A real outage reaches the human: every route of a model at capacity, each real client with its
own DEFAULT retry settings, directly against the failing upstream and through Spillgate.

Spillgate runs with ``resilience.stop_retries_after`` = :data:`STOP_AFTER` and
``max_client_retry_after`` = :data:`RETRY_CAP`. Until the model has been out that long its final
errors say "retry" (``x-should-retry: true``, a ``Retry-After`` of at most the cap; on the
Responses API the code ``server_error``); from then on they are the stop signal (503 / 529,
``x-should-retry: false``, no ``Retry-After``, Responses code ``server_is_overloaded``, a message
"model '<alias>' has been unavailable for ...; not retrying further: models that answer now: ...").

Per client, on its own fake upstream (``up-primary`` and ``up-secondary`` both at capacity, a
healthy ``up-backup`` behind the aliases ``gpt-backup`` / ``claude-backup``) and gateway:

* **openai / anthropic SDKs** (``max_retries`` 2, the default): one call before the stop — it
  fails after the SDK's own retries, every answer "retry" with ``Retry-After`` <= the cap — and
  one call after it: a single HTTP request (the SDK obeys ``x-should-retry: false``);
* **Codex CLI** (``codex exec --json``, no ``-c`` retry overrides) and **Claude Code**
  (``claude -p``, no ``CLAUDE_CODE_MAX_RETRIES``): one run that retries through the "retry"
  answers and must give up soon after the stop signal, in bounded time. A recording proxy
  between the client and Spillgate keeps every answer's headers and body;
* **controls**: each client straight at the failing ``up-primary``, default retries.

Every scenario runs at once (one module fixture, ``asyncio.gather``); the tests then check what
each saw. Give-up times and outcomes go to ``test-output/e2e-outage.json`` and ``.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import anthropic
import openai
import pytest
import pytest_asyncio
from aiohttp import ClientError, web

from spillgate.fake import AttemptRecord, FakeUpstream, Fault
from spillgate.observe.events import RequestFinished

from .claude import (
    OUTPUT_DIR,
    Arm,
    ClaudeRun,
    RecordingProxy,
    direct_arm,
    gateway_config,
    run_claude,
    spillgate_arm,
)
from .codex import CodexRun, run_codex
from .conftest import CLAUDE_MODEL, CLIENTS, CODEX_MODEL, PRIMARY, SECONDARY

STOP_AFTER = 6.0
"""``resilience.stop_retries_after``: how long a model is out before the gateway says "stop"."""
RETRY_CAP = 2
"""``resilience.max_client_retry_after``: the longest ``Retry-After`` of an outage's final error."""
RESILIENCE = {"stop_retries_after": f"{STOP_AFTER:g}s", "max_client_retry_after": f"{RETRY_CAP}s"}
GIVE_UP_BOUND = STOP_AFTER + 30
"""A client through Spillgate must have given up (exited) within this many seconds."""
AFTER_STOP_BOUND = 15.0
"""... and within this many seconds of the first stop signal it received."""

UNAVAILABLE = "has been unavailable for"
NOT_RETRYING = "not retrying further"
OUT_OF_CAPACITY = "out of capacity"
AT_CAPACITY = "Selected model is at capacity. Please try a different model."
"""Codex's own text for a 503 ``server_is_overloaded`` (it discards the server's message)."""

BACKUP_UPSTREAM = "up-backup"
BACKUP = {"openai": "gpt-backup", "anthropic": "claude-backup"}
"""A healthy alias per protocol family: what the stop message offers instead."""

CODEX_TRANSPORT_TRIES = 5
"""Codex 0.169 sends a request at most 1 + ``request_max_retries`` (default 4) times."""
CLAUDE_DEFAULT_RETRIES = 10
"""Claude Code 2.1.328 retries a 503 / 529 this often by default (then gives up)."""

SDK_CALL_TIMEOUT = 30.0
CODEX_TIMEOUT = 120.0
CLAUDE_TIMEOUT = 120.0
CLAUDE_DIRECT_TIMEOUT = float(os.environ.get("SPILLGATE_E2E_CLAUDE_DIRECT_TIMEOUT", "60"))
"""The direct Claude Code control is killed after this many seconds, still retrying: its default
loop against a 503 (11 requests, the waits growing to ~40 s) takes about three minutes (measured:
189 s). ``SPILLGATE_E2E_CLAUDE_DIRECT_TIMEOUT=240`` lets it run to its end (the module then takes
as long); keep it above :data:`GIVE_UP_BOUND`, which the control must outlast."""
STOP_MARGIN = 1.0
"""The SDKs' second call starts this long after the outage has lasted ``STOP_AFTER``."""

Api = Literal["chat", "responses", "messages"]
SDK_APIS: tuple[Api, ...] = ("chat", "responses", "messages")


# -- the stacks ------------------------------------------------------------------------------


def outage_config(fake: FakeUpstream) -> dict[str, Any]:
    """The harness's gateway (``gpt-test``, ``claude-test`` and ``*``, each on ``up-primary`` and
    ``up-secondary``) with the short outage settings and one healthy alias per family."""
    config = gateway_config(fake)
    config["resilience"].update(RESILIENCE)
    for family, provider in (("openai", "oa"), ("anthropic", "an")):
        account = f"{provider}-backup"
        config["accounts"].append({"id": account, "provider": provider, "api_key": f"sk-up-{account}"})
        config["models"][BACKUP[family]] = {"routes": [{"accounts": [account], "model": BACKUP_UPSTREAM}]}
    return config


def outage_arm() -> contextlib.AbstractAsyncContextManager[Arm]:
    """Spillgate in front of a fake upstream whose two routes are both at capacity."""
    return spillgate_arm(Fault.capacity(), Fault.capacity(), outage_config)


# -- what a client was answered --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer a client received: its status, retry headers and (for an error) body."""

    at: float
    """``time.monotonic()`` when its headers arrived."""
    status: int
    retry_after: str | None
    should_retry: str | None
    body: str = ""

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object of an OpenAI or Anthropic error body (``{}`` if none)."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            return {}
        error = payload.get("error") if isinstance(payload, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def code(self) -> str | None:
        """OpenAI's ``error.code``, else Anthropic's ``error.type``."""
        value = self.error.get("code") or self.error.get("type")
        return str(value) if value is not None else None

    @property
    def message(self) -> str:
        return str(self.error.get("message", ""))

    @property
    def is_stop(self) -> bool:
        return self.should_retry == "false"

    def summary(self, start: float) -> dict[str, Any]:
        return {
            "t_s": round(self.at - start, 2),
            "status": self.status,
            "retry_after": self.retry_after,
            "x_should_retry": self.should_retry,
            "code": self.code,
            "message": self.message[:300],
        }

    def short(self) -> str:
        """``503 server_error, Retry-After 2, x-should-retry true`` (absent headers left out)."""
        parts = [f"{self.status} {self.code}"]
        if self.retry_after is not None:
            parts.append(f"Retry-After {self.retry_after}")
        if self.should_retry is not None:
            parts.append(f"x-should-retry {self.should_retry}")
        return ", ".join(parts)


def split_at_stop(answers: Sequence[Answer]) -> tuple[list[Answer], list[Answer]]:
    """The answers before the first stop signal, and from it on."""
    first = next((i for i, a in enumerate(answers) if a.is_stop), len(answers))
    return list(answers[:first]), list(answers[first:])


def gaps(answers: Sequence[Answer]) -> list[float]:
    return [round(b.at - a.at, 2) for a, b in itertools.pairwise(answers)]


class AnswerProxy(RecordingProxy):
    """Relays a client to Spillgate and keeps every answer (headers and whole body: here every one
    is a short error), which the gateway's events do not carry."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.answers: list[Answer] = []

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self._HOP}
        try:
            async with self._session.request(
                request.method, self.target + request.path_qs, headers=headers, data=body
            ) as upstream:
                at = time.monotonic()
                content = await upstream.read()
                h = upstream.headers
                text = content.decode(errors="replace")[:8000] if upstream.status >= 400 else ""
                self.answers.append(
                    Answer(at, upstream.status, h.get("retry-after"), h.get("x-should-retry"), text)
                )
                response = web.Response(status=upstream.status, body=content)
                for name, value in upstream.headers.items():
                    if name.lower() not in self._HOP:
                        response.headers.add(name, value)
                return response
        except ClientError as exc:  # recorded, and answered like a proxy would
            self.answers.append(Answer(time.monotonic(), 502, None, None, f"proxy: {exc!r}"[:300]))
            return web.Response(status=502, text="recording proxy: upstream failed")


@contextlib.asynccontextmanager
async def answer_proxy(target: str) -> AsyncIterator[AnswerProxy]:
    proxy = AnswerProxy(target)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def upstream_summary(attempts: Sequence[AttemptRecord]) -> list[str]:
    start = attempts[0].time if attempts else 0.0
    return [f"{a.time - start:.2f}s {a.model}:{a.outcome}" for a in attempts]


def gateway_statuses(requests: Sequence[RequestFinished]) -> list[str]:
    return [f"{e.status}:{e.error_class}:attempts={e.attempts}" for e in requests]


# -- the SDKs --------------------------------------------------------------------------------


@dataclass
class SdkCall:
    """One SDK call with its default retries: every HTTP answer it got, and what it raised."""

    answers: list[Answer]
    error: str | None
    """``ExceptionType: message`` (``None``: the call succeeded)."""
    status: int | None
    """The raised ``APIStatusError``'s status code."""
    elapsed: float

    def summary(self) -> dict[str, Any]:
        start = self.answers[0].at if self.answers else 0.0
        return {
            "elapsed_s": round(self.elapsed, 2),
            "http_requests": len(self.answers),
            "status": self.status,
            "error": None if self.error is None else self.error[:500],
            "answers": [a.summary(start) for a in self.answers],
            "gaps_s": gaps(self.answers),
        }

    def describe(self) -> str:
        return json.dumps(self.summary(), indent=1)


def sdk_family(api: Api) -> Literal["openai", "anthropic"]:
    return "anthropic" if api == "messages" else "openai"


async def sdk_call(api: Api, base_url: str, api_key: str, model: str) -> SdkCall:
    """One non-streaming call with the SDK's defaults (``max_retries`` 2), each HTTP answer
    recorded by an httpx response hook (an error's body read there, so it is kept)."""
    answers: list[Answer] = []

    async def on_response(response: Any) -> None:
        body = ""
        if response.status_code >= 400:
            await response.aread()
            body = response.text[:8000]
        h = response.headers
        status = response.status_code
        answers.append(Answer(time.monotonic(), status, h.get("retry-after"), h.get("x-should-retry"), body))

    hooks = {"response": [on_response]}
    error: str | None = None
    status: int | None = None
    started = time.monotonic()
    try:
        async with asyncio.timeout(SDK_CALL_TIMEOUT):
            if api == "messages":
                a_client = anthropic.AsyncAnthropic(
                    base_url=base_url,
                    api_key=api_key,
                    http_client=anthropic.DefaultAsyncHttpxClient(event_hooks=hooks),
                )
                async with a_client:
                    await a_client.messages.create(
                        model=model, max_tokens=64, messages=[{"role": "user", "content": "Say hello."}]
                    )
            else:
                o_client = openai.AsyncOpenAI(
                    base_url=base_url + "/v1",
                    api_key=api_key,
                    http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
                )
                async with o_client:
                    if api == "chat":
                        await o_client.chat.completions.create(
                            model=model, messages=[{"role": "user", "content": "Say hello."}]
                        )
                    else:
                        await o_client.responses.create(model=model, input="Say hello.")
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        error, status = f"{type(exc).__name__}: {exc}", exc.status_code
    except Exception as exc:  # a timeout or a connection error: the outcome being measured
        error = f"{type(exc).__name__}: {exc}"
    return SdkCall(answers, error, status, time.monotonic() - started)


@dataclass
class SdkDirect:
    call: SdkCall
    attempts: list[AttemptRecord]

    def summary(self) -> dict[str, Any]:
        return {**self.call.summary(), "upstream": upstream_summary(self.attempts)}


@dataclass
class SdkSpillgate:
    before: SdkCall
    """The call made as soon as the outage begins."""
    after: SdkCall
    """The call made once the model has been out for ``STOP_AFTER`` (+ ``STOP_MARGIN``)."""
    requests: list[RequestFinished]
    attempts: list[AttemptRecord]

    def summary(self) -> dict[str, Any]:
        return {
            "before_stop": self.before.summary(),
            "after_stop": self.after.summary(),
            "gateway_requests": gateway_statuses(self.requests),
            "upstream": upstream_summary(self.attempts),
        }

    def describe(self) -> str:
        return json.dumps(self.summary(), indent=1)


async def sdk_direct(api: Api) -> SdkDirect:
    async with direct_arm(Fault.capacity()) as arm:
        call = await sdk_call(api, arm.base_url, arm.api_key, PRIMARY)
        return SdkDirect(call, arm.attempts)


async def sdk_spillgate(api: Api) -> SdkSpillgate:
    model = CLAUDE_MODEL if api == "messages" else CODEX_MODEL
    async with outage_arm() as arm:
        before = await sdk_call(api, arm.base_url, arm.api_key, model)
        # The gateway's outage began with its first final error, just before the first answer.
        start = before.answers[0].at if before.answers else time.monotonic()
        await asyncio.sleep(max(0.0, start + STOP_AFTER + STOP_MARGIN - time.monotonic()))
        after = await sdk_call(api, arm.base_url, arm.api_key, model)
        return SdkSpillgate(before, after, arm.client_requests, arm.attempts)


# -- Codex and Claude Code -------------------------------------------------------------------


@dataclass
class ClientRun:
    """A real client's run (Codex or Claude Code) and what it was answered."""

    run: CodexRun | ClaudeRun
    ended: float
    """``time.monotonic()`` when the process was gone."""
    answers: list[Answer] = field(default_factory=list)
    """What the proxy saw Spillgate answer (through Spillgate only)."""
    requests: list[RequestFinished] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.run.run.elapsed

    @property
    def timed_out(self) -> bool:
        return self.run.run.timed_out

    def summary(self) -> dict[str, Any]:
        start = self.answers[0].at if self.answers else (self.attempts[0].time if self.attempts else 0.0)
        before, stops = split_at_stop(self.answers)
        out: dict[str, Any] = {
            "exit_code": self.run.run.returncode,
            "timed_out": self.timed_out,
            "elapsed_s": round(self.elapsed, 2),
            "upstream_attempts": len(self.attempts),
            "upstream": upstream_summary(self.attempts),
        }
        if isinstance(self.run, CodexRun):
            out |= {"failure": self.run.failure, "errors": self.run.errors, "reconnects": self.run.reconnects}
        else:
            out |= self.run.summary()
        if self.answers:
            out |= {
                "answers": [a.summary(start) for a in self.answers],
                "gaps_s": gaps(self.answers),
                "retry_answers": len(before),
                "stop_answers": len(stops),
                "first_stop_after_s": round(stops[0].at - start, 2) if stops else None,
                "exit_after_first_stop_s": round(self.ended - stops[0].at, 2) if stops else None,
                "gateway_requests": gateway_statuses(self.requests),
            }
        return out

    def describe(self) -> str:
        return json.dumps(self.summary(), indent=1) + "\n" + self.run.describe()


async def _through_proxy(run: Callable[[Arm, str], Awaitable[CodexRun | ClaudeRun]]) -> ClientRun:
    """``run(arm, url)``: the client pointed at ``url``, a recording proxy in front of Spillgate."""
    async with outage_arm() as arm, answer_proxy(arm.base_url) as proxy:
        result = await run(arm, proxy.url)
        ended = time.monotonic()
        return ClientRun(result, ended, list(proxy.answers), arm.client_requests, arm.attempts)


async def codex_spillgate(codex: Path, workdir: Path) -> ClientRun:
    async def run(arm: Arm, url: str) -> CodexRun:
        return await run_codex(
            codex,
            workdir=workdir,
            base_url=f"{url}/v1",
            model=CODEX_MODEL,
            api_key=arm.api_key,
            timeout=CODEX_TIMEOUT,
            flags=[],  # Codex's own retry defaults
        )

    return await _through_proxy(run)


async def codex_direct(codex: Path, workdir: Path) -> ClientRun:
    async with direct_arm(Fault.capacity()) as arm:
        run = await run_codex(
            codex,
            workdir=workdir,
            base_url=arm.fake.openai_base_url,
            model=PRIMARY,
            api_key=arm.api_key,
            timeout=CODEX_TIMEOUT,
            flags=[],
        )
        return ClientRun(run, time.monotonic(), attempts=arm.attempts)


async def claude_spillgate(workdir: Path) -> ClientRun:
    async def run(arm: Arm, url: str) -> ClaudeRun:
        return await run_claude(
            arm, workdir, model=CLAUDE_MODEL, base_url=url, timeout=CLAUDE_TIMEOUT, max_retries=None
        )

    return await _through_proxy(run)


async def claude_direct(workdir: Path) -> ClientRun:
    async with direct_arm(Fault.capacity()) as arm:
        run = await run_claude(arm, workdir, model=PRIMARY, timeout=CLAUDE_DIRECT_TIMEOUT, max_retries=None)
        return ClientRun(run, time.monotonic(), attempts=arm.attempts)


# -- every scenario at once, and the report --------------------------------------------------


@dataclass
class Outage:
    """Each scenario's result, or what it raised."""

    results: dict[str, Any]
    wall_s: float

    def get(self, name: str) -> Any:
        result = self.results[name]
        if isinstance(result, BaseException):
            raise result
        return result


def _scenarios(codex: Path, base: Path) -> dict[str, Awaitable[Any]]:
    def fresh(name: str) -> Path:
        path = base / name
        path.mkdir(parents=True)
        return path

    scenarios: dict[str, Awaitable[Any]] = {
        "codex/spillgate": codex_spillgate(codex, fresh("codex-spillgate")),
        "codex/direct": codex_direct(codex, fresh("codex-direct")),
        "claude/spillgate": claude_spillgate(fresh("claude-spillgate")),
        "claude/direct": claude_direct(fresh("claude-direct")),
    }
    for api in SDK_APIS:
        scenarios[f"sdk-{api}/spillgate"] = sdk_spillgate(api)
        scenarios[f"sdk-{api}/direct"] = sdk_direct(api)
    return scenarios


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def outage(client_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Outage:
    started = time.monotonic()
    scenarios = _scenarios(client_bin / "codex", tmp_path_factory.mktemp("outage"))
    done = await asyncio.gather(*scenarios.values(), return_exceptions=True)
    result = Outage(dict(zip(scenarios, done, strict=True)), time.monotonic() - started)
    write_report(result)
    return result


CLIENT_ROWS = (
    ("openai SDK, chat completions", "sdk-chat"),
    ("openai SDK, responses", "sdk-responses"),
    ("anthropic SDK, messages", "sdk-messages"),
    ("Codex CLI (`codex exec --json`)", "codex"),
    ("Claude Code (`claude -p`)", "claude"),
)


def _summary(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"raised": f"{type(result).__name__}: {result}"}
    summary: dict[str, Any] = result.summary()
    return summary


def _failure_text(result: ClientRun) -> str:
    """The client's last words (``turn.failed`` / the ``result`` event), quoted, or ``""``."""
    if isinstance(result.run, CodexRun):
        text = result.run.failure
    else:
        found = [e.get("result") for e in result.run.events if e.get("type") == "result"]
        text = str(found[-1]) if found else None
    if not text:
        return ""
    text = text.split(", url:")[0][:160].replace("|", "\\|").replace("\n", " ")
    return f"; “{text}”"


def _sdk_cell(call: SdkCall) -> str:
    """``3 request(s) in 4.2 s (2 x 503 server_error, Retry-After 2, ...; 1 x ...)``."""
    groups = [(short, len(list(same))) for short, same in itertools.groupby(a.short() for a in call.answers)]
    answers = "; ".join(f"{n} x {short}" for short, n in groups)
    return f"{len(call.answers)} request(s) in {call.elapsed:.1f} s ({answers})"


def _cell(result: Any, via: bool) -> str:
    if isinstance(result, BaseException):
        return f"raised {type(result).__name__}"
    if isinstance(result, SdkDirect):
        return "gave up after " + _sdk_cell(result.call)
    if isinstance(result, SdkSpillgate):
        return f"before the stop: {_sdk_cell(result.before)}; after: {_sdk_cell(result.after)}"
    assert isinstance(result, ClientRun)
    if result.timed_out:
        head = f"**still retrying after {result.elapsed:.0f} s** (killed)"
    else:
        head = f"exit {result.run.run.returncode} after **{result.elapsed:.1f} s**"
    if via:
        before, stops = split_at_stop(result.answers)
        retry_after = sorted({a.retry_after or "-" for a in before})
        what = (
            f"{len(before)} retry answer(s) (Retry-After {', '.join(retry_after)}), then {len(stops)} stop "
            f"signal(s), exit {result.ended - stops[0].at:.1f} s after the first"
            if stops
            else f"{len(before)} answer(s), no stop signal"
        )
    else:
        what = f"{len(result.attempts)} upstream attempts"
    return f"{head}: {what}{_failure_text(result)}"


def write_report(outage: Outage) -> None:
    package = json.loads((CLIENTS / "package.json").read_text())
    data = {
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_s": round(outage.wall_s, 1),
        "clients": {
            "codex_cli": package["dependencies"]["@openai/codex"],
            "claude_code": package["dependencies"]["@anthropic-ai/claude-code"],
            "openai": version("openai"),
            "anthropic": version("anthropic"),
            "retries": "each client's defaults (no Codex -c overrides, no CLAUDE_CODE_MAX_RETRIES, "
            "SDK max_retries 2)",
        },
        "claude_direct_timeout_s": CLAUDE_DIRECT_TIMEOUT,
        "fault": f"{PRIMARY} and {SECONDARY} at capacity (503, server_is_overloaded / overloaded_error)",
        "direct": f"the client at the fake upstream, model {PRIMARY}",
        "spillgate": f"the client at Spillgate (through a recording proxy), model {CODEX_MODEL} / "
        f"{CLAUDE_MODEL}; resilience {RESILIENCE}",
        "results": {
            key: {arm: _summary(outage.results[f"{key}/{arm}"]) for arm in ("direct", "spillgate")}
            for _, key in CLIENT_ROWS
        },
    }
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "e2e-outage.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        f"Every route at capacity; Spillgate with `stop_retries_after` {STOP_AFTER:g} s, "
        f"`max_client_retry_after` {RETRY_CAP} s; each client's default retries.",
        "",
        f"| client | direct (`{PRIMARY}`) | through Spillgate |",
        "|---|---|---|",
    ]
    for title, key in CLIENT_ROWS:
        direct, via = outage.results[f"{key}/direct"], outage.results[f"{key}/spillgate"]
        lines.append(f"| {title} | {_cell(direct, False)} | {_cell(via, True)} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


# -- the checks ------------------------------------------------------------------------------


def check_retry_answers(answers: Sequence[Answer], *, status: int, code: str, model: str) -> None:
    """Before the stop: every final error says "retry", soon (``Retry-After`` within the cap)."""
    assert answers, "no answer before the stop signal"
    for a in answers:
        assert a.status == status, a
        assert a.should_retry == "true", a
        assert a.retry_after is not None and 1 <= int(a.retry_after) <= RETRY_CAP, a
        assert a.code == code, a
        assert f"'{model}'" in a.message and OUT_OF_CAPACITY in a.message, a


def check_stop_answer(answer: Answer, *, status: int, code: str, model: str, family: str) -> None:
    """The stop signal: final, no ``Retry-After``, and a message the human can act on."""
    assert answer.status == status, answer
    assert answer.should_retry == "false", answer
    assert answer.retry_after is None, answer
    assert answer.code == code, answer
    assert answer.message.startswith(f"model '{model}' {UNAVAILABLE} "), answer
    assert NOT_RETRYING in answer.message, answer
    assert f"models that answer now: {BACKUP[family]}" in answer.message, answer


@pytest.mark.parametrize("api", SDK_APIS)
def test_sdk_outage_through_spillgate(outage: Outage, api: Api) -> None:
    """Before the stop the SDK retries (``max_retries`` 2) on capped ``Retry-After``s and fails;
    after it, one HTTP request and an exception naming the outage."""
    result: SdkSpillgate = outage.get(f"sdk-{api}/spillgate")
    why = result.describe()
    family = sdk_family(api)
    status = 529 if family == "anthropic" else 503
    model = CLAUDE_MODEL if api == "messages" else CODEX_MODEL
    retry_code = "overloaded_error" if family == "anthropic" else "server_error"
    stop_codes = {"chat": "server_error", "responses": "server_is_overloaded", "messages": "overloaded_error"}
    stop_code = stop_codes[api]

    before = result.before
    assert before.error is not None and before.status == status, why
    assert len(before.answers) == 3, why  # the first try and the SDK's two retries
    check_retry_answers(before.answers, status=status, code=retry_code, model=model)
    for a, b in itertools.pairwise(before.answers):
        assert a.retry_after is not None and b.at - a.at >= int(a.retry_after) - 0.1, why  # waited out
    assert before.elapsed < STOP_AFTER, why

    after = result.after
    assert after.error is not None and after.status == status, why
    assert len(after.answers) == 1, why  # x-should-retry: false: no SDK retry
    check_stop_answer(after.answers[0], status=status, code=stop_code, model=model, family=family)
    assert UNAVAILABLE in after.error, why
    assert [e.status for e in result.requests] == [status] * 4, why


@pytest.mark.parametrize("api", SDK_APIS)
def test_sdk_outage_direct(outage: Outage, api: Api) -> None:
    """The control: the SDK retries the failing upstream twice, quickly, and fails; every call the
    same (the upstream never says stop)."""
    result: SdkDirect = outage.get(f"sdk-{api}/direct")
    why = json.dumps(result.summary(), indent=1)
    assert result.call.error is not None and result.call.status == 503, why
    assert [a.status for a in result.call.answers] == [503] * 3, why
    assert [a.model for a in result.attempts] == [PRIMARY] * 3, why
    assert result.call.elapsed < 15, why


def test_codex_outage_through_spillgate(outage: Outage) -> None:
    """Codex with its default retries retries the "retry" answers (each Retry-After within the
    cap), and once Spillgate says stop (``server_is_overloaded``) ends the turn with its own
    "Selected model is at capacity", soon after ``STOP_AFTER``."""
    result: ClientRun = outage.get("codex/spillgate")
    assert isinstance(result.run, CodexRun)
    why = result.describe()
    assert not result.timed_out, why
    assert result.run.exit_code == 1 and not result.run.completed, why
    assert result.run.failure == AT_CAPACITY, why

    before, stops = split_at_stop(result.answers)
    check_retry_answers(before, status=503, code="server_error", model=CODEX_MODEL)
    assert stops, why
    for answer in stops:  # once it says stop, it keeps saying so
        check_stop_answer(answer, status=503, code="server_is_overloaded", model=CODEX_MODEL, family="openai")
    assert len(stops) <= CODEX_TRANSPORT_TRIES, why  # one request's transport retries at most
    assert stops[0].at - result.answers[0].at >= STOP_AFTER - 0.2, why
    for a, b in zip(before, result.answers[1:], strict=False):  # every retry answer and the next
        assert a.retry_after is not None and b.at - a.at >= int(a.retry_after) - 0.2, why  # waited out

    assert result.elapsed < GIVE_UP_BOUND, why
    assert result.ended - stops[0].at < AFTER_STOP_BOUND, why
    assert len(result.requests) == len(result.answers), why


def test_codex_outage_direct(outage: Outage) -> None:
    """The control: Codex against ``up-primary`` (503 ``server_is_overloaded``) sends one request
    with its transport retries and ends the turn with "Selected model is at capacity"."""
    result: ClientRun = outage.get("codex/direct")
    assert isinstance(result.run, CodexRun)
    why = result.describe()
    assert not result.timed_out, why
    assert result.run.exit_code == 1 and result.run.failure == AT_CAPACITY, why
    assert [a.model for a in result.attempts] == [PRIMARY] * CODEX_TRANSPORT_TRIES, why
    assert all(a.outcome == "status:503" for a in result.attempts), why


def test_claude_code_outage_through_spillgate(outage: Outage) -> None:
    """Claude Code with its default retries retries the "retry" answers (529, Retry-After within
    the cap) and stops at the first ``x-should-retry: false``, showing the gateway's message."""
    result: ClientRun = outage.get("claude/spillgate")
    assert isinstance(result.run, ClaudeRun)
    why = result.describe()
    assert not result.timed_out, why
    assert result.run.run.returncode != 0 and result.run.is_error, why
    assert UNAVAILABLE in result.run.text, why

    before, stops = split_at_stop(result.answers)
    check_retry_answers(before, status=529, code="overloaded_error", model=CLAUDE_MODEL)
    assert len(stops) == 1, why  # it stops at once
    check_stop_answer(stops[0], status=529, code="overloaded_error", model=CLAUDE_MODEL, family="anthropic")
    assert stops[0].at - result.answers[0].at >= STOP_AFTER - 0.2, why
    # One api_retry per "retry" answer: its own retry budget was not what ended it.
    assert len(result.run.retries) == len(before) < CLAUDE_DEFAULT_RETRIES, why
    for a, b in zip(before, result.answers[1:], strict=False):  # every retry answer and the next
        assert a.retry_after is not None and b.at - a.at >= int(a.retry_after) - 0.2, why  # waited out

    assert result.elapsed < GIVE_UP_BOUND, why
    assert result.ended - stops[0].at < AFTER_STOP_BOUND, why
    assert len(result.requests) == len(result.answers), why


def test_claude_code_outage_direct(outage: Outage) -> None:
    """The control: Claude Code against ``up-primary`` retries the same failing upstream for
    minutes (its default loop), if it gives up at all before :data:`CLAUDE_DIRECT_TIMEOUT`."""
    result: ClientRun = outage.get("claude/direct")
    assert isinstance(result.run, ClaudeRun)
    why = result.describe()
    assert all(a.model == PRIMARY and a.outcome == "status:503" for a in result.attempts), why
    assert len(result.attempts) >= 4, why  # it retried blindly, far past the SDKs' three
    assert result.elapsed > GIVE_UP_BOUND, why  # longer than any client through Spillgate may take
    if not result.timed_out:
        assert result.run.run.returncode != 0 and result.run.is_error, why
        assert len(result.run.retries) == CLAUDE_DEFAULT_RETRIES, why
        assert len(result.attempts) == CLAUDE_DEFAULT_RETRIES + 1, why


def test_outage_report_written(outage: Outage) -> None:
    """Every scenario ran to an outcome (none raised) and the report is there."""
    raised = {
        name: f"{type(result).__name__}: {result}"
        for name, result in outage.results.items()
        if isinstance(result, BaseException)
    }
    assert not raised, raised
    assert (OUTPUT_DIR / "e2e-outage.json").exists() and (OUTPUT_DIR / "e2e-outage.md").exists()
