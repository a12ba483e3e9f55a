"""Since when a model has been out, on a hand-driven clock."""

from __future__ import annotations

import pytest

from spillgate.resilience.outage import MAX_MODELS, OutageBoard
from tests.clock import FakeClock


def test_an_outage_runs_from_the_first_failure_until_an_answer() -> None:
    clock = FakeClock()
    board = OutageBoard(stop_after=120.0, clock=clock)
    assert board.out_for("coder") is None
    assert board.failed("coder") == 0.0
    for t in range(10, 130, 10):  # a client retrying every 10 s
        clock.now = float(t)
        out_for = board.failed("coder")
        assert out_for == t
        assert board.should_stop(out_for) is (t >= 120)
    assert board.out_for("coder") == 120.0
    assert board.out_for("other") is None  # per model
    board.answered("coder")
    assert board.out_for("coder") is None
    clock.now = 130.0
    assert board.failed("coder") == 0.0  # a new outage


@pytest.mark.parametrize(("stop_after", "quiet"), [(120.0, 120.0), (1.0, 60.0)])
def test_a_long_quiet_gap_starts_a_new_outage(stop_after: float, quiet: float) -> None:
    clock = FakeClock()
    board = OutageBoard(stop_after=stop_after, clock=clock)
    board.failed("coder")
    clock.now = quiet - 1  # a client retrying slowly: still the same outage
    assert board.failed("coder") == quiet - 1
    clock.now = 2 * quiet  # nobody failed for longer than the quiet time: nobody was waiting
    assert board.out_for("coder") is None
    assert board.failed("coder") == 0.0
    clock.now = 2 * quiet + 19
    assert board.out_for("coder") == 19.0


def test_answers_cost_nothing_and_memory_is_bounded() -> None:
    board = OutageBoard(clock=FakeClock())
    board.answered("coder")
    assert len(board) == 0
    for i in range(MAX_MODELS + 10):
        board.failed(f"m{i}")
    assert len(board) == MAX_MODELS
    assert board.out_for("m0") is None  # the oldest went first
    assert board.out_for(f"m{MAX_MODELS + 9}") == 0.0


def test_stop_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        OutageBoard(stop_after=0)
