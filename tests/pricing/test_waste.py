"""The waste rule, case by case: which part of a request's cost bought nothing."""

from __future__ import annotations

import pytest

from spillgate.pricing.waste import Billed, Use, wasted

A = Billed(Use.ANSWER, 10.0, 4.0)
"""The first stream: 10 USD, 4 of them its input."""


@pytest.mark.parametrize(
    ("billed", "completed", "expected"),
    [
        pytest.param([A], True, [0.0], id="a-whole-answer-wastes-nothing"),
        pytest.param([A], False, [10.0], id="an-in-band-error-wastes-all"),
        pytest.param(
            [A, Billed(Use.REPLAY, 12.0, 4.0)], True, [10.0, 0.0], id="a-replay-redoes-the-cut-stream"
        ),
        pytest.param(
            [A, Billed(Use.CONTINUATION, 6.0, 5.0)], True, [0.0, 5.0], id="a-continuation-rereads-the-prompt"
        ),
        pytest.param(
            [A, Billed(Use.CONTINUATION, 6.0, 5.0), Billed(Use.REPLAY, 12.0, 4.0)],
            True,
            [10.0, 6.0, 0.0],
            id="a-replay-after-a-continuation-redoes-both",
        ),
        pytest.param(
            [A, Billed(Use.REPLAY, 12.0, 4.0), Billed(Use.CONTINUATION, 3.0, 2.0)],
            True,
            [10.0, 0.0, 2.0],
            id="a-continuation-of-a-replay",
        ),
        pytest.param([Billed(Use.DISCARDED, 7.0, 1.0)], True, [7.0], id="an-answer-never-relayed"),
        pytest.param(
            [A, Billed(Use.REPLAY, 12.0, 4.0)], False, [10.0, 12.0], id="a-replay-that-broke-too-wastes-all"
        ),
        pytest.param([Billed(Use.ANSWER, None, None)], True, [None], id="unknown-stays-unknown"),
        pytest.param([Billed(Use.ANSWER, None, None)], False, [None], id="unknown-stays-unknown-on-failure"),
        pytest.param(
            [Billed(Use.ANSWER, None, None), Billed(Use.REPLAY, 3.0, 1.0)],
            True,
            [None, 0.0],
            id="an-unknown-cut-stream-replayed",
        ),
        pytest.param([Billed(Use.CONTINUATION, None, None)], True, [None], id="unknown-continuation"),
        pytest.param([], True, [], id="nothing-billed"),
    ],
)
def test_waste(billed: list[Billed], completed: bool, expected: list[float | None]) -> None:
    assert wasted(billed, completed=completed) == expected
