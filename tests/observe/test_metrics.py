"""Prometheus metrics and the loop signal: unit level, then through a running gateway."""

from __future__ import annotations

import aiohttp

from spillgate.fake import FakeUpstream, Fault
from spillgate.observe.events import RequestFinished
from spillgate.observe.loops import LoopDetector
from spillgate.observe.metrics import Counter, Histogram

from ..harness import PRIMARY, scenario_config, start_scenario


def test_counter_and_histogram_text_format() -> None:
    c = Counter("x_total", "Things.", ("model",))
    c.inc('a"b')
    c.inc('a"b', by=2)
    assert list(c.render()) == [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{model="a\\"b"} 3',
    ]
    h = Histogram("d_seconds", "Durations.", ("m",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v, "m1")
    lines = list(h.render())
    assert 'd_seconds_bucket{m="m1",le="0.1"} 1' in lines
    assert 'd_seconds_bucket{m="m1",le="1"} 2' in lines
    assert 'd_seconds_bucket{m="m1",le="+Inf"} 3' in lines
    assert 'd_seconds_count{m="m1"} 3' in lines and 'd_seconds_sum{m="m1"} 5.55' in lines


def _request(session: str, ok: bool, fingerprint: int) -> RequestFinished:
    return RequestFinished(
        request_id="r",
        api="openai-responses",
        public_model="m",
        client_key=None,
        stream=True,
        ok=ok,
        status=200 if ok else 503,
        attempts=1,
        route=None,
        account=None,
        upstream_model=None,
        error_class=None,
        latency=0.1,
        first_token=None,
        session=session,
        fingerprint=fingerprint,
    )


def test_loop_detector() -> None:
    now = [0.0]
    loops = LoopDetector(window=60, threshold=3, clock=lambda: now[0])
    for i in range(3):
        loops(_request("failing-session", False, i + 1))
        loops(_request("repeating-session", True, 42))
        loops(_request("healthy-session", True, 100 + i))
        now[0] += 1
    reports = {r.session: r.reason for r in loops.looping()}
    assert reports == {"failing-session": "failing", "repeating-session": "repeating"}
    assert loops.detections == 2
    now[0] += 61  # the window forgets
    assert loops.looping() == []


async def test_metrics_through_the_gateway(fake: FakeUpstream) -> None:
    config = scenario_config(fake)
    config["admin_token"] = "admin-secret-token"
    config["accounts"][0]["api_key"] = "sk-upstream-secret"
    sc = await start_scenario(fake, config)
    try:
        fake.set(PRIMARY, Fault.capacity())
        for _ in range(3):
            assert (await sc.ask("chat", True, prompt_cache_key="sess-1")).status == 200
        url = sc.app.url + "/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 401
            async with http.get(url, headers={"authorization": "Bearer admin-secret-token"}) as resp:
                assert resp.status == 200
                assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
        assert (
            'spillgate_attempts_total{model="coder",route="coder[0]",account="oa-p",kind="attempt",'
            'outcome="error",error_class="capacity",scope="account_model",upstream_api="openai-chat"} 1'
        ) in text
        assert (
            'spillgate_attempts_total{model="coder",route="coder[1]",account="oa-s",kind="failover",' in text
        )
        assert (
            'spillgate_requests_total{model="coder",api="openai-chat",route="coder[1]",outcome="ok",'
            'error_class="",recovered=""} 3'
        ) in text
        assert (
            'spillgate_scope_open{scope="account:oa-p|up-primary",state="open",error_class="capacity"} 1'
            in text
        )
        assert 'spillgate_error_rule_hits_total{rule="builtin.capacity_code"} 1' in text
        assert 'spillgate_first_token_seconds_count{model="coder"} 3' in text
        assert 'spillgate_loop_sessions{reason="repeating"} 0' in text
        assert "sk-upstream-secret" not in text and "admin-secret-token" not in text
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


async def test_names_from_clients_cannot_grow_metrics_without_bound(fake: FakeUpstream) -> None:
    """Issue 10, item 6: every distinct name through a `*` route became a label (twenty 1 MB names
    grew /metrics to 421 MB). Names are bounded at the door, and unconfigured ones share an
    `other` label past a few dozen."""
    from spillgate.observe.metrics import MAX_UNCONFIGURED_MODELS

    config = scenario_config(fake)
    config["models"]["*"] = {"routes": [{"accounts": ["oa-p"], "model": "*"}]}
    sc = await start_scenario(fake, config)
    try:
        too_long = await sc.ask("chat", model="m" * 1_000_000)
        assert too_long.status == 400 and too_long.reply.json()["error"]["param"] == "model"
        for i in range(MAX_UNCONFIGURED_MODELS + 20):
            assert (await sc.ask("chat", model=f"free-{i}")).status == 200
        assert (await sc.ask("chat")).status == 200  # "coder", configured: its own label always
        async with sc.http.get(sc.app.url + "/metrics") as resp:
            text = await resp.text()
        names = {
            line.split('model="')[1].split('"')[0]
            for line in text.splitlines()
            if line.startswith("spillgate_requests_total{")
        }
        assert "coder" in names and "other" in names
        assert len(names - {"coder", "other"}) == MAX_UNCONFIGURED_MODELS
        assert len(text) < 200_000
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)


def test_label_values_never_carry_control_characters() -> None:
    c = Counter("x_total", "Things.", ("route",))
    c.inc("a\rb\x00c\nd")
    assert list(c.render())[-1] == 'x_total{route="a?b?c\\nd"} 1'
