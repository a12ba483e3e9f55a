"""The diagnosis as a table: probe results in, verdict, summary and advice out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from spillgate.config.durations import format_wait
from spillgate.doctor.diagnose import category_of, diagnose
from spillgate.doctor.types import BodyKind, Category, ProbeResult, Role
from spillgate.protocols.apis import Api
from spillgate.resilience.types import ErrorClass as C
from spillgate.resilience.types import Transport

from .helpers import KEY, listing, ok, result, route

CAPACITY = {
    "status": 503,
    "cls": C.CAPACITY,
    "code": "server_is_overloaded",
    "message": "Selected model is at capacity.",
}
OVERLOADED = {"status": 529, "cls": C.OVERLOADED, "code": "overloaded_error", "message": "Overloaded"}


def capacity(model: str = "gpt-x", role: Role = Role.MODEL, **kw: object) -> ProbeResult:
    return result(role, model, **{**CAPACITY, **kw})  # type: ignore[arg-type]


def overloaded(model: str = "gpt-x", role: Role = Role.MODEL) -> ProbeResult:
    return result(role, model, **OVERLOADED)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    results: tuple[ProbeResult, ...]
    category: Category
    summary: tuple[str, ...] = ()
    """Substrings of the summary."""
    advice: tuple[str, ...] = ()
    """Substrings of the advice (any line)."""
    evidence: tuple[str, ...] = ()
    answered: tuple[str, ...] = ()


URL_CASES = {
    "everything answers": Case(
        (ok(), ok(stream=True), listing("gpt-x", "gpt-4o")),
        Category.OK,
        summary=("gpt-x at api.test:8000 answers",),
    ),
    "one model at capacity, others answer": Case(
        (capacity(), capacity(stream=True), listing("gpt-x", "gpt-4o"), ok(Role.OTHER, "gpt-4o")),
        Category.MODEL_CAPACITY,
        summary=("gpt-x is at capacity", "other models answer: gpt-4o"),
        advice=("Switch to another model for now (e.g. gpt-4o)", "two routes"),
        evidence=("only gpt-x is affected",),
        answered=("gpt-4o",),
    ),
    "a 529 on one model while others answer is that model's trouble": Case(
        (overloaded(), overloaded(), listing(), ok(Role.OTHER, "gpt-4o")),
        Category.MODEL_CAPACITY,
        answered=("gpt-4o",),
    ),
    "every model unavailable: the provider is overloaded": Case(
        (
            capacity(),
            capacity(),
            listing(),
            overloaded("gpt-4o", Role.OTHER),
            capacity("gpt-4o-mini", Role.OTHER),
        ),
        Category.PROVIDER_OVERLOADED,
        summary=("api.test:8000 is overloaded", "gpt-4o, gpt-4o-mini"),
        advice=("switching models there will not help", "another provider"),
        evidence=("the whole endpoint is affected",),
    ),
    "a 529 with nothing to compare: the provider says overloaded": Case(
        (overloaded(), overloaded()),
        Category.PROVIDER_OVERLOADED,
        summary=("says it is overloaded",),
    ),
    "capacity with nothing to compare stays the model's": Case(
        (capacity(), capacity(stream=True), listing()),
        Category.MODEL_CAPACITY,
        summary=("gpt-x is at capacity",),
    ),
    "capacity only in the stream": Case(
        (ok(), capacity(stream=True, status=200, in_stream=True), listing(), ok(Role.OTHER, "gpt-4o")),
        Category.MODEL_CAPACITY,
        summary=("gpt-x is at capacity for streamed requests (plain ones answer) at api.test:8000",),
        advice=("inside a 200 stream",),
        answered=("gpt-4o",),
    ),
    "capacity that comes and goes": Case(
        (capacity(), ok(stream=True), listing()),
        Category.MODEL_CAPACITY,
        summary=("one of its requests got through",),
    ),
    "rate limited with Retry-After, answered after the pause": Case(
        (
            result(status=429, cls=C.RATE_LIMITED, retry=2.0, headers=(("retry-after", "2"),)),
            listing(),
            ok(Role.RETRY, wait=2.0),
        ),
        Category.RATE_LIMITED,
        summary=("rate limited (429, retry after 2 s)",),
        advice=("Retry after 2 s (from its retry-after header)", "After waiting 2 s it answered again"),
        evidence=("after waiting 2 s the model answered", "{retry-after: 2}"),
    ),
    "rate limited, the wait from a reset header": Case(
        (
            result(
                status=429,
                cls=C.RATE_LIMITED,
                retry=12.0,
                headers=(("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "12s")),
            ),
        ),
        Category.RATE_LIMITED,
        advice=("Retry after 12 s (from its x-ratelimit-reset-requests header)",),
    ),
    "rate limited without a wait": Case(
        (
            result(status=429, cls=C.RATE_LIMITED),
            listing(),
            result(Role.RETRY, status=429, cls=C.RATE_LIMITED),
        ),
        Category.RATE_LIMITED,
        summary=("no wait announced",),
        advice=("back off",),
        evidence=("was still refused",),
    ),
    "quota with a reset": Case(
        (result(status=429, cls=C.QUOTA_EXHAUSTED, code="usage_limit_reached", retry=7200.0), listing()),
        Category.QUOTA,
        summary=("out of quota", "resets in about 2 h", "sk-…abcd"),
        advice=("retrying sooner will not help", "another account"),
    ),
    "quota without a reset": Case(
        (result(status=429, cls=C.QUOTA_EXHAUSTED, code="insufficient_quota"),),
        Category.QUOTA,
        advice=("until the billing period resets",),
    ),
    "auth": Case(
        (result(status=401, cls=C.AUTH, code="invalid_api_key", message="Incorrect API key"), listing()),
        Category.AUTH,
        summary=("The key sk-…abcd is rejected by api.test:8000", "401 invalid_api_key"),
        advice=("Check the key",),
    ),
    "403 says the key is known": Case(
        (result(status=403, cls=C.AUTH),), Category.AUTH, advice=("403: the key is known",)
    ),
    "connection refused": Case(
        (
            result(
                status=None,
                cls=C.CONNECT_FAILED,
                transport=Transport.CONNECT,
                body=BodyKind.EMPTY,
                message="could not connect to api.test:8000: Connection refused",
            ),
        ),
        Category.NETWORK,
        summary=("Cannot reach api.test:8000", "Connection refused"),
        advice=("Nothing accepted the connection", "not a capacity problem"),
    ),
    "connect timeout": Case(
        (
            result(
                status=None, cls=C.CONNECT_FAILED, transport=Transport.CONNECT_TIMEOUT, body=BodyKind.EMPTY
            ),
        ),
        Category.NETWORK,
        advice=("got no answer",),
    ),
    "reset before any answer": Case(
        (result(status=None, cls=C.RESET, transport=Transport.RESET, body=BodyKind.EMPTY), listing()),
        Category.NETWORK,
        advice=("cut before any answer",),
    ),
    "HTML 502 from a proxy": Case(
        (
            result(status=502, cls=C.UPSTREAM_ERROR, body=BodyKind.HTML, headers=(("server", "nginx"),)),
            result(status=502, cls=C.UPSTREAM_ERROR, body=BodyKind.HTML, stream=True),
            listing(),
        ),
        Category.PROXY_OR_ROUTE_OVERLOAD,
        summary=("A proxy in front of the API", "502 with an html page from nginx"),
        advice=("never reached",),
    ),
    "an empty 503 is not the API's JSON": Case(
        (result(status=503, cls=C.CAPACITY, body=BodyKind.EMPTY),),
        Category.PROXY_OR_ROUTE_OVERLOAD,
        summary=("503 with no body",),
    ),
    "a JSON 502 is the API's own server error": Case(
        (result(status=502, cls=C.UPSTREAM_ERROR, headers=(("x-request-id", "req_1"),)), listing()),
        Category.UPSTREAM_ERROR,
        advice=("not a capacity signal", "request id req_1"),
    ),
    "a 503 that says not to retry is not capacity": Case(
        (result(status=503, cls=C.CAPACITY, headers=(("x-should-retry", "false"),)),),
        Category.UPSTREAM_ERROR,
        advice=("retrying will not help",),
    ),
    "a silent model": Case(
        (result(status=None, cls=C.TIMEOUT, transport=Transport.FIRST_BYTE_TIMEOUT, body=BodyKind.EMPTY),),
        Category.UPSTREAM_ERROR,
        advice=("--timeout",),
    ),
    "unknown model, with the listing": Case(
        (result(status=404, cls=C.NOT_FOUND, code="model_not_found"), listing("gpt-4o", "gpt-4o-mini")),
        Category.MODEL_NOT_FOUND,
        summary=("does not know the model gpt-x",),
        advice=("The endpoint lists: gpt-4o, gpt-4o-mini",),
    ),
    "listed model but 404: the path": Case(
        (result(status=404, cls=C.NOT_FOUND), listing("gpt-x")),
        Category.MODEL_NOT_FOUND,
        advice=("--protocol",),
    ),
    "the first API's path is unknown, the other answers": Case(
        (
            result(status=404, cls=C.NOT_FOUND),
            ok(api=Api.ANTHROPIC_MESSAGES),
            ok(api=Api.ANTHROPIC_MESSAGES, stream=True),
            listing(),
        ),
        Category.OK,
        evidence=("/v1/chat/completions is not served there (404); Anthropic Messages is",),
    ),
    "bad request": Case(
        (result(status=400, cls=C.BAD_REQUEST, message="Unsupported parameter"), listing()),
        Category.BAD_REQUEST,
        summary=("rejects a minimal request", "Unsupported parameter"),
        advice=("--protocol",),
    ),
    "through Spillgate, nothing can be served": Case(
        (
            capacity(headers=(("x-spillgate-attempts", "2"),)),
            capacity(stream=True),
            listing("coder", "helper"),
            capacity("helper", Role.OTHER),
        ),
        Category.PROVIDER_OVERLOADED,
        summary=("Spillgate at api.test:8000 cannot serve gpt-x nor the other models probed (helper)",),
        advice=("spillgate doctor --alias gpt-x",),
    ),
    "no connection outranks everything": Case(
        (
            result(status=401, cls=C.AUTH),
            result(status=None, cls=C.CONNECT_FAILED, transport=Transport.CONNECT, stream=True),
        ),
        Category.NETWORK,
    ),
    "through Spillgate": Case(
        (
            capacity(headers=(("x-spillgate-attempts", "2"),)),
            capacity(stream=True),
            listing("coder", "helper"),
            ok(Role.OTHER, "helper", headers=(("x-spillgate-route", "helper[0]"),)),
        ),
        Category.MODEL_CAPACITY,
        advice=("spillgate doctor --alias gpt-x",),
        evidence=("{x-spillgate-attempts: 2}", "{x-spillgate-route: helper[0]}"),
        answered=("helper",),
    ),
}


@pytest.mark.parametrize("case", URL_CASES.values(), ids=URL_CASES.keys())
def test_url_diagnosis(case: Case) -> None:
    d = diagnose(case.results)
    assert d.category is case.category, d.summary
    assert d.ok is (case.category is Category.OK)
    for part in case.summary:
        assert part in d.summary, (part, d.summary)
    for part in case.advice:
        assert any(part in line for line in d.advice), (part, d.advice)
    evidence = "\n".join(d.evidence)
    for part in case.evidence:
        assert part in evidence, (part, evidence)
    assert d.answered == case.answered
    assert d.advice, "every verdict says what to do next"
    assert len(d.evidence) >= len(case.results)
    assert KEY not in d.summary + evidence + "".join(d.advice)


ALIAS_CASES = {
    "first route at capacity, second answers": Case(
        (route("coder[0]/oa-1", "busy", **CAPACITY), route("coder[1]/oa-2", "fine")),  # type: ignore[arg-type]
        Category.MODEL_CAPACITY,
        summary=("Route coder[0]/oa-1 (busy at provider up) is at capacity", "coder[1]/oa-2 answers"),
        advice=("Clients are served meanwhile",),
        evidence=("routes answering: coder[1]/oa-2; failing: coder[0]/oa-1",),
        answered=("coder[1]/oa-2",),
    ),
    "every route at capacity": Case(
        (route("coder[0]/a", "m", **CAPACITY), route("coder[1]/b", "m", **CAPACITY)),  # type: ignore[arg-type]
        Category.MODEL_CAPACITY,
        summary=("no route of coder answers",),
        advice=("Add a route on another provider",),
    ),
    "the primary route's failure leads, a later route's rejected key is named after it": Case(
        (
            route("coder[0]/a", "m", **CAPACITY),  # type: ignore[arg-type]
            route("coder[1]/b", "m", status=401, cls=C.AUTH),
        ),
        Category.MODEL_CAPACITY,
        summary=("Route coder[0]/a (m at provider up) is at capacity", "no route of coder answers"),
        advice=("Also failing: coder[1]/b (auth)",),
    ),
    "the primary leads even when the last route's failure ranks higher": Case(
        (
            route("coder[0]/a", "m", **CAPACITY),  # type: ignore[arg-type]
            route("coder[1]/b", "m", "other"),
            route("coder[2]/c", "m", "third", **OVERLOADED),  # type: ignore[arg-type]
        ),
        Category.MODEL_CAPACITY,
        summary=("Route coder[0]/a (m at provider up) is at capacity", "coder[1]/b answers"),
        advice=("Clients are served meanwhile", "Also failing: coder[2]/c (provider_overloaded)"),
        answered=("coder[1]/b",),
    ),
    "the worst of the primary route's accounts leads": Case(
        (
            route("coder[0]/a1", "m", **CAPACITY),  # type: ignore[arg-type]
            route("coder[0]/a2", "m", status=401, cls=C.AUTH),
            route("coder[1]/b", "m", status=429, cls=C.QUOTA_EXHAUSTED),
        ),
        Category.AUTH,
        summary=("The key of coder[0]/a2",),
        advice=("Also failing: coder[0]/a1 (model_capacity), coder[1]/b (quota)",),
    ),
    "the primary answers: the most severe later failure leads": Case(
        (
            route("coder[0]/a", "m"),
            route("coder[1]/b", "m", **CAPACITY),  # type: ignore[arg-type]
            route("coder[2]/c", "m", status=401, cls=C.AUTH),
        ),
        Category.AUTH,
        summary=("The key of coder[2]/c",),
        advice=("Also failing: coder[1]/b (model_capacity)",),
        answered=("coder[0]/a",),
    ),
    "the primary answers, a later route at capacity": Case(
        (route("coder[0]/a", "m"), route("coder[1]/b", "m", **CAPACITY)),  # type: ignore[arg-type]
        Category.MODEL_CAPACITY,
        summary=("Route coder[1]/b", "the primary route coder[0]/a answers, so clients are served"),
        answered=("coder[0]/a",),
    ),
    "overloaded provider, a route on another provider answers: failover works": Case(
        (
            route("coder[0]/a", "m", "anthropic", **OVERLOADED),  # type: ignore[arg-type]
            route("coder[1]/b", "m", "openai"),
        ),
        Category.PROVIDER_OVERLOADED,
        summary=("Provider anthropic is overloaded", "coder[1]/b answers, so Spillgate fails over to it"),
        advice=("Failover to another provider works: coder[1]/b answers",),
        answered=("coder[1]/b",),
    ),
    "overloaded provider, only a route on the same provider answers: add one elsewhere": Case(
        (
            route("coder[0]/a", "m", "anthropic", **OVERLOADED),  # type: ignore[arg-type]
            route("coder[1]/b", "m2", "anthropic"),
        ),
        Category.PROVIDER_OVERLOADED,
        advice=("Add a route on another provider",),
        answered=("coder[1]/b",),
    ),
    "overloaded provider, nothing answers: add a route elsewhere": Case(
        (
            route("coder[0]/a", "m", "anthropic", **OVERLOADED),  # type: ignore[arg-type]
            route("coder[1]/b", "m", "openai", **OVERLOADED),  # type: ignore[arg-type]
        ),
        Category.PROVIDER_OVERLOADED,
        summary=("no route of coder answers",),
        advice=("Add a route on another provider",),
    ),
    "all routes answer": Case(
        (route("coder[0]/a", "m"), route("coder[1]/b", "m")),
        Category.OK,
        summary=("Every route of coder answers (2 probed)",),
        answered=("coder[0]/a", "coder[1]/b"),
    ),
}


@pytest.mark.parametrize("case", ALIAS_CASES.values(), ids=ALIAS_CASES.keys())
def test_alias_diagnosis(case: Case) -> None:
    d = diagnose(case.results, alias="coder")
    assert d.category is case.category, d.summary
    for part in case.summary:
        assert part in d.summary, (part, d.summary)
    for part in case.advice:
        assert any(part in line for line in d.advice), (part, d.advice)
    evidence = "\n".join(d.evidence)
    for part in case.evidence:
        assert part in evidence, (part, evidence)
    assert d.answered == case.answered
    every = "\n".join(d.advice)
    if "Failover to another provider works" in every:
        assert "Add a route on another provider" not in every, d.advice


@pytest.mark.parametrize(
    ("probe", "category"),
    [
        (ok(), Category.OK),
        (result(status=503, cls=C.CAPACITY), Category.MODEL_CAPACITY),
        (result(status=503, cls=C.CAPACITY, body=BodyKind.HTML), Category.PROXY_OR_ROUTE_OVERLOAD),
        (result(status=503, cls=C.CAPACITY, body=BodyKind.TEXT), Category.PROXY_OR_ROUTE_OVERLOAD),
        (result(status=200, cls=C.CAPACITY, body=BodyKind.SSE, in_stream=True), Category.MODEL_CAPACITY),
        (result(status=429, cls=C.RATE_LIMITED, body=BodyKind.HTML), Category.RATE_LIMITED),
        (result(status=401, cls=C.AUTH, body=BodyKind.HTML), Category.AUTH),
        (result(status=529, cls=C.OVERLOADED), Category.PROVIDER_OVERLOADED),
        (result(status=500, cls=C.UPSTREAM_ERROR), Category.UPSTREAM_ERROR),
        (result(status=None, cls=C.RESET, transport=Transport.RESET), Category.NETWORK),
        (result(status=200, cls=C.STREAM_CUT, transport=Transport.RESET), Category.UPSTREAM_ERROR),
        (result(status=400, cls=C.CONTEXT_TOO_LONG), Category.BAD_REQUEST),
        (result(status=400, cls=C.CONTENT_POLICY), Category.BAD_REQUEST),
        (result(status=404, cls=C.NOT_FOUND), Category.MODEL_NOT_FOUND),
    ],
)
def test_category_of_one_result(probe: ProbeResult, category: Category) -> None:
    assert category_of(probe) is category


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 s"),
        (1, "1 s"),
        (1.5, "2 s"),
        (89, "89 s"),
        (90, "2 min"),
        (3600, "60 min"),
        (7200, "2 h"),
        (12_000, "3 h 20 min"),
    ],
)
def test_format_wait(seconds: float, text: str) -> None:
    assert format_wait(seconds) == text


def test_nothing_probed_is_not_ok() -> None:
    assert diagnose([]).category is Category.UNKNOWN
