"""Each upstream fault through the gateway: what the client got, what each upstream saw, and when.

Every scenario runs for the three APIs, streaming and not, against a primary route and a
healthy secondary, and ends by checking that the gateway answers normally afterwards.
"""

from __future__ import annotations

import orjson
import pytest

from spillgate.fake import DEFAULT_TEXT, FakeUpstream, Fault

from ..harness import PRIMARY, SECONDARY, Scenario, scenario_config, start_scenario

APIS = ["chat", "responses", "messages"]
MATRIX = [(api, stream) for api in APIS for stream in (False, True)]
IDS = [f"{api}-{'stream' if stream else 'plain'}" for api, stream in MATRIX]
ROUTE = {
    "chat": ("coder[0]", "coder[1]"),
    "responses": ("coder[0]", "coder[1]"),
    "messages": ("coder[2]", "coder[3]"),
}


async def answers_normally(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.clear()
    result = await sc.ask(api, stream)
    assert result.status == 200, result.reply.body
    assert result.text(api, stream) == DEFAULT_TEXT


def complete(result: object, api: str, stream: bool) -> None:
    from ..harness import Result

    assert isinstance(result, Result)
    assert result.status == 200, result.reply.body
    assert result.text(api, stream) == DEFAULT_TEXT
    if stream:
        assert result.ended_normally(api)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_429_with_a_short_retry_after_keeps_the_model(sc: Scenario, api: str, stream: bool) -> None:
    # Retry-After 1 s <= max_retry_wait (2 s): waiting keeps the model the user chose.
    sc.fake.set(PRIMARY, Fault.rate_limited(retry_after=1, times=1))
    first = await sc.ask(api, stream)
    complete(first, api, stream)
    assert first.header("x-spillgate-route") == ROUTE[api][0]
    assert first.header("x-spillgate-attempts") == "2"
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (2, 0)
    spacing = sc.times(PRIMARY)[1] - sc.times(PRIMARY)[0]
    assert 1.0 <= spacing < 1.5
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_429_with_a_long_retry_after_fails_over_then_returns(
    sc: Scenario, api: str, stream: bool
) -> None:
    # Retry-After 3 s > max_retry_wait (2 s): another model answers at once.
    sc.fake.set(PRIMARY, Fault.rate_limited(retry_after=3, times=1))
    first = await sc.ask(api, stream)
    complete(first, api, stream)
    assert first.header("x-spillgate-route") == ROUTE[api][1]
    assert first.header("x-spillgate-attempts") == "2"
    assert first.elapsed < 1.0
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
    # Inside the announced time the primary is left alone...
    assert (await sc.ask(api, stream)).header("x-spillgate-route") == ROUTE[api][1]
    assert sc.seen(PRIMARY) == 1
    sc.clock.advance(2.5)
    assert (await sc.ask(api, stream)).header("x-spillgate-route") == ROUTE[api][1]
    assert sc.seen(PRIMARY) == 1
    # ...and once it has passed, traffic goes back to it.
    sc.clock.advance(0.55)
    back = await sc.ask(api, stream)
    assert back.header("x-spillgate-route") == ROUTE[api][0]
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize("api", APIS)
async def test_429_retry_after_on_the_only_route_is_waited_out(sc: Scenario, api: str) -> None:
    sc.fake.set(PRIMARY, Fault.rate_limited(retry_after=1, times=1))
    result = await sc.ask(api, model="solo")
    complete(result, api, False)
    assert sc.seen(PRIMARY) == 2
    spacing = sc.times(PRIMARY)[1] - sc.times(PRIMARY)[0]
    assert 1.0 <= spacing < 1.5
    assert 1.0 <= result.elapsed < 2.0


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_429_persistent_without_retry_after(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.rate_limited())
    for _ in range(4):
        complete(await sc.ask(api, stream), api, stream)
    # The primary was marked once and then skipped without being touched.
    assert sc.seen(PRIMARY) == 1
    assert sc.seen(SECONDARY) == 4
    # With the secondary rate limited too, the client hears 429 — always with Retry-After.
    sc.fake.set(SECONDARY, Fault.rate_limited())
    sc.app.gateway.health.enable("account:oa-s")
    sc.app.gateway.health.enable("account:an-s")
    sc.clock.advance(2.05)  # the primary's rate-limit cooldown
    result = await sc.ask(api, stream)
    assert result.status == 429
    assert result.header("retry-after") is not None and int(result.header("retry-after") or 0) >= 1
    assert result.header("x-should-retry") == "true"
    sc.clock.advance(2.05)
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_500_once_is_retried_on_the_same_route(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.server_error(times=1))
    result = await sc.ask(api, stream)
    complete(result, api, stream)
    assert result.header("x-spillgate-route") == ROUTE[api][0]
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (2, 0)
    spacing = sc.times(PRIMARY)[1] - sc.times(PRIMARY)[0]
    assert 0.05 <= spacing < 0.5  # backoff base 100 ms, jittered
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_503_capacity_persistent(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.capacity())
    results = [await sc.ask(api, stream) for _ in range(6)]
    for result in results:
        complete(result, api, stream)
        assert result.header("x-spillgate-route") == ROUTE[api][1]
    # One capacity answer opens the primary for a second: the other requests go straight on.
    assert sc.seen(PRIMARY) == 1 and sc.seen(SECONDARY) == 6
    assert [r.header("x-spillgate-attempts") for r in results] == ["2"] + ["1"] * 5
    # After the cooldown exactly one request probes the primary.
    sc.clock.advance(1.05)
    complete(await sc.ask(api, stream), api, stream)
    assert sc.seen(PRIMARY) == 2
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_reset_before_headers(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.reset(times=1))
    complete(await sc.ask(api, stream), api, stream)
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (2, 0)  # one retry on the same route
    sc.fake.set(PRIMARY, Fault.reset())
    sc.fake.reset_attempts()
    result = await sc.ask(api, stream)
    complete(result, api, stream)
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (2, 1)  # retried once, then failed over
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_no_response_is_abandoned_not_retried(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.hang())
    result = await sc.ask(api, stream)
    complete(result, api, stream)
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
    limit = 1.0 if stream else 3.0  # first_byte for streams, total otherwise
    assert limit <= result.elapsed < limit + 1.0
    await answers_normally(sc, api, stream)


@pytest.mark.parametrize("api", APIS)
async def test_slow_first_token_fails_over(sc: Scenario, api: str) -> None:
    sc.fake.set(PRIMARY, Fault(first_content_delay=5))
    result = await sc.ask(api, True)
    complete(result, api, True)
    assert result.header("x-spillgate-route") == ROUTE[api][1]
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
    assert 1.0 <= result.elapsed < 2.0  # first_token is 1 s
    # Nothing of the abandoned stream reached the client: one answer, once.
    await answers_normally(sc, api, True)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "fault", [Fault(cut_after_events=5), Fault(stall_after_events=5)], ids=["cut", "stall"]
)
async def test_stream_broken_after_partial_output_is_replayed(sc: Scenario, api: str, fault: Fault) -> None:
    sc.fake.set(PRIMARY, fault)
    result = await sc.ask(api, True)
    # The client sees one complete answer: what the primary sent, then the rest from the replay.
    complete(result, api, True)
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
    assert result.elapsed < 2.0
    await answers_normally(sc, api, True)


