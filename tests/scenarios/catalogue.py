"""The fault catalogue as data: each case's faults, the requests it makes and what each must get.

Every case has a model alias of its own whose primary route is a model of its own
(``p-<case>``), failing as the case says, and whose fallback is the shared ``fallback`` model —
all of it on **one provider and one credential** (a real org key serving several models), or
with the primaries and the fallback on two credentials. Run alone on a fresh gateway or back to
back on one running gateway, a case must see the same outcome: a failure of one model may never
leak into the credential's other models or into the next request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spillgate.fake import DEFAULT_TEXT, FakeUpstream, Fault

from ..harness import Result, Scenario, scenario_config

FALLBACK = "fallback"
APIS = ("chat", "responses", "messages")
ROLES = ("primary", "fallback")
Bound = float | tuple[float, float]
"""Seconds, or (non-streamed, streamed)."""


def _at(bound: Bound, stream: bool) -> float:
    return bound[1 if stream else 0] if isinstance(bound, tuple) else bound


@dataclass(frozen=True)
class Ask:
    """One request of a case and what it must get."""

    by: str | None
    """The role whose route answered (``primary`` / ``fallback``; for a stream: the route that
    started it, named by the headers), ``None`` for an error."""
    primary: int | tuple[int, int]
    """Attempts the primary model sees for this request (exact, or an inclusive range)."""
    fallback: int | tuple[int, int] = 0
    status: int | None = None
    """The status when ``by`` is ``None`` (``None`` here: 503 / Anthropic 529)."""
    within: Bound = 2.0
    at_least: Bound = 0.0
    check: Callable[[Result, str, bool], None] | None = None


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Case:
    name: str
    primary: Fault
    steps: tuple[Ask | Pause, ...]
    fallback: Fault | None = None
    """A fault for the fallback model too (then it gets a model of its own: ``f-<case>``)."""
    fallback_shared: bool = False
    """The fallback fault leaves ordinary requests alone: it is set on the shared fallback model."""
    stream: bool | None = None
    """Only streamed (``True``) or non-streamed (``False``) requests; ``None``: both."""
    apis: tuple[str, ...] = APIS
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra route keys per role (``context_window``, ``supports_prefill``)."""
    loop: Callable[[Scenario, Case, str, bool, bool], Any] | None = None
    """A case that is a loop over time rather than a list of asks."""

    @property
    def primary_model(self) -> str:
        return f"p-{self.name}"

    @property
    def fallback_model(self) -> str:
        return FALLBACK if self.fallback is None or self.fallback_shared else f"f-{self.name}"

    def applies(self, api: str, stream: bool) -> bool:
        return api in self.apis and (self.stream is None or self.stream is stream)


def route_label(case: Case, api: str, role: str) -> str:
    index = ROLES.index(role) + (2 if api == "messages" else 0)
    return f"{case.name}[{index}]"


def shared_config(fake: FakeUpstream, cases: list[Case], credentials: int) -> dict[str, Any]:
    """Every case's alias on the one OpenAI and the one Anthropic provider, with one credential
    each (the provider's own key) or two (primaries on one account, the fallback on another)."""
    config = scenario_config(fake)  # the providers with short timeouts, scaled-down resilience
    providers = config["providers"]
    accounts: list[dict[str, Any]] = []
    if credentials == 1:
        providers["oa"]["api_key"] = "sk-org-openai"
        providers["an"]["api_key"] = "sk-org-anthropic"
    else:
        for provider in ("oa", "an"):
            for role in ROLES:
                accounts.append(
                    {"id": f"{provider}-{role}", "provider": provider, "api_key": f"sk-{provider}-{role}"}
                )

    def route(provider: str, case: Case, role: str) -> dict[str, Any]:
        model = case.primary_model if role == "primary" else case.fallback_model
        where = {"provider": provider} if credentials == 1 else {"accounts": [f"{provider}-{role}"]}
        # Each API on its own provider (the catalogue is about resilience within one protocol).
        return {**where, "model": model, "translate": False, **case.routes.get(role, {})}

    models: dict[str, Any] = {
        case.name: {"routes": [route(p, case, role) for p in ("oa", "an") for role in ROLES]}
        for case in cases
    }
    # The control: the shared fallback model alone, on the same credential as every primary.
    control = Case("control", Fault(), ())
    models["control"] = {
        "routes": [{**route(p, control, "fallback"), "model": FALLBACK} for p in ("oa", "an")]
    }
    config["accounts"] = accounts
    config["models"] = models
    # Each case must see the attempts it sees alone; the budget's own limits are tested on their
    # own (tests/resilience/test_budget.py, tests/scenarios/test_policy.py, bench/resilience).
    config["resilience"].update({"max_client_retry_after": "3s", "retry_budget": {"floor": 1000}})
    return config


