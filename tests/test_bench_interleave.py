"""``bench/interleave.py``: the order of the turns (table and property), waiting for quiet, and
both windows of turns against a real ``spillgate fake-upstream`` on loopback (an A/A of one server
under three names: what is counted, and that every side had its turns in whole cycles)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.harness import (
    CHAT_PATH,
    HOST,
    Target,
    cpu_seconds,
    free_ports,
    http_call,
    running,
    start_child,
    wait_ready,
)
from bench.interleave import (
    BLOCK_REQUESTS,
    cycle_length,
    plain_turns,
    stream_turns,
    turn_order,
    wait_quiet,
)


def first(sides: list[str], count: int) -> list[str]:
    return list(itertools.islice(turn_order(sides), count))


@pytest.mark.parametrize(
    ("sides", "expected"),
    [
        (["d", "a"], ["d", "a", "d", "a"]),
        (["d", "a", "b"], ["d", "a", "b", "d", "b", "a"]),
        (["d", "a", "b", "c"], ["d", "a", "b", "c", "d", "c", "b", "a"]),
    ],
)
def test_one_cycle_of_turns(sides: list[str], expected: list[str]) -> None:
    assert cycle_length(sides) == len(expected)
    assert first(sides, 2 * len(expected)) == expected * 2  # and then it starts over


@given(st.integers(min_value=2, max_value=6))
def test_no_side_follows_itself_and_all_have_equal_turns(n: int) -> None:
    sides = [f"s{i}" for i in range(n)]
    turns = first(sides, 3 * cycle_length(sides))
    assert all(a != b for a, b in itertools.pairwise(turns))
    cycle = turns[: cycle_length(sides)]
    assert all(cycle.count(side) == 2 for side in sides)


def test_with_three_sides_each_pair_side_follows_the_reference_once_and_the_other_once() -> None:
    turns = first(["direct", "on", "off"], 6 * 3)
    before = {side: [a for a, b in itertools.pairwise(turns) if b == side] for side in ("on", "off")}
    assert sorted(set(before["on"])) == ["direct", "off"]
    assert before["on"].count("direct") == before["on"].count("off")
    assert before["off"].count("direct") == before["off"].count("on")


def test_one_side_is_no_comparison() -> None:
    with pytest.raises(ValueError, match="at least two"):
        next(turn_order(["direct"]))


def test_wait_quiet_returns_once_idle_and_gives_up_on_a_busy_side() -> None:
    assert wait_quiet({"idle": lambda: 1.0}) < 1.0
    busy: Iterator[float] = itertools.count(0.0, 1.0)  # a second of CPU at every read
    assert wait_quiet({"busy": lambda: next(busy)}, timeout=0.5) == 0.5


@pytest.fixture(scope="module")
def fake_targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Target], int]]:
    """Three names for one fake upstream (``direct``, ``a``, ``b``), and its PID."""
    (port,) = free_ports(1)
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    argv = [sys.executable, "-m", "spillgate", "fake-upstream", "--listen", f"{HOST}:{port}"]
    children = [start_child("fake upstream", argv, log)]
    with running(children):
        targets = [Target(name, port, "bench-upstream", ()) for name in ("direct", "a", "b")]
        body = targets[0].body(False)
        wait_ready(children[0], lambda: http_call(port, "POST", CHAT_PATH, body)[0] == 200)
        yield targets, children[0].proc.pid


def test_plain_turns_count_all_but_the_first_request_of_each_turn(
    fake_targets: tuple[list[Target], int],
) -> None:
    targets, pid = fake_targets
    turns = plain_turns(targets, 0.3, warmup=0.1, probes={"a": lambda: cpu_seconds([pid])})
    assert turns.errors == {} and turns.seconds >= 0.3
    counts = set(turns.turns.values())
    assert len(counts) == 1 and counts.pop() % 2 == 0  # whole cycles: two turns a side each
    for side in ("direct", "a", "b"):
        assert turns.answered[side] == turns.turns[side] * BLOCK_REQUESTS  # warm-up not counted
        assert len(turns.samples[side]) == turns.answered[side] - turns.turns[side]
        assert all(0 < s < 10 for s in turns.samples[side])
    assert turns.cpu_s["a"] > 0 and "b" not in turns.cpu_s  # the fake worked; only "a" was probed
    cpu = turns.cpu_per_answer_us("a")
    assert cpu is not None and cpu > 0 and turns.cpu_per_answer_us("b") is None


def test_stream_turns_count_the_streams_of_every_side(fake_targets: tuple[list[Target], int]) -> None:
    targets, pid = fake_targets
    turns = stream_turns(targets, 4, 0.8, warmup=0.2, probes={"b": lambda: cpu_seconds([pid])})
    assert turns.errors == {} and turns.seconds >= 0.8
    counts = set(turns.turns.values())
    assert len(counts) == 1 and counts.pop() % 2 == 0
    for side in ("direct", "a", "b"):
        assert 0 < len(turns.samples[side]) <= turns.answered[side], side
        assert all(0 < s < 10 for s in turns.samples[side])
    assert turns.cpu_s["b"] > 0


def test_a_side_that_does_not_answer_is_counted_as_errors() -> None:
    (port,) = free_ports(1)  # nothing listens there
    gone = Target("gone", port, "m", ())
    direct = Target("direct", port, "m", ())
    turns = plain_turns([direct, gone], 0.05)
    assert turns.error_count > 0 and turns.samples["gone"] == []
    assert all(kind.endswith(" connect") for kind in turns.errors)
