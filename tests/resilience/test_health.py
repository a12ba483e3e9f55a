"""Health per scope as a table: event sequences on a hand-driven clock -> admissions and states."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from spillgate.resilience.health import Admission, HealthBoard, HealthConfig, ScopeSnapshot
from spillgate.resilience.types import ErrorClass
from tests.clock import FakeClock

INF = math.inf
CAP = ErrorClass.CAPACITY
OVER = ErrorClass.OVERLOADED
RATE = ErrorClass.RATE_LIMITED
QUOTA = ErrorClass.QUOTA_EXHAUSTED
AUTH = ErrorClass.AUTH
NF = ErrorClass.NOT_FOUND
TIMEOUT = ErrorClass.TIMEOUT
UPSTREAM = ErrorClass.UPSTREAM_ERROR
KEY = "account_model:oa-1|gpt-5"


def board_at(config: HealthConfig | None = None) -> tuple[HealthBoard, FakeClock]:
    clock = FakeClock()
    return HealthBoard(config, clock), clock


def verdict(admission: Admission) -> str:
    if not admission.allowed:
        return "deny"
    return "probe" if admission.probe else "allow"


def state_of(board: HealthBoard, key: str = KEY) -> str:
    return next((s.state for s in board.snapshot() if s.key == key), "closed")


# Each event: (clock time, operation, *arguments) on KEY.
#   fail CLASS [retry_at]   record_failure
#   ok                      record_success
#   admit / peek EXPECTED   "allow" | "probe" | "deny"
#   release                 release_probe
#   until T                 reopens_at == T (None: closed)
#   state S                 the snapshot's state for KEY
#   enable / disable
Event = tuple[Any, ...]

BREAKER_ONLY_BY_RATE = replace(HealthConfig(), failure_threshold=100)

CASES: list[tuple[str, HealthConfig | None, list[Event]]] = [
    (
        "healthy key is allowed",
        None,
        [(0, "admit", "allow"), (0, "state", "closed"), (0, "until", None)],
    ),
    (
        "capacity: short cooldown that doubles while it persists, capped",
        None,
        [
            (0, "fail", CAP),
            (0, "until", 2.0),
            (1.9, "admit", "deny"),
            (2, "admit", "probe"),
            (2.5, "fail", CAP),
            (2.5, "until", 6.0),  # 4 s from when the probe started
            (6.5, "admit", "probe"),
            (6.5, "fail", CAP),
            (6.5, "until", 14.5),
            (14.5, "admit", "probe"),
            (14.5, "fail", CAP),
            (14.5, "until", 30.5),
            (30.5, "admit", "probe"),
            (30.5, "fail", CAP),
            (30.5, "until", 50.5),  # 2 * 2**4 = 32, capped at 20
            (50.5, "admit", "probe"),
            (50.5, "fail", CAP),
            (50.5, "until", 70.5),
        ],
    ),
    (
        "capacity: a success resets the growth",
        None,
        [
            (0, "fail", CAP),
            (2, "admit", "probe"),
            (2, "fail", CAP),
            (6, "admit", "probe"),
            (6, "ok"),
            (6, "state", "closed"),
            (6, "admit", "allow"),
            (7, "fail", CAP),
            (7, "until", 9.0),
        ],
    ),
    (
        "capacity: a later retry_at wins, an earlier one does not shorten",
        None,
        [
            (0, "fail", CAP, 7.0),
            (0, "until", 7.0),
            (10, "admit", "probe"),
            (10, "fail", CAP, 11.0),
            (10, "until", 14.0),
        ],
    ),
    (
        "overloaded: its own schedule",
        None,
        [
            (0, "fail", OVER),
            (0, "until", 5.0),
            (5, "admit", "probe"),
            (5, "fail", OVER),
            (5, "until", 15.0),
            (15, "admit", "probe"),
            (15, "fail", OVER),
            (15, "until", 35.0),
            (35, "admit", "probe"),
            (35, "fail", OVER),
            (35, "until", 55.0),  # 40 capped at 20
            (55, "admit", "probe"),
            (55, "fail", OVER),
            (55, "until", 75.0),
        ],
    ),
    (
        "rate limited: until the announced time",
        None,
        [
            (0, "fail", RATE, 42.0),
            (0, "state", "open"),
            (41.9, "admit", "deny"),
            (42, "state", "half_open"),
            (42, "admit", "probe"),
            (42, "ok"),
            (42, "admit", "allow"),
        ],
    ),
    (
        "rate limited: fixed cooldown without a reset time, not grown by a failed probe",
        None,
        [
            (0, "fail", RATE),
            (0, "until", 10.0),
            (10, "admit", "probe"),
            (10, "fail", RATE),
            (10, "until", 20.0),
        ],
    ),
    (
        "rate limited: a reset time already past opens until now (next caller probes)",
        None,
        [(5, "fail", RATE, 3.0), (5, "until", 5.0), (5, "admit", "probe"), (5, "admit", "deny")],
    ),
    (
        "quota: until the reset time, else the quota cooldown",
        None,
        [
            (0, "fail", QUOTA, 3600.0),
            (0, "until", 3600.0),
            (3599, "admit", "deny"),
            (3600, "admit", "probe"),
            (3600, "fail", QUOTA),
            (3600, "until", 4200.0),
        ],
    ),
    (
        "auth: disabled until an operator enables it",
        None,
        [
            (0, "fail", AUTH),
            (0, "state", "disabled"),
            (0, "until", INF),
            (1e9, "admit", "deny"),
            (1e9, "ok"),
            (1e9, "fail", CAP),
            (1e9, "state", "disabled"),
            (1e9, "enable"),
            (1e9, "admit", "allow"),
            (1e9, "state", "closed"),
        ],
    ),
    (
        "auth while open for capacity disables",
        None,
        [(0, "fail", CAP), (1, "fail", AUTH), (5, "admit", "deny"), (5, "until", INF)],
    ),
    (
        "operator disable and enable",
        None,
        [
            (0, "disable"),
            (0, "admit", "deny"),
            (0, "state", "disabled"),
            (1, "enable"),
            (1, "admit", "allow"),
        ],
    ),
    (
        "not found: fixed cooldown, a retry_at is not its business",
        None,
        [(0, "fail", NF, 5.0), (0, "until", 300.0), (299, "admit", "deny"), (300, "admit", "probe")],
    ),
    (
        "breaker: opens on the third consecutive counted failure",
        None,
        [
            (0, "fail", ErrorClass.RESET),
            (0, "admit", "allow"),
            (1, "fail", UPSTREAM),
            (1, "admit", "allow"),
            (1, "state", "closed"),
            (2, "fail", ErrorClass.STREAM_CUT),
            (2, "state", "open"),
            (2, "until", 7.0),
            (6.9, "admit", "deny"),
            (7, "admit", "probe"),
        ],
    ),
    (
        "breaker: a success in between resets the consecutive count",
        None,
        [
            (0, "fail", UPSTREAM),
            (0, "fail", UPSTREAM),
            (0, "ok"),
            (0, "fail", UPSTREAM),
            (0, "fail", UPSTREAM),
            (0, "admit", "allow"),
            (0, "fail", UPSTREAM),
            (0, "admit", "deny"),
        ],
    ),
    (
        "timeout: a silent route opens the breaker at its first failure",
        None,
        [(0, "fail", TIMEOUT), (0, "state", "open"), (0, "until", 5.0), (5, "admit", "probe")],
    ),
    (
        "half-open: the next period counts from the probe's start, however long the probe waited",
        None,
        [
            (0, "fail", TIMEOUT),
            (5, "admit", "probe"),
            (25, "fail", TIMEOUT),  # a probe that waited 20 s for a silent upstream
            (25, "until", 15.0),  # 5 + 10: already past, so the next caller probes at once
            (25, "admit", "probe"),
            (45, "fail", TIMEOUT),
            (45, "until", 45.0),  # 25 + 20 (capped)
            (45, "admit", "probe"),
        ],
    ),
    (
        "breaker: error rate over the window trips once it holds the minimum outcomes",
        BREAKER_ONLY_BY_RATE,
        [
            *[(0, "fail" if i % 2 == 0 else "ok", UPSTREAM) for i in range(10)],  # 5 of 10 failed, ends ok
            (0, "admit", "allow"),
            (0, "fail", UPSTREAM),  # 6 of 11
            (0, "state", "open"),
            (0, "until", 5.0),
        ],
    ),
    (
        "breaker: error rate needs the minimum number of outcomes",
        BREAKER_ONLY_BY_RATE,
        [
            *[(0, "fail", UPSTREAM) for _ in range(9)],
            (0, "admit", "allow"),
            (0, "fail", UPSTREAM),
            (0, "admit", "deny"),
        ],
    ),
    (
        "breaker: error rate below the threshold stays closed",
        BREAKER_ONLY_BY_RATE,
        [
            *[(0, "ok") if i % 3 else (0, "fail", UPSTREAM) for i in range(30)],
            (0, "fail", UPSTREAM),
            (0, "admit", "allow"),
        ],
    ),
    (
        "breaker: outcomes older than the window are forgotten",
        BREAKER_ONLY_BY_RATE,
        [
            *[(0, "fail", UPSTREAM) for _ in range(6)],
            (0, "admit", "allow"),  # 6 outcomes: below the minimum
            *[(31, "fail", UPSTREAM) for _ in range(4)],  # the first 6 left the window
            (31, "admit", "allow"),
            *[(32, "fail", UPSTREAM) for _ in range(6)],
            (32, "admit", "deny"),
        ],
    ),
    (
        "half-open: exactly one probe, a second caller is refused",
        None,
        [
            *[(0, "fail", UPSTREAM) for _ in range(3)],
            (5, "admit", "probe"),
            (5.1, "admit", "deny"),
            (5.1, "peek", "deny"),
            (5.1, "state", "half_open"),
            (6, "ok"),
            (6, "state", "closed"),
            (6, "admit", "allow"),
            (6, "admit", "allow"),
        ],
    ),
    (
        "half-open: a failed probe reopens with the next longer breaker cooldown, capped",
        None,
        [
            *[(0, "fail", UPSTREAM) for _ in range(3)],
            (0, "until", 5.0),
            (5, "admit", "probe"),
            (5, "fail", TIMEOUT),
            (5, "until", 15.0),
            (15, "admit", "probe"),
            (15, "fail", ErrorClass.CONNECT_FAILED),
            (15, "until", 35.0),
            (35, "admit", "probe"),
            (35, "fail", ErrorClass.RESET),
            (35, "until", 55.0),  # 40 capped at 20
            (55, "admit", "probe"),
            (55, "fail", ErrorClass.STREAM_STALL),
            (55, "until", 75.0),
        ],
    ),
    (
        "half-open: a probe failing with another class follows that class",
        None,
        [
            *[(0, "fail", UPSTREAM) for _ in range(3)],
            (5, "admit", "probe"),
            (5, "fail", RATE, 50.0),
            (5, "until", 50.0),
        ],
    ),
    (
        "half-open: a released probe lets the next caller probe",
        None,
        [
            (0, "fail", CAP),
            (2, "admit", "probe"),
            (3, "admit", "deny"),
            (3, "release"),
            (3, "admit", "probe"),
            (3, "admit", "deny"),
        ],
    ),
    (
        "half-open: a probe that never reports is given up after probe_ttl",
        None,
        [(0, "fail", CAP), (2, "admit", "probe"), (121.9, "admit", "deny"), (122, "admit", "probe")],
    ),
    (
        "peek answers without claiming the probe",
        None,
        [
            (0, "fail", CAP),
            (1, "peek", "deny"),
            (2, "peek", "probe"),
            (2, "peek", "probe"),
            (2, "admit", "probe"),
            (2, "peek", "deny"),
        ],
    ),
    (
        "a success reported while open (a request admitted before) does not close",
        None,
        [(0, "fail", CAP), (1, "ok"), (1.5, "admit", "deny"), (2, "admit", "probe")],
    ),
    (
        "a failure reported while open neither grows the cooldown nor counts as the probe",
        None,
        [
            (0, "fail", CAP),
            (1, "fail", CAP),
            (1, "until", 2.0),
            (2, "admit", "probe"),
            (2, "fail", CAP),
            (2, "until", 6.0),  # the second step of the schedule, not the third
        ],
    ),
    (
        "a failure reported while open may lengthen the wait: announced time, or a longer class",
        None,
        [
            (0, "fail", CAP),
            (1, "fail", CAP, 9.0),
            (1, "until", 9.0),
            (2, "fail", QUOTA),
            (2, "until", 602.0),
            (3, "fail", RATE),  # 13 < 602
            (3, "until", 602.0),
        ],
    ),
    (
        "request-scoped classes are ignored",
        None,
        [
            *[
                (0, "fail", c)
                for c in (ErrorClass.CONTEXT_TOO_LONG, ErrorClass.CONTENT_POLICY, ErrorClass.BAD_REQUEST)
                for _ in range(5)
            ],
            (0, "admit", "allow"),
            (0, "state", "closed"),
            (0, "until", None),
        ],
    ),
]


def run(board: HealthBoard, clock: FakeClock, events: list[Event]) -> None:
    for step, (at, op, *args) in enumerate(events):
        clock.now = float(at)
        where = f"step {step}: {(at, op, *args)}"
        if op == "fail":
            board.record_failure(KEY, args[0], args[1] if len(args) > 1 else None, reason=args[0].value)
        elif op == "ok":
            board.record_success(KEY)
        elif op == "admit":
            assert verdict(board.admit(KEY)) == args[0], where
        elif op == "peek":
            assert verdict(board.peek(KEY)) == args[0], where
        elif op == "release":
            board.release_probe(KEY)
        elif op == "until":
            assert board.reopens_at(KEY) == args[0], where
        elif op == "state":
            assert state_of(board) == args[0], where
        elif op == "enable":
            board.enable(KEY)
        elif op == "disable":
            board.disable(KEY, "operator says so")
        else:
            raise AssertionError(f"unknown operation {op!r}")


@pytest.mark.parametrize(("case", "config", "events"), CASES, ids=[c[0] for c in CASES])
def test_health_sequences(case: str, config: HealthConfig | None, events: list[Event]) -> None:
    board, clock = board_at(config)
    run(board, clock, events)


def test_admission_details() -> None:
    board, clock = board_at()
    assert board.admit(KEY) == Admission(True, False, None, "")
    board.record_failure(KEY, CAP, reason="Selected model is at capacity")
    clock.now = 1.0
    assert board.admit(KEY) == Admission(False, False, 2.0, "Selected model is at capacity", CAP)
    clock.now = 2.5
    assert board.admit(KEY) == Admission(True, True, None, "Selected model is at capacity")
    # refused while the probe is out: the reopen time is already past, meaning "probe in flight"
    assert board.admit(KEY) == Admission(False, False, 2.0, "Selected model is at capacity", CAP)
    board.record_failure(KEY, AUTH, reason="invalid api key")
    assert board.admit(KEY) == Admission(False, False, INF, "invalid api key", AUTH)
    board.record_failure("other", TIMEOUT)
    board.record_failure("other", TIMEOUT)
    board.record_failure("other", TIMEOUT)
    assert board.peek("other").reason == "timeout"  # the class names the reason when none is given


def test_snapshot_contents() -> None:
    board, clock = board_at()
    board.record_failure("account:a", AUTH, reason="401 invalid key")
    board.record_failure("account_model:b|m", CAP, reason="at capacity")
    board.record_failure("provider:p", UPSTREAM)
    board.record_failure("provider_model:p|m", RATE, retry_at=1.0)
    board.record_failure("provider_model:p|m", RATE, retry_at=1.0)  # stale: no new open
    board.record_success("healthy")
    clock.now = 1.5
    board.admit("provider_model:p|m")
    assert board.snapshot() == [
        ScopeSnapshot("account:a", "disabled", INF, "401 invalid key", AUTH, 1, 1, False),
        ScopeSnapshot("account_model:b|m", "open", 0.5, "at capacity", CAP, 1, 1, False),
        ScopeSnapshot("provider:p", "closed", None, "", UPSTREAM, 1, 0, False),
        ScopeSnapshot("provider_model:p|m", "half_open", 0.0, "rate_limited", RATE, 2, 1, True),
    ]
    board.record_success("provider_model:p|m")
    board.record_failure("provider:p", UPSTREAM)
    board.record_failure("provider:p", UPSTREAM)
    assert [(s.key, s.state, s.consecutive_failures, s.opens) for s in board.snapshot()] == [
        ("account:a", "disabled", 1, 1),
        ("account_model:b|m", "open", 1, 1),
        ("provider:p", "open", 3, 1),
    ]


def test_healthy_keys_hold_no_memory() -> None:
    board, _ = board_at()
    for i in range(10_000):
        key = f"account_model:a{i}|m"
        assert board.admit(key).allowed
        board.record_success(key)
    assert len(board) == 0
    assert board.snapshot() == []


def test_recovered_keys_are_forgotten_once_their_failures_leave_the_window() -> None:
    board, clock = board_at()
    for i in range(1000):
        board.record_failure(f"k{i}", UPSTREAM)
        board.record_success(f"k{i}")
    assert len(board) == 1000  # a recent failure still counts toward the error rate
    clock.now = 31.0
    board.record_success("k0")  # any outcome sweeps at most once per window
    assert len(board) == 0


def test_a_recovered_key_that_succeeds_again_is_dropped_at_once() -> None:
    board, clock = board_at()
    board.record_failure(KEY, UPSTREAM)
    board.record_success(KEY)
    assert len(board) == 1
    clock.now = 31.0
    board.record_success(KEY)
    assert len(board) == 0


def test_idle_keys_are_forgotten_after_forget_after() -> None:
    board, clock = board_at(HealthConfig(forget_after=100.0))
    board.record_failure("closed-with-failures", UPSTREAM)
    board.record_failure("expired-open", CAP)
    board.record_failure("long-open", QUOTA, retry_at=10_000.0)
    board.record_failure("disabled", AUTH)
    clock.now = 99.0
    assert len(board.snapshot()) == 4
    clock.now = 102.0
    assert [s.key for s in board.snapshot()] == ["disabled", "long-open"]
    clock.now = 10_100.0
    assert [s.key for s in board.snapshot()] == ["disabled"]


def test_probe_success_gives_a_fresh_window() -> None:
    board, clock = board_at(BREAKER_ONLY_BY_RATE)
    for _ in range(10):
        board.record_failure(KEY, UPSTREAM)
    assert not board.admit(KEY).allowed
    clock.now = 5.0
    assert board.admit(KEY).probe
    board.record_success(KEY)
    board.record_failure(KEY, UPSTREAM)  # the old failures no longer weigh in
    assert board.admit(KEY).allowed


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": 0},
        {"error_rate_threshold": 0.0},
        {"error_rate_threshold": 1.5},
        {"error_rate_window": 0.0},
        {"error_rate_min_requests": 0},
        {"capacity_cooldown": -1.0},
        {"probe_ttl": math.nan},
    ],
    ids=str,
)
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HealthConfig(**bad)


def test_operator_disable_keeps_the_latest_reason() -> None:
    board, _ = board_at()
    board.record_failure(KEY, AUTH, reason="401 invalid key")
    board.disable(KEY, "rotating the key")
    assert board.peek(KEY) == Admission(False, False, INF, "rotating the key")
    assert [(s.state, s.opens) for s in board.snapshot()] == [("disabled", 1)]
    board.disable("fresh", "")
    assert board.peek("fresh").reason == "disabled by an operator"