@pytest.mark.parametrize("api", APIS)
async def test_stream_broken_with_no_route_left_ends_with_an_in_band_error(sc: Scenario, api: str) -> None:
    sc.fake.set(PRIMARY, Fault(cut_after_events=5))
    sc.fake.set(SECONDARY, Fault(cut_after_events=5))
    result = await sc.ask(api, True)
    assert result.status == 200
    assert not result.ended_normally(api)
    name, data = result.reply.events()[-1]
    payload = orjson.loads(data)
    if api == "chat":
        assert payload["error"]["code"] == "server_error"
    elif api == "responses":
        assert name == "response.failed" and payload["response"]["error"]["code"] == "server_error"
    else:
        assert name == "error" and payload["error"]["type"] == "overloaded_error"
    text = result.text(api, True)
    assert DEFAULT_TEXT.startswith(text) and text != DEFAULT_TEXT
    sc.clock.advance(1.05)
    await answers_normally(sc, api, True)


@pytest.mark.parametrize("api", APIS)
async def test_malformed_event_is_dropped_and_the_stream_goes_on(sc: Scenario, api: str) -> None:
    sc.fake.set(PRIMARY, Fault(malformed_at_event=3))
    result = await sc.ask(api, True)
    complete(result, api, True)
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 0)
    assert b"broken json" not in result.reply.body
    assert sc.app.runtime.counters.malformed_events == 1


@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_missing_terminator_is_finished_promptly(sc: Scenario, api: str) -> None:
    sc.fake.set(PRIMARY, Fault(omit_done=True, stall_after_events=99))
    result = await sc.ask(api, True, stream_options={"include_usage": True} if api == "chat" else None)
    complete(result, api, True)
    assert result.elapsed < 1.0  # the grace after a complete answer, not the idle timeout
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 0)
    if api == "chat":
        usage = [orjson.loads(d) for _, d in result.reply.events() if d != "[DONE]"][-1]
        assert usage["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_content_filter_is_not_routed_around(sc: Scenario, api: str, stream: bool) -> None:
    message = "Your request was rejected by the content management policy."
    sc.fake.set(PRIMARY, Fault(status=400, error_code="content_policy_violation", error_message=message))
    result = await sc.ask(api, stream)
    assert result.status == 400
    assert result.header("x-should-retry") == "false"
    assert message in result.reply.body.decode()
    assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 0)
    await answers_normally(sc, api, stream)


