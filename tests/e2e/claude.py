"""Helpers for the Claude Code and SDK end-to-end tests.

Both compare two arms per scenario, each on its own fresh fake upstream (so the fault's
request counter and the gateway's health state start from zero):

- **direct**: the client talks to the fake upstream itself, model ``up-primary`` — the
  failing primary, as a client configured with one upstream sees it;
- **spillgate**: the client talks to Spillgate (``claude-test`` / ``gpt-test``), which has the
  failing primary and a second route, ``up-secondary``.

What each arm saw goes into a :class:`Report` (``test-output/e2e-*.json``) for the README table.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from spillgate.fake import ApiProtocol, AttemptRecord, FakeUpstream, Fault
from spillgate.fake.content import stream_events
from spillgate.fake.protocol import ANTHROPIC
from spillgate.observe.events import Event, RequestFinished

from .conftest import (
    BIN,
    CLAUDE_MODEL,
    CLIENT_KEY,
    PRIMARY,
    SECONDARY,
    Run,
    Stack,
    base_env,
    e2e_config,
    run_client,
    start_stack,
)

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"

CLAUDE_TEXT = "SPILLGATE-E2E-CLAUDE"
"""What the fake answers Claude Code, on every route (``Fault(text=...)``)."""

CLAUDE_MAX_RETRIES = 2
"""``CLAUDE_CODE_MAX_RETRIES`` for every Claude Code run, direct and through Spillgate alike.

Claude Code 2.1.328 retries a 529 / 503 ten times over about three minutes by default
(measured: 177 s direct against an upstream at capacity). ``CLAUDE_CODE_MAX_RETRIES=2`` caps its
streaming retry loop at 3 attempts (its ``api_retry`` events then say ``"max_retries": 2``), so
every run ends in seconds yet still shows whether it retries blindly. The non-streaming fallback
it starts after a broken stream runs its own loop (it reported ``"max_retries": 1``).
``ANTHROPIC_MAX_RETRIES`` is not read by this build (measured: still the default loop).

An ``api_retry`` event is not always a request: while waiting out a ``Retry-After`` longer than
30 s, Claude Code reports one every 30 s. With this cap the waits stay below that.
"""

CLAUDE_VERSION = "2.1.328"

OPENAI_CAPACITY_MESSAGE = "Selected model is at capacity. Please try a different model."


# -- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A primary's fault (and the secondary's, healthy unless every route is down).

    Stream positions are given relative to the first content event of the protocol at hand
    (``stream_error_after_content=1``: one text delta reaches the client, then the error), so
    one scenario means the same thing for Anthropic Messages, Chat Completions and Responses.
    """

    name: str
    description: str
    primary: Mapping[str, Any]
    secondary: Mapping[str, Any] = field(default_factory=dict)
    runs: int = 1
    """Client runs per arm, one after the other against the same upstream (a 50 % fault
    spreads its failures evenly: request 0 is healthy, 1 faulty, 2 healthy, ...)."""

    @property
    def every_route_down(self) -> bool:
        return bool(self.secondary)

    def faults(self, protocol: ApiProtocol, text: str) -> tuple[Fault, Fault]:
        return _fault(self.primary, protocol, text), _fault(self.secondary, protocol, text)


def first_content_index(protocol: ApiProtocol) -> int:
    """Index of the first text delta in the fake's stream for ``protocol`` (Anthropic: after
    ``message_start``, ``content_block_start`` and ``ping``)."""
    return stream_events(protocol, "m", ("a", "b"), 1, 0, False).first_content


def _fault(spec: Mapping[str, Any], protocol: ApiProtocol, text: str) -> Fault:
    fields = dict(spec)
    first = first_content_index(protocol)
    for relative, absolute in (
        ("stream_error_after_content", "stream_error_after_events"),
        ("cut_after_content", "cut_after_events"),
    ):
        if relative in fields:
            fields[absolute] = first + fields.pop(relative)
    if protocol != ANTHROPIC and "stream_error_after_events" in fields:
        # OpenAI's in-stream overload: a chat error chunk / ``response.failed`` with the code
        # its 503 carries (Anthropic's default is an ``event: error`` overloaded_error).
        fields.setdefault("stream_error_code", "server_is_overloaded")
        fields.setdefault("stream_error_message", OPENAI_CAPACITY_MESSAGE)
    return Fault.from_dict({"text": text, **fields}, where="scenario")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "overloaded",
        "primary 100 % overloaded (529 overloaded_error)",
        {"preset": "overloaded"},
    ),
    Scenario(
        "in_stream_error",
        "primary fails in-stream on a 200 after the first text delta (Anthropic event: error "
        "overloaded_error; OpenAI error chunk / response.failed server_is_overloaded); "
        "a request that does not stream gets it as a 529 / 500",
        {"stream_error_after_content": 1},
    ),
    Scenario(
        "half_overloaded",
        "primary overloaded on every other request (rate 0.5), four client runs in a row",
        {"preset": "overloaded", "rate": 0.5},
        runs=4,
    ),
    Scenario(
        "rate_limited_retry_after",
        "primary 429 with Retry-After: 2",
        {"preset": "rate_limited", "retry_after": 2},
    ),
    Scenario(
        "rate_limited",
        "primary 429 without Retry-After",
        {"preset": "rate_limited"},
    ),
    Scenario(
        "stream_cut",
        "primary drops the connection after two text deltas (a request that does not stream: "
        "before answering)",
        {"cut_after_content": 2},
    ),
    Scenario(
        "all_at_capacity",
        "every route at capacity (503; Anthropic overloaded_error, OpenAI server_is_overloaded)",
        {"preset": "capacity"},
        secondary={"preset": "capacity"},
    ),
)
SCENARIO_IDS = [s.name for s in SCENARIOS]


