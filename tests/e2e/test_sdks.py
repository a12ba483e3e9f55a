"""The openai and anthropic Python SDKs against a failing primary: direct to the upstream vs
through Spillgate with a healthy second route.

Six calls per scenario — ``AsyncAnthropic().messages.create`` and ``AsyncOpenAI()``'s
``chat.completions.create`` and ``responses.create``, streaming and not — each with the SDK's
defaults (``max_retries=2``: up to 3 HTTP requests) in both arms. Every call and arm has its
own fake upstream (and gateway), and all of a scenario's run at once. An httpx response hook
records each HTTP response the SDK received (status, ``x-should-retry``, ``retry-after``), so
SDK retries are counted where they happen. Outcomes go to ``test-output/e2e-sdks.json``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Literal

import anthropic
import openai
import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
)
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseTextDeltaEvent,
)

from spillgate.fake import ApiProtocol
from spillgate.fake.protocol import ANTHROPIC, CHAT, RESPONSES

from .claude import SCENARIO_IDS, SCENARIOS, Arm, Report, Scenario, direct_arm, spillgate_arm
from .conftest import CLAUDE_MODEL, CODEX_MODEL, PRIMARY, SECONDARY

SDK_TEXT = "SPILLGATE-E2E-SDK"
"""What the fake answers on every route."""
CALL_TIMEOUT = 60.0
"""Hard limit per SDK call, its own retries included (the longest takes ~15 s)."""
MAX_RETRIES = 2
"""Both SDKs' default; left as it is in both arms."""

Api = Literal["messages", "chat", "responses"]


@dataclass(frozen=True, slots=True)
class Variant:
    api: Api
    stream: bool

    @property
    def sdk(self) -> str:
        return "anthropic" if self.api == "messages" else "openai"

    @property
    def protocol(self) -> ApiProtocol:
        if self.api == "messages":
            return ANTHROPIC
        return CHAT if self.api == "chat" else RESPONSES

    @property
    def public_model(self) -> str:
        return CLAUDE_MODEL if self.api == "messages" else CODEX_MODEL

    @property
    def name(self) -> str:
        return f"{self.sdk} {self.api} {'stream' if self.stream else 'plain'}"


APIS: tuple[Api, ...] = ("messages", "chat", "responses")
VARIANTS = tuple(Variant(api, stream) for api in APIS for stream in (False, True))


@dataclass(frozen=True, slots=True)
class HttpSeen:
    """One HTTP response the SDK received (its headers; a stream's body may still be coming)."""

    at: float
    status: int
    should_retry: str | None
    retry_after: str | None
    spillgate_attempts: str | None


@dataclass
class SdkCall:
    complete: bool
    """The answer ended normally (stop reason / ``message_stop`` / ``response.completed``)."""
    text: str
    error: str | None
    """``ExceptionType: message``, or an in-stream failure event the SDK handed over as data."""
    http: list[HttpSeen]
    elapsed: float

    @property
    def statuses(self) -> list[int]:
        return [h.status for h in self.http]

    def ok(self) -> bool:
        return self.complete and self.error is None and self.text == SDK_TEXT

    def summary(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "text": self.text,
            "error": None if self.error is None else self.error[:400],
            "http_statuses": self.statuses,
            "x_should_retry": [h.should_retry for h in self.http],
            "retry_after": [h.retry_after for h in self.http],
            "x_spillgate_attempts": [h.spillgate_attempts for h in self.http],
            "elapsed_s": round(self.elapsed, 2),
        }

    def describe(self) -> str:
        return f"{self.summary()}"


# -- one call through each SDK --------------------------------------------------------------


async def _messages(client: anthropic.AsyncAnthropic, model: str, stream: bool, parts: list[str]) -> bool:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Say hello."}]
    if not stream:
        message = await client.messages.create(model=model, max_tokens=64, messages=messages)
        parts.extend(block.text for block in message.content if isinstance(block, TextBlock))
        return message.stop_reason == "end_turn"
    stop_reason: str | None = None
    stopped = False
    events = await client.messages.create(model=model, max_tokens=64, messages=messages, stream=True)
    async for event in events:
        if isinstance(event, RawContentBlockDeltaEvent) and isinstance(event.delta, TextDelta):
            parts.append(event.delta.text)
        elif isinstance(event, RawMessageDeltaEvent):
            stop_reason = event.delta.stop_reason
        elif isinstance(event, RawMessageStopEvent):
            stopped = True
    return stopped and stop_reason == "end_turn"


