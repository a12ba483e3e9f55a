"""Final errors through a running gateway: route by route why nothing answered, the class of the
most informative real failure, a capped Retry-After, the stop signal once a model has been out;
and the default timeouts leaving room for the failover."""

from __future__ import annotations

import asyncio
from typing import Any

from spillgate.fake import DEFAULT_TEXT, FakeUpstream, Fault

from ..harness import PRIMARY, SECONDARY, Result, Scenario, scenario_config, start_scenario

BIG = "up-big"


def one_key(fake: FakeUpstream, models: dict[str, Any], **resilience: Any) -> dict[str, Any]:
    """Every route on the one OpenAI provider's own key."""
    config = scenario_config(fake)
    config["providers"]["oa"]["api_key"] = "sk-org"
    config["accounts"] = []
    config["models"] = models
    config["resilience"].update(resilience)
    return config


def message(result: Result) -> str:
    return str(result.reply.json()["error"]["message"])


async def stop(sc: Scenario) -> None:
    await sc.http.close()
    await sc.app.stop(grace=1)


async def test_a_health_refusal_is_never_told_as_a_context_window_400(fake: FakeUpstream) -> None:
    models = {
        "coder": {
            "routes": [
                {"provider": "oa", "model": PRIMARY, "context_window": 8000},
                {"provider": "oa", "model": BIG, "context_window": 200000},
            ]
        },
        "big": {"routes": [{"provider": "oa", "model": BIG}]},
    }
    sc = await start_scenario(fake, one_key(fake, models))
    try:
        # The larger model is at capacity (learnt through another alias on the same key)...
        fake.set(BIG, Fault.capacity())
        assert (await sc.ask("chat", model="big")).status == 503
        # ...when the primary says the request is too long for it.
        fake.set(
            PRIMARY,
            Fault(status=400, error_code="context_length_exceeded", error_message="maximum context length"),
        )
        result = await sc.ask("chat")
        assert result.status == 503, result.reply.body
        assert result.header("x-spillgate-error-class") == "capacity"
        assert result.header("x-should-retry") == "true"
        text = message(result)
        assert "coder[0]: failed (context_too_long)" in text, text
        assert f"coder[1]: skipped: provider-key:oa|{BIG} open for capacity" in text, text
        # Once the larger model is back, it takes the request.
        fake.clear(BIG)
        sc.clock.advance(1.05)
        result = await sc.ask("chat")
        assert result.status == 200 and result.header("x-spillgate-route") == "coder[1]"
    finally:
        await stop(sc)


async def test_the_final_error_says_route_by_route_why(fake: FakeUpstream) -> None:
    models = {
        "coder": {
            "routes": [
                {"provider": "oa", "model": PRIMARY},
                {"provider": "oa", "model": SECONDARY},
                {"provider": "oa", "model": "up-tiny", "context_window": 5},
                {"provider": "oa", "model": "up-later"},
            ]
        }
    }
    sc = await start_scenario(fake, one_key(fake, models, max_attempts=2))
    try:
        fake.set(PRIMARY, Fault.rate_limited(retry_after=30))
        fake.set(SECONDARY, Fault.capacity())
        result = await sc.ask("responses")
        # The most informative real failure decides: a rate limit with its true reset time.
        assert result.status == 429, result.reply.body
        # The soonest any route may answer again: the capacity cooldown (1 s), not capped further.
        assert result.header("retry-after") == "1"
        text = message(result)
        for part in (
            "coder[0]: failed (rate_limited)",
            "coder[1]: failed (capacity)",
            "coder[2]: too small: context_window 5 < about",
            "coder[3]: not tried (max_attempts (2) reached)",
        ):
            assert part in text, text
    finally:
        await stop(sc)