# -- the two arms ----------------------------------------------------------------------------


def gateway_config(fake: FakeUpstream) -> dict[str, Any]:
    """The harness's config plus a ``*`` alias on the Claude routes.

    Claude Code 2.1.328 in ``-p`` mode asks for nothing but ``POST /v1/messages`` with the
    ``--model`` it was given (``test_claude_code_sends_only_messages_for_its_model`` checks it);
    other modes and versions also ask a small fast model (titles, quota checks). The ``*`` alias
    serves any such name on the same two routes instead of a 404 that would fail the session.
    """
    config = e2e_config(fake)
    config["models"]["*"] = copy.deepcopy(config["models"][CLAUDE_MODEL])
    return config


@dataclass
class Arm:
    """One side of a comparison: where the client is pointed and what the upstream saw."""

    name: str
    """``direct`` or ``spillgate``."""
    fake: FakeUpstream
    base_url: str
    """The root URL (no ``/v1``)."""
    api_key: str
    stack: Stack | None = None
    events: list[Event] = field(default_factory=list)
    """Spillgate's attempt and request events (the spillgate arm only)."""

    def model(self, public: str) -> str:
        return public if self.stack is not None else PRIMARY

    @property
    def attempts(self) -> list[AttemptRecord]:
        return self.fake.attempts

    @property
    def client_requests(self) -> list[RequestFinished]:
        return [e for e in self.events if isinstance(e, RequestFinished)]

    def upstream_summary(self) -> list[str]:
        """``model:outcome`` of every request the fake upstream received, in order."""
        return [f"{a.model}:{a.outcome}{'' if a.stream else ' (no stream)'}" for a in self.attempts]


@contextlib.asynccontextmanager
async def direct_arm(primary: Fault) -> AsyncIterator[Arm]:
    fake = FakeUpstream({PRIMARY: primary})
    await fake.start("127.0.0.1", 0)
    try:
        yield Arm("direct", fake, fake.base_url, "sk-e2e-direct")
    finally:
        await fake.close()


@contextlib.asynccontextmanager
async def spillgate_arm(
    primary: Fault,
    secondary: Fault,
    config: Callable[[FakeUpstream], dict[str, Any]] | None = None,
) -> AsyncIterator[Arm]:
    """Spillgate (``config(fake)``, default :func:`gateway_config`) in front of its own fake."""
    fake = FakeUpstream({PRIMARY: primary, SECONDARY: secondary})
    await fake.start("127.0.0.1", 0)
    try:
        stack = await start_stack(fake, (config or gateway_config)(fake))
        arm = Arm("spillgate", fake, stack.gateway_url, CLIENT_KEY, stack)
        stack.app.gateway.events.subscribe(arm.events.append)
        try:
            yield arm
        finally:
            await stack.app.stop(grace=1)
    finally:
        await fake.close()


# -- Claude Code -----------------------------------------------------------------------------