async def _chat(client: openai.AsyncOpenAI, model: str, stream: bool, parts: list[str]) -> bool:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
    if not stream:
        completion = await client.chat.completions.create(model=model, messages=messages)
        choice = completion.choices[0]
        parts.append(choice.message.content or "")
        return choice.finish_reason == "stop"
    finished = False
    chunks = await client.chat.completions.create(model=model, messages=messages, stream=True)
    async for chunk in chunks:
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finished = finished or c.finish_reason == "stop"
    return finished


async def _responses(
    client: openai.AsyncOpenAI, model: str, stream: bool, parts: list[str], failures: list[str]
) -> bool:
    if not stream:
        response = await client.responses.create(model=model, input="Say hello.")
        parts.append(response.output_text)
        return response.status == "completed"
    completed = False
    events = await client.responses.create(model=model, input="Say hello.", stream=True)
    async for event in events:
        if isinstance(event, ResponseTextDeltaEvent):
            parts.append(event.delta)
        elif isinstance(event, ResponseCompletedEvent):
            completed = True
        elif isinstance(event, ResponseFailedEvent):
            error = event.response.error
            failures.append(f"response.failed: {error.code}: {error.message}" if error else "response.failed")
        elif isinstance(event, ResponseErrorEvent):
            failures.append(f"error event: {event.code}: {event.message}")
    return completed and not failures


async def call_sdk(variant: Variant, arm: Arm) -> SdkCall:
    """One call of ``variant`` against ``arm`` with the SDK's default retries."""
    seen: list[HttpSeen] = []

    async def on_response(response: Any) -> None:
        h = response.headers
        seen.append(
            HttpSeen(
                time.monotonic(),
                response.status_code,
                h.get("x-should-retry"),
                h.get("retry-after"),
                h.get("x-spillgate-attempts"),
            )
        )

    hooks = {"response": [on_response]}
    model = arm.model(variant.public_model)
    parts: list[str] = []
    failures: list[str] = []
    complete = False
    error: str | None = None
    started = time.monotonic()
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            if variant.sdk == "anthropic":
                a_client = anthropic.AsyncAnthropic(
                    base_url=arm.base_url,
                    api_key=arm.api_key,
                    http_client=anthropic.DefaultAsyncHttpxClient(event_hooks=hooks),
                )
                async with a_client:
                    complete = await _messages(a_client, model, variant.stream, parts)
            else:
                o_client = openai.AsyncOpenAI(
                    base_url=arm.base_url + "/v1",
                    api_key=arm.api_key,
                    http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks),
                )
                async with o_client:
                    if variant.api == "chat":
                        complete = await _chat(o_client, model, variant.stream, parts)
                    else:
                        complete = await _responses(o_client, model, variant.stream, parts, failures)
    except Exception as exc:  # what the application gets is the outcome being measured
        error = f"{type(exc).__name__}: {exc}"
    if failures and error is None:
        error = "; ".join(failures)
    return SdkCall(complete and error is None, "".join(parts), error, seen, time.monotonic() - started)


# -- one scenario, every call, both arms ------------------------------------------------------


@dataclass
class ArmResult:
    arm: Arm
    calls: list[SdkCall] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": sum(c.ok() for c in self.calls),
            "calls": [c.summary() for c in self.calls],
            "http_requests": sum(len(c.http) for c in self.calls),
            "upstream_attempts": len(self.arm.attempts),
            "upstream": self.arm.upstream_summary(),
        }
        if self.arm.stack is not None:
            out["gateway_requests"] = [
                {"status": e.status, "attempts": e.attempts, "route": e.route, "recovered": e.recovered}
                for e in self.arm.client_requests
            ]
        return out

    def describe(self) -> str:
        return f"{self.arm.name}: {self.summary()}"


async def run_arm(variant: Variant, arm: Arm, runs: int) -> ArmResult:
    result = ArmResult(arm)
    for _ in range(runs):
        result.calls.append(await call_sdk(variant, arm))
    return result


async def run_variant(scenario: Scenario, variant: Variant) -> tuple[ArmResult, ArmResult]:
    primary, secondary = scenario.faults(variant.protocol, SDK_TEXT)
    async with direct_arm(primary) as direct, spillgate_arm(primary, secondary) as gateway:
        return await asyncio.gather(
            run_arm(variant, direct, scenario.runs), run_arm(variant, gateway, scenario.runs)
        )


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    r = Report(
        "e2e-sdks",
        {
            "clients": {"openai": version("openai"), "anthropic": version("anthropic")},
            "max_retries": f"{MAX_RETRIES} (the SDK default, both arms)",
            "direct": f"base_url = the fake upstream, model {PRIMARY} (the failing primary)",
            "spillgate": f"base_url = Spillgate, model {CLAUDE_MODEL} / {CODEX_MODEL} "
            f"(routes {PRIMARY}, {SECONDARY})",
            "scripted_answer": SDK_TEXT,
        },
    )
    yield r
    r.write()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
