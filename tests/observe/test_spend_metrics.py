"""Money on ``/metrics``: spend per route, waste per attempt kind, spend per client key, merged
across workers; and, through a running gateway, the unpriced-attempts counter."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.observe.events import Event
from spillgate.observe.metrics import Metrics

from ..harness import PRIMARY, SECONDARY, scenario_config, start_scenario
from .priced import ATTEMPT, REQUEST

CUT = replace(ATTEMPT, ok=False, error_class="stream_cut", cost_usd=0.5, wasted_usd=0.5)
REPLAY = replace(ATTEMPT, attempt=2, route="coder[1]", kind="replay", cost_usd=0.75)
REFUSED = replace(ATTEMPT, ok=False, status=503, error_class="capacity", cost_usd=0.0)
UNKNOWN = replace(ATTEMPT, cost_usd=None, wasted_usd=None)
CONTINUATION = replace(ATTEMPT, attempt=2, kind="continuation", cost_usd=0.5, wasted_usd=0.125)


def _money(text: str) -> set[str]:
    names = ("spillgate_spend_usd_total", "spillgate_wasted_usd_total", "spillgate_client_spend_usd_total")
    return {line for line in text.splitlines() if line.startswith(names) and not line.startswith("#")}


CASES: list[tuple[str, list[Event], set[str]]] = [
    (
        "an answered attempt: spent, nothing wasted",
        [ATTEMPT],
        {'spillgate_spend_usd_total{model="coder",route="coder[0]"} 0.25'},
    ),
    (
        "a cut stream replayed elsewhere: the cut attempt's cost is wasted",
        [CUT, REPLAY],
        {
            'spillgate_spend_usd_total{model="coder",route="coder[0]"} 0.5',
            'spillgate_spend_usd_total{model="coder",route="coder[1]"} 0.75',
            'spillgate_wasted_usd_total{model="coder",route="coder[0]",kind="attempt"} 0.5',
        },
    ),
    (
        "a continuation wastes its re-read prompt, by its kind",
        [ATTEMPT, CONTINUATION],
        {
            'spillgate_spend_usd_total{model="coder",route="coder[0]"} 0.75',
            'spillgate_wasted_usd_total{model="coder",route="coder[0]",kind="continuation"} 0.125',
        },
    ),
    (
        "a 503 refusal is not billed: 0 spent, the route shows as priced",
        [REFUSED],
        {'spillgate_spend_usd_total{model="coder",route="coder[0]"} 0'},
    ),
    ("an unknown price is never counted as 0", [UNKNOWN], set()),
    (
        'requests: spend per client key, "" without keys, unknown costs left out',
        [
            REQUEST,
            REQUEST,
            replace(REQUEST, client_key=None),
            replace(REQUEST, client_key="x", cost_usd=None),
        ],
        {
            'spillgate_client_spend_usd_total{client_key="team"} 0.5',
            'spillgate_client_spend_usd_total{client_key=""} 0.25',
        },
    ),
]


@pytest.mark.parametrize(("name", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_money_counters(name: str, events: list[Event], expected: set[str]) -> None:
    metrics = Metrics()
    for event in events:
        metrics(event)
    assert _money(metrics.render().decode()) == expected


def test_money_counters_merge_across_workers() -> None:
    mine, theirs = Metrics(), Metrics()
    for event in (CUT, REPLAY, REQUEST):
        mine(event)
    for event in (CUT, REQUEST, replace(REQUEST, client_key="other")):
        theirs(event)
    text = mine.render([theirs.export()]).decode()
    assert _money(text) == {
        'spillgate_spend_usd_total{model="coder",route="coder[0]"} 1',
        'spillgate_spend_usd_total{model="coder",route="coder[1]"} 0.75',
        'spillgate_wasted_usd_total{model="coder",route="coder[0]",kind="attempt"} 1',
        'spillgate_client_spend_usd_total{client_key="team"} 0.5',
        'spillgate_client_spend_usd_total{client_key="other"} 0.25',
    }
    assert _money(mine.render().decode()) >= {  # the worker's own counts are untouched
        'spillgate_spend_usd_total{model="coder",route="coder[0]"} 0.5'
    }


def test_model_names_of_unpriced_attempts_are_bounded() -> None:
    from spillgate.observe.metrics import MAX_UNCONFIGURED_MODELS, OTHER

    metrics = Metrics()
    metrics.configured = frozenset({"coder"})
    counts = {f"free-{i}": 1 for i in range(MAX_UNCONFIGURED_MODELS + 5)} | {"coder": 3}
    labelled = dict(metrics.labelled_models(counts))
    assert labelled[("coder",)] == 3 and labelled[(OTHER,)] == 5
    assert len(labelled) == MAX_UNCONFIGURED_MODELS + 2
    assert dict(metrics.labelled_models(counts)) == labelled  # a name keeps its label


async def test_spend_and_unpriced_attempts_through_the_gateway(fake: FakeUpstream) -> None:
    """Only the secondary's upstream model has a price: the primary's answer is unpriced (counted,
    not costed), then the primary is at capacity and the failover's answer is spent."""
    config = scenario_config(fake, pricing={"models": {SECONDARY: {"input": 1000.0, "output": 2000.0}}})
    sc = await start_scenario(fake, config)
    try:
        assert (await sc.ask("chat")).status == 200
        fake.set(PRIMARY, Fault.capacity())
        assert (await sc.ask("chat")).status == 200
        async with sc.http.get(sc.app.url + "/metrics") as resp:
            text = await resp.text()
        assert f'spillgate_unpriced_attempts_total{{model="{PRIMARY}"}} 1' in text
        lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in _money(text)}
        assert lines['spillgate_spend_usd_total{model="coder",route="coder[0]"}'] == 0.0  # the refusal
        assert lines['spillgate_spend_usd_total{model="coder",route="coder[1]"}'] > 0
        # The first request's cost is unknown: only the second one is in the client's spend.
        assert lines['spillgate_client_spend_usd_total{client_key=""}'] == pytest.approx(
            lines['spillgate_spend_usd_total{model="coder",route="coder[1]"}']
        )
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