@dataclass
class ClaudeRun:
    """One ``claude -p ... --output-format stream-json`` run, its events parsed."""

    run: Run
    events: list[dict[str, Any]]
    unparsed: list[str]

    @classmethod
    def parse(cls, run: Run) -> ClaudeRun:
        events: list[dict[str, Any]] = []
        unparsed: list[str] = []
        for line in run.stdout.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                unparsed.append(line)
                continue
            if isinstance(event, dict):
                events.append(event)
        return cls(run, events, unparsed)

    @property
    def result(self) -> dict[str, Any]:
        found = [e for e in self.events if e.get("type") == "result"]
        assert found, f"no result event from Claude Code:\n{self.describe()}"
        return found[-1]

    @property
    def text(self) -> str:
        return str(self.result.get("result", ""))

    @property
    def is_error(self) -> bool:
        return bool(self.result.get("is_error"))

    @property
    def retries(self) -> list[dict[str, Any]]:
        """The ``system``/``api_retry`` events: one per retry Claude Code made on its own."""
        return [e for e in self.events if e.get("type") == "system" and e.get("subtype") == "api_retry"]

    def succeeded(self, text: str) -> bool:
        return self.run.returncode == 0 and not self.run.timed_out and not self.is_error and self.text == text

    def describe(self) -> str:
        r = self.run
        return (
            f"exit {r.returncode} after {r.elapsed:.1f}s{' (killed: timeout)' if r.timed_out else ''}\n"
            f"stdout (tail): {r.stdout[-2500:]}\nstderr (tail): {r.stderr[-1500:]}"
        )

    def summary(self) -> dict[str, Any]:
        result = next((e for e in self.events if e.get("type") == "result"), {})
        return {
            "exit_code": self.run.returncode,
            "timed_out": self.run.timed_out,
            "is_error": bool(result.get("is_error")),
            "result": str(result.get("result", ""))[:400],
            "api_error_status": result.get("api_error_status"),
            "api_retries": len(self.retries),
            "retry_delays_ms": [e.get("retry_delay_ms") for e in self.retries],
            "retry_statuses": [e.get("error_status") for e in self.retries],
            "elapsed_s": round(self.run.elapsed, 2),
        }


async def run_claude(
    arm: Arm,
    workdir: Path,
    *,
    model: str,
    timeout: float = 60.0,
    prompt: str = "Say hello.",
    base_url: str | None = None,
    nonessential_traffic: bool = False,
    max_retries: int | None = CLAUDE_MAX_RETRIES,
    extra: Sequence[str] = (),
) -> ClaudeRun:
    """Claude Code in print mode, pointed at ``arm`` (or ``base_url``), with ``workdir`` (an
    existing, fresh directory) as its HOME and working directory. ``max_retries``:
    ``CLAUDE_CODE_MAX_RETRIES``, or ``None`` for Claude Code's own default retry loop."""
    env = base_env(workdir)
    env.update(
        ANTHROPIC_BASE_URL=base_url or arm.base_url,
        ANTHROPIC_API_KEY=arm.api_key,
        DISABLE_AUTOUPDATER="1",
    )
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    if not nonessential_traffic:
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    argv = [
        str(BIN / "claude"),
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        model,
        *extra,
    ]
    return ClaudeRun.parse(await run_client(argv, env=env, cwd=workdir, timeout=timeout))


# -- a recording proxy (what a client sends, whatever the path) ------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    """Path and query as the client sent them."""
    model: str | None
    stream: bool | None
    status: int
    error: str | None = None
    """Why the relay failed (``status`` is then the proxy's own 502)."""


class RecordingProxy:
    """Relays every request to ``target`` and records it, unknown paths included (the gateway's
    events and the fake's attempt log only see the LLM endpoints)."""

    _HOP = frozenset(
        {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
    )

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        # A fresh upstream connection per request: a framing error on one cannot spill into the next.
        self._session = ClientSession(
            connector=TCPConnector(force_close=True), timeout=ClientTimeout(total=60), auto_decompress=False
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        model: str | None = None
        stream: bool | None = None
        with contextlib.suppress(orjson.JSONDecodeError):
            payload = orjson.loads(body) if body else None
            if isinstance(payload, dict):
                model = payload.get("model") if isinstance(payload.get("model"), str) else None
                stream = payload.get("stream") is True
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self._HOP}
        try:
            async with self._session.request(
                request.method, self.target + request.path_qs, headers=headers, data=body
            ) as upstream:
                self.seen.append(Seen(request.method, request.path_qs, model, stream, upstream.status))
                response = web.StreamResponse(status=upstream.status)
                for name, value in upstream.headers.items():
                    if name.lower() not in self._HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as exc:  # recorded, and answered like a proxy would
            why = f"{type(exc).__name__}: {exc}"[:300]
            self.seen.append(Seen(request.method, request.path_qs, model, stream, 502, why))
            return web.Response(status=502, text="recording proxy: upstream failed")


# -- the report ------------------------------------------------------------------------------


class Report:
    """Per scenario, what each arm saw; written to ``test-output/<name>.json`` after every test."""

    def __init__(self, name: str, meta: dict[str, Any]) -> None:
        self.path = OUTPUT_DIR / f"{name}.json"
        self.started = time.monotonic()
        self.data: dict[str, Any] = {"meta": meta, "scenarios": {}}

    def add(self, scenario: str, entry: Mapping[str, Any]) -> None:
        self.data["scenarios"][scenario] = dict(entry)
        self.write()

    def write(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.started, 1)
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable) + "\n")
        tmp.replace(self.path)


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return repr(value)