async def test_sdks(scenario: Scenario, report: Report) -> None:
    results = await asyncio.gather(*(run_variant(scenario, v) for v in VARIANTS))
    report.add(
        scenario.name,
        {
            "description": scenario.description,
            "calls": {
                v.name: {"direct": d.summary(), "spillgate": g.summary()}
                for v, (d, g) in zip(VARIANTS, results, strict=True)
            },
        },
    )
    failed: list[str] = []
    for variant, (direct, gateway) in zip(VARIANTS, results, strict=True):
        for arm, check in (
            (direct, check_direct),
            (gateway, check_spillgate_all_down if scenario.every_route_down else check_spillgate_recovers),
        ):
            try:
                check(scenario, variant, arm)
            except AssertionError as exc:
                failed.append(f"{variant.name}, {arm.arm.name}: {exc}\n  {arm.describe()}")
    assert not failed, "\n".join(failed)


def check_spillgate_recovers(scenario: Scenario, variant: Variant, result: ArmResult) -> None:
    """A healthy route is left: every call returns the complete answer from one HTTP request
    (no SDK retry needed), although the primary's fault fired."""
    for call in result.calls:
        assert call.ok(), "not the complete scripted answer"
        assert call.statuses == [200], "the SDK had to retry"
    assert any(a.model == PRIMARY and a.fault_applied for a in result.arm.attempts), "the fault never fired"


def check_spillgate_all_down(scenario: Scenario, variant: Variant, result: ArmResult) -> None:
    """Every route at capacity: the SDK gets an error naming the model and the cause, marked
    ``x-should-retry: true`` with a ``Retry-After`` it waits out, ``max_retries`` times."""
    (call,) = result.calls
    assert call.error is not None and not call.complete
    assert f"'{variant.public_model}'" in call.error and "out of capacity" in call.error, call.error
    status = 529 if variant.sdk == "anthropic" else 503
    assert call.statuses == [status] * (MAX_RETRIES + 1)
    assert all(h.should_retry == "true" for h in call.http)
    for before, after in zip(call.http, call.http[1:], strict=False):
        assert before.retry_after is not None and int(before.retry_after) >= 1
        assert after.at - before.at >= int(before.retry_after) - 0.1, "Retry-After not waited out"
    assert all(int(h.spillgate_attempts or 0) <= 2 for h in call.http), "more than one try per route"
    assert call.elapsed < 40


def check_direct(scenario: Scenario, variant: Variant, result: ArmResult) -> None:
    """The control: the SDK retries the failing upstream blindly (or cannot retry at all once a
    stream has started) and, unless the fault is intermittent, the call fails."""
    attempts = result.arm.attempts
    assert all(a.model == PRIMARY for a in attempts)
    if scenario.name == "half_overloaded":
        failures = [a for a in attempts if a.fault_applied]
        assert all(c.ok() for c in result.calls), "an intermittent fault should be retried into success"
        assert failures, "the fault never fired"
        assert len(attempts) == len(result.calls) + len(failures), "one blind retry per failure"
        return
    (call,) = result.calls
    assert call.error is not None and not call.complete
    assert all(a.fault_applied for a in attempts)
    broken_stream = scenario.name in ("in_stream_error", "stream_cut") and variant.stream
    if broken_stream:
        # The error comes after the first text: no retry, the application has half an answer.
        assert call.statuses == [200] and len(attempts) == 1
        assert call.text and SDK_TEXT.startswith(call.text) and call.text != SDK_TEXT, call.text
        return
    assert len(attempts) == MAX_RETRIES + 1, "expected the SDK's blind retries"
    if scenario.name == "stream_cut":
        assert call.statuses == [], "a connection dropped before the answer has no status"
        return
    expected = {
        "overloaded": 529,
        "all_at_capacity": 503,
        "rate_limited": 429,
        "rate_limited_retry_after": 429,
        "in_stream_error": 529 if variant.sdk == "anthropic" else 500,
    }[scenario.name]
    assert call.statuses == [expected] * (MAX_RETRIES + 1)
    if scenario.name == "rate_limited_retry_after":
        gaps = [b.at - a.at for a, b in zip(call.http, call.http[1:], strict=False)]
        assert all(gap >= 1.9 for gap in gaps), f"Retry-After: 2 not honoured: {gaps}"
