"""``bench/pricing.py``'s figures from windows of turns: added latency pooled over the rounds and per
round, CPU per request, the ratio and the 10 % verdict (tables of made-up samples)."""

from __future__ import annotations

import pytest

from bench.interleave import Turns
from bench.overhead import parse_args
from bench.pricing import (
    DIRECT,
    PRICED,
    UNPRICED,
    PricingCost,
    PricingRound,
    pricing_cost,
    pricing_sides,
    render_pricing,
)

MS = 0.001


def window(
    direct: list[float], off: list[float], on: list[float], cpu: tuple[float, float] = (0.0, 0.0)
) -> Turns:
    """A window whose samples are given in ms; ``cpu``: (off, on) seconds."""
    turns = Turns([DIRECT, UNPRICED, PRICED])
    for side, values in ((DIRECT, direct), (UNPRICED, off), (PRICED, on)):
        turns.samples[side] = [v * MS for v in values]
        turns.answered[side] = len(values)
    turns.cpu_s = {UNPRICED: cpu[0], PRICED: cpu[1]}
    return turns


def round_of(plain: Turns, stream: Turns) -> PricingRound:
    return {"latency_c1": plain, "stream_ttft_c32": stream}


def by_key(costs: list[PricingCost]) -> dict[str, PricingCost]:
    return {c.key: c for c in costs}


def test_sides_alternate_which_pricing_side_comes_second() -> None:
    assert pricing_sides(0) == [DIRECT, PRICED, UNPRICED]
    assert pricing_sides(1) == [DIRECT, UNPRICED, PRICED]
    assert pricing_sides(2) == pricing_sides(0)


def test_added_latency_is_pooled_over_the_rounds_and_given_per_round() -> None:
    # Round 1 fast, round 2 slow: every side slower alike (a change of the machine's mood).
    r1 = window([1.0] * 100, [2.0] * 100, [2.1] * 100, cpu=(0.05, 0.06))
    r2 = window([3.0] * 100, [5.0] * 100, [5.2] * 100, cpu=(0.07, 0.07))
    costs = by_key(pricing_cost([round_of(r1, r1), round_of(r2, r2)]))
    p50 = costs["latency_c1_p50_ms"]
    # Pooled (200 samples a side): the nearest-rank p50 is the 100th, round 1's.
    assert (p50.off, p50.on) == pytest.approx((1.0, 1.1))
    assert p50.per_round == [pytest.approx((1.0, 1.1)), pytest.approx((2.0, 2.2))]
    assert (p50.off_spread.low, p50.off_spread.high) == pytest.approx((1.0, 2.0))
    p99 = costs["stream_ttft_c32_p99_ms"]
    assert (p99.off, p99.on) == pytest.approx((2.0, 2.2))  # the 198th of 200: round 2's
    assert p99.samples == (200, 200)
    assert p50.ratio == pytest.approx(1.1)
    cpu = costs["latency_c1_cpu_us"]
    assert (cpu.off, cpu.on) == pytest.approx((600.0, 650.0))  # (0.05 + 0.07) s / 200, (0.06 + 0.07) s / 200
    assert cpu.per_round == [pytest.approx((500.0, 600.0)), pytest.approx((700.0, 700.0))]
    assert cpu.passed is None and costs["stream_ttft_c32_p50_ms"].passed is None  # context


@pytest.mark.parametrize(
    ("off_ms", "on_ms", "passed"),
    [
        (1.0, 1.0, True),
        (1.0, 0.8, True),
        (1.0, 1.09, True),
        (1.0, 1.12, False),
        (0.0, 0.0, True),  # no added latency either way
        (-0.1, 0.05, False),  # pricing off faster than direct: any added latency with it on is over
    ],
)
def test_the_target_is_judged_on_the_pooled_figures(off_ms: float, on_ms: float, passed: bool) -> None:
    w = window([1.0] * 10, [1.0 + off_ms] * 10, [1.0 + on_ms] * 10)
    costs = by_key(pricing_cost([round_of(w, w)]))
    for key in ("latency_c1_p50_ms", "latency_c1_p99_ms", "stream_ttft_c32_p99_ms"):
        assert costs[key].passed is passed, key


def test_the_table_gives_the_verdict() -> None:
    good = window([1.0] * 10, [2.0] * 10, [2.05] * 10, cpu=(0.01, 0.01))
    bad = window([1.0] * 10, [2.0] * 10, [2.5] * 10, cpu=(0.01, 0.01))
    assert "Pricing target (added latency with pricing on within 10% of pricing off): PASS (3/3 figures)" in (
        render_pricing(pricing_cost([round_of(good, good)]), 1)
    )
    text = render_pricing(pricing_cost([round_of(good, bad), round_of(good, bad)]), 2)
    assert "FAIL (2/3 figures)" in text and "the samples of 2 rounds pooled" in text
    assert "+1.000 (+1.000..+1.000)" in text and "1,000 (1,000..1,000)" in text  # ms and us cells


def test_calibrate_belongs_to_the_observability_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--observability", "--calibrate"]).calibrate
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--calibrate"])
    assert exit_info.value.code == 2
    assert "--calibrate calibrates the pricing comparison of --observability" in capsys.readouterr().err