async def test_context_length_moves_to_a_larger_window(fake: FakeUpstream) -> None:
    config = scenario_config(fake)
    routes = config["models"]["coder"]["routes"]
    routes[0]["context_window"] = 8000
    routes[1]["context_window"] = 200000
    sc = await start_scenario(fake, config)
    try:
        fake.set(
            PRIMARY,
            Fault(
                status=400,
                error_code="context_length_exceeded",
                error_message="This model's maximum context length is 8000 tokens.",
            ),
        )
        result = await sc.ask("chat")
        complete(result, "chat", False)
        assert result.header("x-spillgate-route") == "coder[1]"
        assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
        # A request already too big for the primary's window skips it without touching it.
        fake.clear()
        fake.reset_attempts()
        big = [{"role": "user", "content": "x" * 40_000}]
        result = await sc.ask("chat", messages=big)
        complete(result, "chat", False)
        assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (0, 1)
        # Too big for every route: the upstream's reason, and no retry.
        fake.set(
            SECONDARY,
            Fault(
                status=400,
                error_code="context_length_exceeded",
                error_message="maximum context length is 200000 tokens",
            ),
        )
        result = await sc.ask("chat", messages=big)
        assert result.status == 400
        assert result.header("x-should-retry") == "false"
        assert result.reply.json()["error"]["code"] == "context_length_exceeded"
        await answers_normally(sc, "chat", False)
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


@pytest.mark.parametrize("api", ["chat", "messages"])
async def test_prefill_continuation_and_its_rejection(fake: FakeUpstream, api: str) -> None:
    config = scenario_config(fake)
    for route in config["models"]["coder"]["routes"]:
        if route["model"] == SECONDARY:
            route["supports_prefill"] = True
    sc = await start_scenario(fake, config)
    try:
        # The continuation target accepts the prefill: it continues from the text already sent.
        fake.set(PRIMARY, Fault(cut_after_events=5))
        result = await sc.ask(api, True)
        complete(result, api, True)
        continuation = orjson.loads(fake.attempts_for(SECONDARY)[0].body)
        assert continuation["messages"][-1]["role"] == "assistant"
        assert DEFAULT_TEXT.startswith(continuation["messages"][-1]["content"])
        # The target rejects the prefill with a 400: that is not the real error; replay instead.
        fake.reset_attempts()
        sc.app.gateway.health.enable("account:oa-p|up-primary")
        sc.app.gateway.health.enable("account:an-p|up-primary")
        sc.clock.advance(1.05)
        fake.set(SECONDARY, Fault(status=400, error_message="prefill is not supported", times=1))
        result = await sc.ask(api, True)
        complete(result, api, True)
        bodies = [orjson.loads(a.body) for a in fake.attempts_for(SECONDARY)]
        assert len(bodies) == 2
        assert bodies[0]["messages"][-1]["role"] == "assistant"  # the rejected continuation
        assert bodies[1]["messages"][-1]["role"] == "user"  # the replay
        await answers_normally(sc, api, True)
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


@pytest.mark.parametrize(("api", "stream"), [("chat", False), ("responses", True), ("messages", True)])
async def test_primary_down_for_a_window_then_recovers(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.capacity(for_seconds=1.5))
    routes: list[str | None] = []
    for _ in range(50):  # 5 s on the clock the fake upstream and the gateway share
        result = await sc.ask(api, stream)
        complete(result, api, stream)
        routes.append(result.header("x-spillgate-route"))
        sc.clock.advance(0.1)
    primary, secondary = ROUTE[api]
    assert routes[0] == secondary
    # Back on the primary within one cooldown period of its recovery, and it stays there.
    assert routes[-10:] == [primary] * 10
    failures = [a for a in sc.fake.attempts_for(PRIMARY) if a.fault_applied]
    assert 1 <= len(failures) <= 3  # the first hit and at most a couple of probes


@pytest.mark.parametrize(("api", "stream"), MATRIX, ids=IDS)
async def test_all_routes_down(sc: Scenario, api: str, stream: bool) -> None:
    sc.fake.set(PRIMARY, Fault.capacity())
    sc.fake.set(SECONDARY, Fault.capacity())
    results = [await sc.ask(api, stream) for _ in range(6)]
    for result in results:
        assert result.status == (529 if api == "messages" else 503)
        assert result.header("x-should-retry") == "true"
        assert result.header("retry-after") is not None
        assert result.elapsed < 1.0
        error = result.reply.json()["error"]
        assert "out of capacity" in error["message"] and "'coder'" in error["message"]
        if api == "messages":
            assert error["type"] == "overloaded_error"
        else:
            assert error["code"] == "server_error"  # never server_is_overloaded / slow_down
    # No lockout and no storm: every request still reaches an upstream, at most 1.5 attempts each.
    total = sc.seen(PRIMARY) + sc.seen(SECONDARY)
    assert 6 <= total <= 9
    sc.clock.advance(1.05)
    await answers_normally(sc, api, stream)
