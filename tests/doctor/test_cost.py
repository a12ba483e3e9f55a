"""What the doctor's probes cost: which probes are billed, their price from the reported usage, the
total, and how the report shows it (text and JSON), with pricing off showing nothing."""

from __future__ import annotations

import json
import logging

import pytest

from spillgate.config.schema import Price, Pricing
from spillgate.doctor.cost import (
    NO_USAGE,
    ProbeCost,
    ProbeCosts,
    format_usd,
    price_book,
    probe_cost,
    probe_costs,
    total_text,
)
from spillgate.doctor.diagnose import diagnose
from spillgate.doctor.report import render_json, render_text
from spillgate.doctor.runner import DoctorReport
from spillgate.doctor.types import ProbeResult, Role
from spillgate.pricing.book import PriceBook, Tokens
from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage
from spillgate.resilience.types import ErrorClass

from .helpers import listing, ok, result

PRICE = Price(input=2.0, output=10.0, cache_read=0.5)
"""USD per million tokens of ``priced-x`` (an override: no lookup)."""
BOOK = price_book(Pricing(models={"priced-x": PRICE}))
USAGE = Usage(input_tokens=20, output_tokens=4)


def usd(fresh: int, output: int, cache_read: int = 0) -> float:
    return (fresh * PRICE.input + output * PRICE.output + cache_read * (PRICE.cache_read or 0)) / 1e6


@pytest.mark.parametrize(
    ("case", "probe", "expected"),
    [
        ("a listing costs nothing", listing("priced-x"), None),
        (
            "a refused request without usage is not billed",
            result(model="priced-x", status=429, cls=ErrorClass.RATE_LIMITED),
            None,
        ),
        (
            "an answer with usage: priced",
            ok(model="priced-x", usage=USAGE),
            ProbeCost(Tokens(20, 4), usd(20, 4), "override"),
        ),
        (
            "Chat's prompt tokens include the cached ones",
            ok(model="priced-x", usage=Usage(input_tokens=20, output_tokens=4, cached_tokens=15)),
            ProbeCost(Tokens(20, 4, 15), usd(5, 4, 15), "override"),
        ),
        (
            "Messages' input tokens do not: the cache reads are added",
            ok(
                model="priced-x",
                api=Api.ANTHROPIC_MESSAGES,
                usage=Usage(input_tokens=5, output_tokens=4, cached_tokens=15),
            ),
            ProbeCost(Tokens(20, 4, 15), usd(5, 4, 15), "override"),
        ),
        (
            "an answer without usage: billed, cost unknown",
            ok(model="priced-x", stream=True),
            ProbeCost(None, None, NO_USAGE),
        ),
        (
            "a failure that reported usage is billed",
            result(model="priced-x", status=500, cls=ErrorClass.UPSTREAM_ERROR, usage=USAGE),
            ProbeCost(Tokens(20, 4), usd(20, 4), "override"),
        ),
        (
            "no price known for the model: cost unknown, tokens kept",
            ok(model="no-such-model-of-anyone-7", usage=USAGE),
            ProbeCost(Tokens(20, 4), None, "unknown"),
        ),
    ],
)
def test_probe_cost(case: str, probe: ProbeResult, expected: ProbeCost | None) -> None:
    got = probe_cost(probe, BOOK)
    if expected is None or got is None:
        assert got == expected, case
        return
    assert (got.tokens, got.source) == (expected.tokens, expected.source), case
    assert got.usd == pytest.approx(expected.usd), case
    assert got.known == (expected.usd is not None), case


