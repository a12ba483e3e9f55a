"""The admin health report (pure): every route and account with its state, cooldown and reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spillgate.admin import scopes
from spillgate.admin.health_view import health_report
from spillgate.config.loader import parse_settings
from spillgate.config.schema import Settings
from spillgate.gateway.attempt import Attempt
from spillgate.observe.events import AttemptFinished
from spillgate.observe.recent import RecentFailures
from spillgate.protocols.apis import Api
from spillgate.resilience.health import HealthBoard
from spillgate.resilience.types import ErrorClass, Scope
from tests.clock import FakeClock


def settings() -> Settings:
    return parse_settings(
        {
            "providers": {
                "oa": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"},
                "local": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"},
            },
            "accounts": [
                {"id": "a1", "provider": "oa", "api_key": "k1", "max_concurrency": 2},
                {"id": "a2", "provider": "oa", "api_key": "k2"},
            ],
            "models": {
                "coder": {
                    "routes": [
                        {"accounts": ["a1", "a2"], "model": "big"},
                        {"provider": "local", "model": "small"},
                    ]
                },
                "old": {"alias_of": "coder"},
                "*": {"routes": [{"accounts": ["a2"], "model": "*"}]},
            },
        },
        env={},
        source="test",
    )


def test_key_names_match_the_dispatcher() -> None:
    s = settings()
    pool, own = s.models["coder"].routes
    attempt = Attempt(pool, s.providers["oa"], s.accounts["a1"], "big", Api.OPENAI_CHAT)
    assert attempt.key(Scope.ACCOUNT) == scopes.account_key("a1")
    assert attempt.key(Scope.PROVIDER_MODEL) == scopes.provider_model_key("oa", "big")
    assert attempt.key(Scope.PROVIDER) == scopes.provider_scope_key("oa")
    keyless = Attempt(own, s.providers["local"], None, "small", Api.OPENAI_CHAT)
    assert keyless.key(Scope.ACCOUNT) == scopes.provider_key("local")


def _report(
    board: HealthBoard,
    clock: FakeClock,
    inflight: dict[str, int] | None = None,
    recent: RecentFailures | None = None,
) -> dict[str, object]:
    report = health_report(settings(), board.snapshot(), inflight or {}, recent, clock())
    return {
        "routes": {
            r.label: (
                r.state,
                r.cooldown_s,
                r.error_class,
                r.reason,
                [(m.account, m.state) for m in r.members],
            )
            for m in report.models
            for r in m.routes
        },
        "accounts": {
            a.id: (a.state, a.inflight, a.routes, [s.key for s in a.scopes]) for a in report.accounts
        },
        "scopes": [(s.key, s.state) for s in report.scopes],
        "deprecated": {m.name: m.deprecated_names for m in report.models},
    }


def test_all_healthy() -> None:
    clock = FakeClock(100.0)
    got = _report(HealthBoard(clock=clock), clock, inflight={"a1": 1})
    assert got["routes"] == {
        "coder[0]": ("closed", None, None, "", [("a1", "closed"), ("a2", "closed")]),
        "coder[1]": ("closed", None, None, "", [(None, "closed")]),
        "*[0]": ("closed", None, None, "", [("a2", "closed")]),
    }
    assert got["accounts"] == {
        "a1": ("closed", 1, ["coder[0]"], []),
        "a2": ("closed", 0, ["coder[0]", "*[0]"], []),
    }
    assert got["scopes"] == [] and got["deprecated"] == {"coder": ["old"], "*": []}


# (what happens on the board, expected states of coder[0] members and the route, route cooldown)
CASES: list[
    tuple[str, list[tuple[str, ErrorClass | None]], list[tuple[str | None, str]], str, float | None]
] = [
    (
        "one account at capacity: the route still serves through the other",
        [("account:a1|big", ErrorClass.CAPACITY)],
        [("a1", "open"), ("a2", "closed")],
        "closed",
        None,
    ),
    (
        "both accounts at capacity: the route is open until the sooner one",
        [("account:a1|big", ErrorClass.CAPACITY), ("account:a2|big", ErrorClass.RATE_LIMITED)],
        [("a1", "open"), ("a2", "open")],
        "open",
        2.0,
    ),
    (
        "the provider+model is overloaded: every member is open",
        [("provider_model:oa|big", ErrorClass.OVERLOADED)],
        [("a1", "open"), ("a2", "open")],
        "open",
        5.0,
    ),
    (
        "an auth failure disables the account",
        [("account:a1", ErrorClass.AUTH), ("account:a2|big", ErrorClass.CAPACITY)],
        [("a1", "disabled"), ("a2", "open")],
        "open",
        2.0,
    ),
    (
        "a drained account, a disabled one: the route is drained-or-worse",
        [("account:a1", None), ("account:a2", ErrorClass.AUTH)],
        [("a1", "drained"), ("a2", "disabled")],
        "disabled",
        None,
    ),
    (
        "a scope of another model does not count",
        [("account:a1|other", ErrorClass.CAPACITY)],
        [("a1", "closed"), ("a2", "closed")],
        "closed",
        None,
    ),
]


@pytest.mark.parametrize(("name", "marks", "members", "route", "cooldown"), CASES, ids=[c[0] for c in CASES])
def test_route_states(
    name: str,
    marks: list[tuple[str, ErrorClass | None]],
    members: list[tuple[str | None, str]],
    route: str,
    cooldown: float | None,
) -> None:
    clock = FakeClock(100.0)
    board = HealthBoard(clock=clock)
    for key, cls in marks:
        if cls is None:
            scopes.drain(board, key)
        else:
            board.record_failure(key, cls, reason="at capacity" if cls is ErrorClass.CAPACITY else "")
    got = _report(board, clock)["routes"]
    assert isinstance(got, dict)
    state, cooldown_s, _, _, got_members = got["coder[0]"]
    assert got_members == members
    assert state == route
    assert cooldown_s == cooldown


def test_cooldown_counts_down_and_half_opens() -> None:
    clock = FakeClock(100.0)
    board = HealthBoard(clock=clock)
    board.record_failure("account:a1|big", ErrorClass.CAPACITY, reason="Selected model is at capacity.")
    board.record_failure("account:a2|big", ErrorClass.CAPACITY, reason="Selected model is at capacity.")
    report = health_report(settings(), board.snapshot(), {}, None, clock())
    route = report.models[0].routes[0]
    assert (route.state, route.cooldown_s, route.error_class) == ("open", 2.0, "capacity")
    assert route.reason == "Selected model is at capacity."
    assert route.members[0].scope == "account:a1|big"
    clock.now += 1.5
    route = health_report(settings(), board.snapshot(), {}, None, clock()).models[0].routes[0]
    assert (route.state, route.cooldown_s) == ("open", 0.5)
    clock.now += 1.0
    route = health_report(settings(), board.snapshot(), {}, None, clock()).models[0].routes[0]
    assert (route.state, route.cooldown_s) == ("half_open", 0.0)
    assert [
        (s.key, s.state) for s in health_report(settings(), board.snapshot(), {}, None, clock()).scopes
    ] == [
        ("account:a1|big", "half_open"),
        ("account:a2|big", "half_open"),
    ]


def test_provider_key_routes_and_wildcards() -> None:
    clock = FakeClock(100.0)
    board = HealthBoard(clock=clock)
    board.record_failure("provider-key:local|small", ErrorClass.CAPACITY)
    board.record_failure("account:a2|some-model", ErrorClass.CAPACITY)  # on the * route only
    got = _report(board, clock)
    routes = got["routes"]
    assert isinstance(routes, dict)
    assert routes["coder[1]"][:3] == ("open", 2.0, "capacity")
    assert routes["*[0]"][0] == "closed"  # one model of a * route is not the route
    assert got["accounts"] == {
        "a1": ("closed", 0, ["coder[0]"], []),
        "a2": ("closed", 0, ["coder[0]", "*[0]"], ["account:a2|some-model"]),
    }


def test_drain_and_enable() -> None:
    clock = FakeClock(100.0)
    board = HealthBoard(clock=clock)
    board.record_failure("account:a1|big", ErrorClass.CAPACITY)
    board.record_failure("account:a10|big", ErrorClass.CAPACITY)  # another account, same prefix
    scopes.drain(board, "account:a1", now=1_767_225_600)
    (a1,) = [s for s in board.snapshot() if s.key == "account:a1"]
    assert scopes.is_drained(a1) and a1.reason == "drained by operator at 2026-01-01T00:00:00Z"
    assert _report(board, clock)["accounts"]["a1"][0] == "drained"  # type: ignore[index]
    assert scopes.enable(board, "account:a1") == ["account:a1", "account:a1|big"]
    assert [s.key for s in board.snapshot()] == ["account:a10|big"]
    board.record_failure("provider-key:local", ErrorClass.AUTH)
    board.record_failure("provider_model:local|small", ErrorClass.OVERLOADED)
    board.record_failure("provider_model:oa|big", ErrorClass.OVERLOADED)
    cleared = scopes.enable(board, "provider-key:local", provider="local")
    assert cleared == ["provider-key:local", "provider_model:local|small"]
    assert [s.key for s in board.snapshot()] == ["account:a10|big", "provider_model:oa|big"]


def test_recent_errors_per_member() -> None:
    clock = FakeClock(100.0)
    recent = RecentFailures(per_member=2, clock=lambda: 5.0)
    failed = AttemptFinished(
        request_id="r",
        attempt=1,
        api="openai-chat",
        public_model="coder",
        route="coder[0]",
        provider="oa",
        account="a1",
        upstream_model="big",
        stream=False,
        ok=False,
        status=503,
        error_class="capacity",
        scope="account_model",
        rule="builtin.capacity_code",
        phase="before_content",
        latency=0.01,
        first_byte=None,
    )
    for cls in ("upstream_error", "capacity", "capacity"):
        recent(replace(failed, error_class=cls))
    recent(replace(failed, ok=True, error_class=None))  # successes are not recorded
    report = health_report(settings(), HealthBoard(clock=clock).snapshot(), {}, recent, clock())
    a1 = report.models[0].routes[0].members[0]
    assert [e.error_class for e in a1.recent_errors] == ["capacity", "capacity"]  # newest, bounded
    assert report.models[0].routes[0].members[1].recent_errors == []
    assert [a.error_class for a in recent.failed_attempts(10)] == ["capacity", "capacity", "upstream_error"]
    assert recent.failed_attempts(10, since=6.0) == []