# -- running a case ---------------------------------------------------------------------------


def _count(fake: FakeUpstream, model: str, api: str, since: int) -> int:
    from ..harness import PATHS

    return sum(1 for a in fake.attempts_for(model)[since:] if a.path.endswith(PATHS[api]))


def _within(value: int, expected: int | tuple[int, int]) -> bool:
    low, high = expected if isinstance(expected, tuple) else (expected, expected)
    return low <= value <= high


async def run_case(sc: Scenario, case: Case, api: str, stream: bool, *, exact: bool = True) -> int:
    """Run ``case``; ``exact``: every ask gets exactly what it says. Otherwise each ask is held
    to the bounds the case promises (see :func:`_ask`). Returns how many asks did not get the
    exact outcome."""
    fake = sc.fake
    fake.set(case.primary_model, case.primary)
    if case.fallback is not None:
        fake.set(case.fallback_model, case.fallback)
    off = 0
    try:
        if case.loop is not None:
            await case.loop(sc, case, api, stream, exact)
            return 0
        for i, step in enumerate(case.steps):
            if isinstance(step, Pause):
                sc.clock.advance(step.seconds)  # the gateway's clock: no real wait
                continue
            where = f"{case.name} {api} stream={stream} request {i}"
            off += not await _ask(sc, case, api, stream, step, where, exact)
    finally:
        fake.clear(case.primary_model)
        if case.fallback is not None:
            fake.clear(case.fallback_model)
    return off


async def _ask(sc: Scenario, case: Case, api: str, stream: bool, ask: Ask, where: str, exact: bool) -> bool:
    """One request; whether it got exactly what ``ask`` says. Short of exact (``exact`` false),
    it must still get what the case promises whatever came before: the fallback answers whenever
    it is healthy, the primary sees at most its attempts, nothing takes longer."""
    fake = sc.fake
    before = (len(fake.attempts_for(case.primary_model)), len(fake.attempts_for(case.fallback_model)))
    result = await sc.ask(api, stream, model=case.name)
    seen = (
        _count(fake, case.primary_model, api, before[0]),
        _count(fake, case.fallback_model, api, before[1]),
    )
    route = result.header("x-spillgate-route")
    what = f"{where}: status {result.status}, route {route}, seen {seen}, "
    what += f"{result.elapsed:.2f}s: {result.reply.body[:300]!r}"
    status = ask.status or (529 if api == "messages" else 503)
    expected_route = route_label(case, api, ask.by) if ask.by is not None else None
    as_said = (
        (result.status == 200 and route == expected_route)
        if ask.by is not None
        else (result.status == status)
    )
    as_said = as_said and _within(seen[0], ask.primary) and _within(seen[1], ask.fallback)
    if exact:
        assert as_said, what
    elif not as_said:
        # Bounded: another route than alone may answer, but only the fallback, at once.
        assert result.status == 200 and route == route_label(case, api, "fallback"), what
        assert seen[0] <= _high(ask.primary) and seen[1] <= max(_high(ask.fallback), 1), what
    if result.status == 200:
        assert result.text(api, stream) == DEFAULT_TEXT, what
        if stream:
            assert result.ended_normally(api), what
    assert result.elapsed <= _at(ask.within, stream), what
    if as_said:
        assert _at(ask.at_least, stream) <= result.elapsed, what
        if ask.check is not None:
            ask.check(result, api, stream)
    return as_said


def _high(expected: int | tuple[int, int]) -> int:
    return expected[1] if isinstance(expected, tuple) else expected


async def control_answers(sc: Scenario, api: str, stream: bool, where: str) -> None:
    """The shared fallback model, on the credential every case's primary failed on, answers at
    once with one attempt."""
    result = await sc.ask(api, stream, model="control")
    what = f"control after {where}: {result.status} {result.reply.body[:300]!r}"
    assert result.status == 200 and result.header("x-spillgate-attempts") == "1", what
    assert result.text(api, stream) == DEFAULT_TEXT and result.elapsed < 1.0, what


# -- the catalogue ----------------------------------------------------------------------------


def _no_retry(result: Result, api: str, stream: bool) -> None:
    assert result.header("x-should-retry") == "false"
    assert "content management policy" in result.reply.body.decode()


def _honest_outage(result: Result, api: str, stream: bool) -> None:
    assert result.header("x-should-retry") == "true"
    assert 1 <= int(result.header("retry-after") or "0") <= 3  # max_client_retry_after
    message = result.reply.json()["error"]["message"]
    assert "out of capacity" in message and "routes:" in message, message
    assert "all-down[" in message