def test_an_unknown_price_is_not_warned_about_in_the_gateways_words(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spillgate.pricing"):
        cost = probe_cost(ok(model="no-such-model-of-anyone-8", usage=USAGE), BOOK)
    assert cost is not None and cost.usd is None
    assert "tokens are recorded" not in caplog.text
    # The book still counts it (what the gateway's /metrics shows).
    assert BOOK.unknown["no-such-model-of-anyone-8"] == 1


def test_pricing_off_costs_nothing() -> None:
    off = PriceBook(Pricing(enabled=False))
    assert probe_costs([ok(model="priced-x", usage=USAGE)], off) is None


def test_probe_costs_follow_the_results() -> None:
    results = [ok(model="priced-x", usage=USAGE), ok(model="priced-x", stream=True), listing()]
    costs = probe_costs(results, BOOK)
    assert costs is not None
    assert [c is None for c in costs.each] == [False, False, True]
    assert (costs.billed, costs.unknown) == (2, 1)
    assert costs.total_usd == pytest.approx(usd(20, 4))


KNOWN = ProbeCost(Tokens(20, 4), 0.00008, "override")
ALSO = ProbeCost(Tokens(10, 2), 0.00004, "genai-prices")
UNKNOWN = ProbeCost(Tokens(20, 4), None, "unknown")


@pytest.mark.parametrize(
    ("each", "total", "text"),
    [
        ((), 0.0, "nothing billed (no probe got an answer from a model)"),
        ((None, None), 0.0, "nothing billed (no probe got an answer from a model)"),
        ((KNOWN, None), 0.00008, "$0.000080 for 1 probe"),
        ((KNOWN, ALSO), 0.00012, "$0.00012 for 2 probes"),
        ((KNOWN, UNKNOWN, None), 0.00008, "$0.000080 for 1 probe + 1 of unknown cost"),
        ((UNKNOWN, ProbeCost(None, None, NO_USAGE)), None, "unknown (2 billed probes)"),
    ],
)
def test_total(each: tuple[ProbeCost | None, ...], total: float | None, text: str) -> None:
    costs = ProbeCosts(each)
    assert costs.total_usd == (None if total is None else pytest.approx(total))
    assert total_text(costs) == text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "$0"),
        (0.0000036, "$0.0000036"),
        (0.000012, "$0.000012"),
        (0.0123, "$0.012"),
        (0.5, "$0.50"),
        (12.345, "$12.35"),
    ],
)
def test_format_usd(value: float, shown: str) -> None:
    assert format_usd(value) == shown


def report_of(results: list[ProbeResult], book: PriceBook) -> DoctorReport:
    return DoctorReport("a test", tuple(results), diagnose(results), costs=probe_costs(results, book))


def test_the_report_shows_each_billed_probe_and_the_total() -> None:
    results = [ok(model="priced-x", usage=USAGE), ok(model="priced-x", stream=True), listing("priced-x")]
    report = report_of(results, BOOK)
    text = render_text(report)
    section = text.split("What the probes cost:\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        "  - [1] POST /v1/chat/completions model=priced-x: $0.000080 (20 in + 4 out tokens, override)",
        "  - [2] POST /v1/chat/completions model=priced-x stream: "
        "cost unknown (the answer reported no usage)",
        "  - total: $0.000080 for 1 probe + 1 of unknown cost",
    ]
    document = json.loads(render_json(report))
    assert document["cost"] == {"total_usd": pytest.approx(usd(20, 4)), "billed": 2, "unknown": 1}
    first, second, third = document["probes"]
    assert first["usage"] == {
        "input_tokens": 20,
        "output_tokens": 4,
        "cached_tokens": None,
        "cache_write_tokens": None,
    }
    assert first["cost"] == {
        "usd": pytest.approx(usd(20, 4)),
        "source": "override",
        "tokens": {"input": 20, "output": 4, "cache_read": 0, "cache_write": 0},
    }
    assert second["usage"] is None
    assert second["cost"] == {"usd": None, "source": NO_USAGE, "tokens": None}
    assert third["role"] == Role.LIST.value and third["cost"] is None


def test_an_unknown_price_says_so() -> None:
    report = report_of([ok(model="no-such-model-of-anyone-9", usage=USAGE)], BOOK)
    assert "cost unknown (20 in + 4 out tokens, no price known for the model)" in render_text(report)
    assert json.loads(render_json(report))["cost"] == {"total_usd": None, "billed": 1, "unknown": 1}


def test_pricing_off_says_nothing_of_costs() -> None:
    report = report_of([ok(model="priced-x", usage=USAGE)], PriceBook(Pricing(enabled=False)))
    assert "cost" not in render_text(report).lower()
    document = json.loads(render_json(report))
    assert document["cost"] is None
    assert all(p["cost"] is None for p in document["probes"])
    assert document["probes"][0]["usage"]["input_tokens"] == 20  # what the answer said, still
