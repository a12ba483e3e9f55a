"""Operator rules, the retry budget and the attempt events, through a running gateway."""

from __future__ import annotations

from spillgate.fake import DEFAULT_TEXT, FakeUpstream, Fault
from spillgate.observe.events import AttemptFinished, RequestFinished

from ..harness import PRIMARY, SECONDARY, scenario_config, start_scenario


async def test_operator_rule_rewrites_the_message_and_counts_every_hit(fake: FakeUpstream) -> None:
    config = scenario_config(fake)
    config["error_rules"] = [
        {
            "name": "capacity-to-retryable",
            "status": 503,
            "keywords": ["at capacity", "overloaded"],
            "match": "any",
            "class": "capacity",
            "rewrite_message": "upstream failed",
        }
    ]
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.capacity())
        fake.set(SECONDARY, Fault.capacity())
        result = await sc.ask("chat")
        assert result.status == 503
        assert result.reply.json()["error"]["message"] == "upstream failed"
        # The rewrite does not blind anyone: the rule counted both upstream failures.
        assert sc.app.gateway.classifier.hits["capacity-to-retryable"] == 2
        assert sc.app.gateway.classifier.hits["builtin.capacity_code"] == 0
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_retry_budget_spent_fails_fast(fake: FakeUpstream) -> None:
    config = scenario_config(fake)
    config["resilience"]["retry_budget"] = {"ratio": 0, "floor": 1, "window": "10s"}
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.server_error())
        fake.set(SECONDARY, Fault.server_error())
        result = await sc.ask("chat")
        # One extra attempt (the same-route retry) fits the budget; the failover does not.
        assert result.status == 502
        assert "retry budget is spent" in result.reply.json()["error"]["message"]
        assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (2, 0)
        assert sc.app.gateway.budget.rejected_total == 1
        # The next request gets its first attempt (never refused), but no retry.
        result = await sc.ask("chat")
        assert result.header("x-spillgate-attempts") == "1"
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_every_attempt_is_an_event(fake: FakeUpstream) -> None:
    sc = await start_scenario(fake, scenario_config(fake))
    seen: list[object] = []
    sc.app.gateway.events.subscribe(seen.append)
    try:
        fake.set(PRIMARY, Fault.capacity())
        result = await sc.ask("responses", True)
        assert result.status == 200 and result.text("responses", True) == DEFAULT_TEXT
        attempts = [e for e in seen if isinstance(e, AttemptFinished)]
        assert [(a.route, a.ok, a.error_class, a.scope, a.kind) for a in attempts] == [
            ("coder[0]", False, "capacity", "account_model", "attempt"),
            ("coder[1]", True, None, None, "failover"),
        ]
        assert attempts[0].status == 503 and attempts[0].latency > 0
        (request,) = [e for e in seen if isinstance(e, RequestFinished)]
        assert (request.ok, request.attempts, request.route, request.upstream_model) == (
            True,
            2,
            "coder[1]",
            SECONDARY,
        )
        assert request.first_token is not None
        # A failing observer is logged, never propagated.
        sc.app.gateway.events.subscribe(lambda event: 1 / 0)  # type: ignore[func-returns-value]
        assert (await sc.ask("chat")).status == 200
        assert sc.app.gateway.events.failures >= 1
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
