"""What each attempt and request cost, through the running gateway: a 503 failover costs nothing
more, a replayed cut stream records what was wasted, a continuation wastes its re-read prompt, an
in-band error wastes everything, unknown prices stay unknown, and a client that leaves mid-stream
is recorded with what it cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.observe.events import AttemptFinished, Event, RequestFinished

from ..clock import ShiftedClock
from ..eventually import eventually
from ..harness import BODIES, PATHS, PRIMARY, SECONDARY, Scenario, scenario_config, start_scenario

APIS = ["chat", "responses", "messages"]
PRICE = {"input": 1000.0, "output": 2000.0}
"""USD per million tokens: large, so that a few tokens cost a readable amount."""
PRICING = {"models": {PRIMARY: PRICE, SECONDARY: PRICE}}


class Recorded:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def attempts(self) -> list[AttemptFinished]:
        found = [e for e in self.events if isinstance(e, AttemptFinished)]
        return sorted(found, key=lambda e: e.attempt)

    def request(self) -> RequestFinished:
        (found,) = [e for e in self.events if isinstance(e, RequestFinished)]
        return found


async def start(fake: FakeUpstream, clock: ShiftedClock, **overrides: Any) -> tuple[Scenario, Recorded]:
    overrides.setdefault("pricing", PRICING)
    sc = await start_scenario(fake, scenario_config(fake, **overrides), clock)
    seen = Recorded()
    sc.app.gateway.runtime.events.subscribe(seen)
    return sc, seen


@pytest.fixture
async def priced(fake: FakeUpstream, clock: ShiftedClock) -> AsyncIterator[tuple[Scenario, Recorded]]:
    sc, seen = await start(fake, clock)
    yield sc, seen
    await sc.http.close()
    await sc.app.stop(grace=1)


def expected_cost(a: AttemptFinished) -> float:
    assert a.input_tokens is not None and a.output_tokens is not None
    return (a.input_tokens * PRICE["input"] + a.output_tokens * PRICE["output"]) / 1e6


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", APIS)
async def test_a_503_failover_wastes_nothing(
    priced: tuple[Scenario, Recorded], api: str, stream: bool
) -> None:
    sc, seen = priced
    sc.fake.set(PRIMARY, Fault.capacity())
    assert (await sc.ask(api, stream)).status == 200
    refused, answered = seen.attempts()
    assert (refused.ok, refused.status, refused.cost_usd, refused.wasted_usd) == (False, 503, 0.0, 0.0)
    assert refused.input_tokens is None
    assert answered.ok and answered.kind == "failover"
    assert answered.cost_usd is not None and answered.cost_usd > 0
    assert answered.cost_usd == pytest.approx(expected_cost(answered))
    assert answered.wasted_usd == 0.0
    request = seen.request()
    assert request.cost_usd == pytest.approx(answered.cost_usd)
    assert request.wasted_usd == 0.0
    # Chat streams report usage only when asked (stream_options.include_usage): estimated then.
    assert answered.estimated is (api == "chat" and stream)
    assert request.cost_estimated is answered.estimated


@pytest.mark.parametrize("api", APIS)
async def test_a_replayed_cut_stream_records_its_waste(priced: tuple[Scenario, Recorded], api: str) -> None:
    sc, seen = priced
    sc.fake.set(PRIMARY, Fault(cut_after_events=5))
    result = await sc.ask(api, True)
    assert result.status == 200 and result.ended_normally(api)
    cut, replay = seen.attempts()
    # The cut stream has no usage report: estimated from the request and the text it sent.
    assert not cut.ok and cut.error_class == "stream_cut" and cut.estimated
    assert cut.output_tokens is not None and cut.output_tokens > 0
    assert cut.input_tokens is not None and cut.input_tokens > 0
    assert cut.cost_usd == pytest.approx(expected_cost(cut))
    assert cut.wasted_usd == cut.cost_usd  # the replay paid for all of it again
    assert cut.streamed is not None and cut.streamed >= 0
    assert replay.ok and replay.kind == "replay" and replay.wasted_usd == 0.0
    assert replay.cost_usd is not None and replay.cost_usd > 0
    request = seen.request()
    assert request.recovered == "replay"
    assert request.cost_usd == pytest.approx(cut.cost_usd + replay.cost_usd)
    assert request.wasted_usd == pytest.approx(cut.cost_usd)
    assert request.cost_estimated


@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_a_continuation_wastes_its_reread_prompt(
    fake: FakeUpstream, clock: ShiftedClock, api: str
) -> None:
    config = scenario_config(fake, pricing=PRICING)
    for route in config["models"]["coder"]["routes"]:
        if route["model"] == SECONDARY:
            route["supports_prefill"] = True
    sc = await start_scenario(fake, config, clock)
    seen = Recorded()
    sc.app.gateway.runtime.events.subscribe(seen)
    try:
        fake.set(PRIMARY, Fault(cut_after_events=5))
        assert (await sc.ask(api, True)).ended_normally(api)
        cut, continuation = seen.attempts()
        assert continuation.kind == "continuation"
        assert cut.wasted_usd == 0.0  # its text was kept: the continuation went on from it
        assert continuation.input_tokens is not None and continuation.cost_usd is not None
        assert continuation.wasted_usd == pytest.approx(continuation.input_tokens * PRICE["input"] / 1e6)
        assert 0 < continuation.wasted_usd < continuation.cost_usd
        assert seen.request().wasted_usd == pytest.approx(continuation.wasted_usd)
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


@pytest.mark.parametrize("api", APIS)
async def test_an_in_band_error_wastes_everything(priced: tuple[Scenario, Recorded], api: str) -> None:
    sc, seen = priced
    sc.fake.set(PRIMARY, Fault(cut_after_events=5))
    sc.fake.set(SECONDARY, Fault(cut_after_events=5))
    result = await sc.ask(api, True)
    assert result.status == 200 and not result.ended_normally(api)
    attempts = seen.attempts()
    assert len(attempts) == 2
    for a in attempts:
        assert not a.ok and a.estimated and a.cost_usd is not None and a.cost_usd > 0
        assert a.wasted_usd == a.cost_usd
    request = seen.request()
    assert request.recovered == "in_band_error"
    assert request.wasted_usd == pytest.approx(request.cost_usd)


async def test_pricing_off_and_unknown_prices_leave_the_cost_unknown(
    fake: FakeUpstream, clock: ShiftedClock
) -> None:
    sc, seen = await start(fake, clock, pricing="off")
    try:
        assert (await sc.ask("chat")).status == 200
        (attempt,) = seen.attempts()
        assert attempt.input_tokens is not None and attempt.cost_usd is None and attempt.wasted_usd is None
        assert seen.request().cost_usd is None
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
    # Priced, but not this model (the fake's upstream names are in no price list): unknown, counted.
    sc, seen = await start(fake, clock, pricing={"models": {"some-other-model": PRICE}})
    try:
        sc.fake.set(PRIMARY, Fault.capacity())
        assert (await sc.ask("chat")).status == 200
        refused, answered = seen.attempts()
        assert refused.cost_usd == 0.0  # a refusal is not billed, whatever the price
        assert answered.input_tokens is not None and answered.cost_usd is None
        assert seen.request().cost_usd is None
        assert sc.app.gateway.runtime.prices.unknown == {SECONDARY: 1}
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_a_client_that_leaves_mid_stream_is_recorded_with_its_cost(
    priced: tuple[Scenario, Recorded],
) -> None:
    sc, seen = priced
    sc.fake.set(PRIMARY, Fault(event_delay=0.2))
    body = {**BODIES["responses"], "stream": True}
    async with sc.http.post(
        sc.app.url + PATHS["responses"], data=orjson.dumps(body), headers={"content-type": "application/json"}
    ) as resp:
        assert resp.status == 200
        await resp.content.readany()  # the first events, then the client goes away
        resp.close()
    await eventually(
        lambda: any(isinstance(e, RequestFinished) for e in seen.events),
        timeout=5,
        what="the request's record",
    )
    (attempt,) = seen.attempts()
    request = seen.request()
    assert request.recovered == "client_left" and request.ok
    assert attempt.estimated and attempt.cost_usd is not None and attempt.cost_usd > 0
    assert attempt.wasted_usd == 0.0
    assert request.cost_usd == pytest.approx(attempt.cost_usd)
    await asyncio.sleep(0)
