"""Account choice as a table: affinity, health, concurrency limits, least in-flight."""

from __future__ import annotations

import random

import pytest

from spillgate.config.schema import Account, ModelAlias, Route, Secret
from spillgate.routing.plan import order_routes
from spillgate.routing.selection import choose_account


def acct(name: str, limit: int | None = None, models: set[str] | None = None) -> Account:
    return Account(
        name, "p", Secret("k"), max_concurrency=limit, models=frozenset(models) if models else None
    )


POOL = [acct("a", limit=2), acct("b", limit=2), acct("c", models={"other"})]

# bound, unhealthy, inflight, rotation -> chosen, rebind
CASES = [
    ("no binding: least in-flight", None, set(), {"a": 1, "b": 0}, 0, "b", True),
    ("no binding: tie broken by rotation", None, set(), {}, 1, "b", True),
    ("no binding: tie at rotation 0", None, set(), {}, 0, "a", True),
    ("bound and healthy stays", "a", set(), {"a": 1, "b": 0}, 0, "a", False),
    ("bound but unhealthy moves and rebinds", "a", {"a"}, {}, 0, "b", True),
    ("bound but full borrows without rebinding", "a", set(), {"a": 2}, 0, "b", False),
    ("unhealthy skipped", None, {"a"}, {}, 0, "b", True),
    ("account not serving the model is never chosen", None, {"a", "b"}, {}, 0, None, False),
    ("all full", None, set(), {"a": 2, "b": 2}, 0, None, False),
    ("binding to an unknown account", "zzz", set(), {"a": 1}, 0, "b", True),
]


@pytest.mark.parametrize(
    ("case", "bound", "unhealthy", "inflight", "rotation", "chosen", "rebind"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_choose_account(
    case: str,
    bound: str | None,
    unhealthy: set[str],
    inflight: dict[str, int],
    rotation: int,
    chosen: str | None,
    rebind: bool,
) -> None:
    choice = choose_account(
        POOL, "gpt", bound=bound, healthy=lambda a: a not in unhealthy, inflight=inflight, rotation=rotation
    )
    assert (choice.account.id if choice.account else None) == chosen
    assert choice.rebind is rebind
    if chosen is None:
        assert choice.reason


def test_no_account_reason_names_the_cause() -> None:
    full = choose_account(POOL, "gpt", bound=None, healthy=lambda a: True, inflight={"a": 2, "b": 2})
    assert "max_concurrency" in full.reason
    sick = choose_account(POOL, "gpt", bound=None, healthy=lambda a: False, inflight={})
    assert "no healthy account" in sick.reason


def test_route_order_priority_then_weight() -> None:
    r = [
        Route("p", "m1", priority=0, weight=1, label="x[0]"),
        Route("p", "m2", priority=1, weight=9, label="x[1]"),
        Route("p", "m3", priority=1, weight=1, label="x[2]"),
        Route("p", "m4", priority=2, label="x[3]"),
    ]
    ModelAlias("x", tuple(r))
    rng = random.Random(7)
    firsts = {"m2": 0, "m3": 0}
    for _ in range(2000):
        order = order_routes(r, rng)
        assert order[0].model == "m1" and order[3].model == "m4"
        firsts[order[1].model] += 1
    share = firsts["m2"] / 2000
    assert 0.85 < share < 0.95, share
