"""What looping sessions cost: the loop report sums its requests' costs in the window, and the
admin API (``/admin/loops``, the dashboard's) lists looping sessions costliest first."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spillgate.fake import FakeUpstream
from spillgate.observe.events import RequestFinished
from spillgate.observe.loops import LoopDetector, LoopReport
from tests.clock import FakeClock
from tests.store.records import request_event

from ..admin.conftest import admin
from ..harness import PRIMARY, SECONDARY, scenario_config, start_scenario

REQUEST = request_event(
    request_id="r",
    api="openai-responses",
    client_key=None,
    attempts=1,
    route=None,
    account=None,
    upstream_model=None,
    latency=0.1,
    first_token=None,
    session="s",
    fingerprint=42,
    cost_usd=0.25,
)
FAILED = replace(REQUEST, ok=False, status=503, cost_usd=0.0)

# (requests of session "s", one a second, then what it reports)
CASES: list[tuple[str, list[RequestFinished], list[LoopReport]]] = [
    ("repeating: every request's cost", [REQUEST] * 4, [LoopReport("s", "repeating", 4, 1.0, 0)]),
    (
        "failing: refusals cost nothing, the answered ones count too",
        [FAILED, FAILED, REQUEST, FAILED, replace(FAILED, fingerprint=7)],
        [LoopReport("s", "failing", 4, 0.25, 0)],
    ),
    (
        "unknown costs are counted apart",
        [REQUEST, REQUEST, replace(REQUEST, cost_usd=None), replace(REQUEST, cost_usd=None)],
        [LoopReport("s", "repeating", 4, 0.5, 2)],
    ),
    ("not looping: no report", [REQUEST, REQUEST, replace(REQUEST, fingerprint=1)], []),
]


@pytest.mark.parametrize(("name", "requests", "expected"), CASES, ids=[c[0] for c in CASES])
def test_loop_reports_carry_their_cost(
    name: str, requests: list[RequestFinished], expected: list[LoopReport]
) -> None:
    clock = FakeClock(1000.0)
    loops = LoopDetector(window=60, threshold=4, clock=clock)
    for request in requests:
        loops(request)
        clock.now += 1
    assert loops.looping() == expected


def test_the_cost_is_of_the_window_only() -> None:
    clock = FakeClock(1000.0)
    loops = LoopDetector(window=60, threshold=3, clock=clock)
    for _ in range(3):
        loops(replace(REQUEST, cost_usd=1.0))
    clock.now += 50
    for _ in range(3):
        loops(REQUEST)
    (report,) = loops.looping()
    assert (report.count, report.cost_usd) == (6, 3.75)
    clock.now += 20  # the first three requests leave the window
    (report,) = loops.looping()
    assert (report.count, report.cost_usd) == (3, 0.75)


async def test_admin_loops_lists_looping_sessions_with_their_cost(fake: FakeUpstream) -> None:
    price = {"input": 1000.0, "output": 2000.0}
    config = scenario_config(fake, pricing={"models": {PRIMARY: price, SECONDARY: price}})
    sc = await start_scenario(fake, config)
    try:
        for _ in range(5):  # the same turn again and again: the default threshold is 5
            assert (await sc.ask("responses", prompt_cache_key="agent-loop")).status == 200
        assert (await sc.ask("responses", prompt_cache_key="calm-agent")).status == 200
        reply = await admin(sc, "/admin/loops")
        assert reply.status == 200
        body = reply.body
        assert body["watching"] is True and body["threshold"] == 5 and body["sessions_looping"] == 1
        (session,) = body["sessions"]
        assert (session["session"], session["reason"], session["count"]) == ("agent-loop", "repeating", 5)
        assert session["cost_usd"] > 0 and session["unpriced"] == 0
        assert body["cost_usd"] == pytest.approx(session["cost_usd"])
        # The timeline (the dashboard's spend chart) has the same money, and says pricing is on.
        timeline = (await admin(sc, "/admin/timeline?window=1m")).body
        assert timeline["pricing"] is True
        spent = sum(b["spend_usd"] for b in timeline["total"])
        assert spent == pytest.approx(session["cost_usd"] * 6 / 5)
        assert (await admin(sc, "/admin/loops?limit=0")).status == 400
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