async def test_a_model_out_for_long_tells_clients_to_stop(fake: FakeUpstream) -> None:
    models = {
        "coder": {"routes": [{"provider": "oa", "model": PRIMARY}, {"provider": "oa", "model": SECONDARY}]},
        "other": {"routes": [{"provider": "oa", "model": "up-other"}]},
        "claude-other": {"routes": [{"provider": "an", "model": "up-other"}]},
    }
    config = one_key(fake, models, stop_retries_after="1s", max_client_retry_after="2s")
    config["providers"]["an"]["api_key"] = "sk-org-an"
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.capacity())
        fake.set(SECONDARY, Fault.capacity())
        first = await sc.ask("responses")
        assert first.status == 503 and first.header("x-should-retry") == "true"
        assert first.reply.json()["error"]["code"] == "server_error"  # Codex retries this one
        assert 1 <= int(first.header("retry-after") or 0) <= 2
        sc.clock.advance(1.1)
        # Out for longer than stop_retries_after: each client's own signal to stop.
        responses = await sc.ask("responses")
        assert responses.status == 503 and responses.header("x-should-retry") == "false"
        assert responses.header("retry-after") is None
        error = responses.reply.json()["error"]
        assert error["code"] == "server_is_overloaded"  # Codex's own final "at capacity" error
        assert "model 'coder' has been unavailable for 2 s" in error["message"], error
        assert "models that answer now: other" in error["message"], error  # not the Anthropic one
        chat = await sc.ask("chat")
        assert (
            chat.header("x-should-retry") == "false" and chat.reply.json()["error"]["code"] == "server_error"
        )
        # Another model keeps its own state.
        assert (await sc.ask("chat", model="other")).status == 200
        # One answer ends the outage.
        fake.clear(SECONDARY)
        sc.clock.advance(2.1)  # the secondary's grown cooldown (1 s, then 2 s from its probe)
        assert (await sc.ask("chat")).status == 200
        fake.set(SECONDARY, Fault.capacity())
        sc.clock.advance(1.05)
        again = await sc.ask("chat")
        assert again.status == 503 and again.header("x-should-retry") == "true"
    finally:
        await stop(sc)


async def test_defaults_a_silent_primary_costs_a_try_then_the_fallback_answers(fake: FakeUpstream) -> None:
    """Default timeouts and resilience settings: a primary that never sends headers holds a try
    for ``resilience.try_timeout`` (20 s), not the deadline; the fallback's answer arrives within
    25 s, streamed and not."""
    config = {
        "listen": "127.0.0.1:0",
        "providers": {"oa": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk-org"}},
        "models": {
            "coder": {
                "routes": [{"provider": "oa", "model": PRIMARY}, {"provider": "oa", "model": SECONDARY}]
            }
        },
    }
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.hang())
        plain, streamed = await asyncio.gather(sc.ask("chat"), sc.ask("chat", stream=True))
        for result, stream in ((plain, False), (streamed, True)):
            assert result.status == 200, result.reply.body
            assert result.header("x-spillgate-route") == "coder[1]"
            assert result.text("chat", stream) == DEFAULT_TEXT
            assert 19.5 <= result.elapsed <= 25.0, result.elapsed
        assert sc.seen(PRIMARY) == 2 and sc.seen(SECONDARY) == 2
        # The silent primary is not tried again at once.
        result = await sc.ask("chat")
        assert result.header("x-spillgate-route") == "coder[1]" and result.elapsed < 1.0
    finally:
        await stop(sc)


async def test_too_long_for_every_declared_window_is_the_requests_400(fake: FakeUpstream) -> None:
    models = {
        "coder": {
            "routes": [
                {"provider": "oa", "model": PRIMARY, "context_window": 100},
                {"provider": "oa", "model": SECONDARY, "context_window": 200},
            ]
        }
    }
    sc = await start_scenario(fake, one_key(fake, models))
    try:
        result = await sc.ask("chat", messages=[{"role": "user", "content": "x" * 4000}])
        assert result.status == 400, result.reply.body
        assert result.header("x-should-retry") == "false"
        assert result.header("x-spillgate-error-class") == "context_too_long"
        error = result.reply.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert "coder[0]: too small: context_window 100" in error["message"], error
        assert "coder[1]: too small: context_window 200" in error["message"], error
        assert not fake.attempts  # nothing was sent upstream
        assert sc.app.runtime.outages.out_for("coder") is None  # the request's fault, not an outage
    finally:
        await stop(sc)