async def _down_window(sc: Scenario, case: Case, api: str, stream: bool, exact: bool) -> None:
    """The primary at capacity for 1.5 s, then healthy: back on it within a cooldown, and it stays.
    Not ``exact``: the primary may not be tried at all while it is down."""
    before = len(sc.fake.attempts_for(case.primary_model))
    routes: list[str | None] = []
    for _ in range(40):  # 4 s on the shared clock (the fake's window and the gateway's cooldowns)
        result = await sc.ask(api, stream, model=case.name)
        assert result.status == 200 and result.text(api, stream) == DEFAULT_TEXT, result.reply.body
        routes.append(result.header("x-spillgate-route"))
        sc.clock.advance(0.1)
    assert routes[0] == route_label(case, api, "fallback"), routes
    assert routes[-8:] == [route_label(case, api, "primary")] * 8, routes
    failed = [a for a in sc.fake.attempts_for(case.primary_model)[before:] if a.fault_applied]
    assert (1 if exact else 0) <= len(failed) <= 3, len(failed)  # the first hit, at most a couple of probes


CONTEXT = Fault(
    status=400,
    error_code="context_length_exceeded",
    error_message="This model's maximum context length is 8000 tokens.",
)
CONTENT = Fault(
    status=400,
    error_code="content_policy_violation",
    error_message="Your request was rejected by the content management policy.",
)

CATALOGUE: list[Case] = [
    Case(
        "429-retry-after",
        Fault.rate_limited(retry_after=1, times=1),
        (Ask("primary", 2, 0, at_least=1.0, within=2.0),),  # waited out: the model the user chose
    ),
    Case(
        "429-long-retry-after",
        Fault.rate_limited(retry_after=3),
        (Ask("fallback", 1, 1, within=1.0), Ask("fallback", 0, 1, within=1.0)),
    ),
    Case(
        "429-no-retry-after",
        Fault.rate_limited(),
        (Ask("fallback", 1, 1, within=1.0), Ask("fallback", 0, 1, within=1.0)),
    ),
    Case("500-once", Fault.server_error(times=1), (Ask("primary", 2, 0, within=1.0),)),
    Case(
        "503-persistent",
        Fault.capacity(),
        (Ask("fallback", 1, 1, within=1.0), Ask("fallback", 0, 1, within=1.0)),
    ),
    Case("reset", Fault.reset(), (Ask("fallback", 2, 1, within=1.5),)),
    Case(
        "no-response",
        Fault.hang(),
        # The try waits first_byte (streamed) or total (not), then the fallback answers; the
        # silent primary is not tried again by the next request.
        (Ask("fallback", 1, 1, at_least=(3.0, 1.0), within=(4.0, 2.0)), Ask("fallback", 0, 1, within=1.0)),
    ),
    Case(
        "silence-then-close",
        Fault(reset_before_headers=True, headers_delay=1.6),
        (Ask("fallback", 1, 1, at_least=1.0, within=3.0),),  # silence: not retried like a reset
    ),
    Case(
        "slow-first-token",
        Fault(first_content_delay=5),
        (Ask("fallback", 1, 1, at_least=1.0, within=2.0),),
        stream=True,
    ),
    # Broken after the answer started: the headers name the route that started it; the rest of
    # the answer comes from the fallback's replay.
    Case("stream-cut", Fault(cut_after_events=5), (Ask("primary", 1, 1),), stream=True),
    Case("stall", Fault(stall_after_events=5), (Ask("primary", 1, 1),), stream=True),
    Case("malformed-event", Fault(malformed_at_event=3), (Ask("primary", 1, 0),), stream=True),
    Case(
        "missing-terminator",
        Fault(omit_done=True, stall_after_events=99),
        (Ask("primary", 1, 0, within=1.0),),
        stream=True,
        apis=("chat", "messages"),
    ),
    Case(
        "context-length",
        CONTEXT,
        (Ask("fallback", 1, 1, within=1.0),),
        routes={"primary": {"context_window": 8000}, "fallback": {"context_window": 200000}},
    ),
    Case("content-filter", CONTENT, (Ask(None, 1, 0, status=400, within=1.0, check=_no_retry),)),
    Case(
        "prefill-rejected",
        Fault(cut_after_events=5),
        # The continuation is refused with a 400 (not the real error): replayed instead.
        (Ask("primary", 1, 2),),
        fallback=Fault(reject_prefill=True),
        fallback_shared=True,
        stream=True,
        apis=("chat", "messages"),
        routes={"fallback": {"supports_prefill": True}},
    ),
    Case("down-window", Fault.capacity(for_seconds=1.5), (), loop=_down_window),
    Case(
        "all-down",
        Fault.capacity(),
        (
            Ask(None, 1, 1, within=1.0, check=_honest_outage),
            Ask(None, (0, 1), (0, 1), within=1.0, check=_honest_outage),  # one try of the least bad
        ),
        fallback=Fault.capacity(),
    ),
]
