"""Probe results -> a :class:`Diagnosis` (pure): one verdict, the evidence, and what to do next.

The classifier already said what each failure is (:attr:`ProbeResult.error_class`); this module
only decides *where* the trouble is, from how the probes compare:

- one failure maps to a :class:`Category` (:func:`category_of`): a 5xx whose body is not an
  API's JSON (an HTML page, text, nothing) is the proxy in between, not the API;
- for a base URL the deciding failure is the most severe one among the asked-about model's
  probes; a model that is unavailable while other models answer is that model's capacity, and
  unavailable everywhere is the provider's overload;
- for an alias, each route is judged on its own and the report leads with the primary route (the
  first in the alias's order) when it fails, else with the most severe failing later route; the
  other failures are named after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spillgate.config.durations import format_wait
from spillgate.doctor.advice import Facts, explain
from spillgate.doctor.plan import kept_api, path_missing
from spillgate.doctor.types import UNAVAILABLE, BodyKind, Category, ProbeResult, Role
from spillgate.protocols.apis import Api, config_name
from spillgate.resilience.types import ErrorClass
from spillgate.textutil import plural

SEVERITY: tuple[Category, ...] = (
    Category.NETWORK,
    Category.AUTH,
    Category.QUOTA,
    Category.MODEL_NOT_FOUND,
    Category.BAD_REQUEST,
    Category.RATE_LIMITED,
    Category.PROXY_OR_ROUTE_OVERLOAD,
    Category.PROVIDER_OVERLOADED,
    Category.MODEL_CAPACITY,
    Category.UPSTREAM_ERROR,
    Category.UNKNOWN,
)
"""When several probes fail differently, the first of these decides: what blocks everything
(no connection, a rejected key) explains the rest."""
_RANK = {c: i for i, c in enumerate(SEVERITY)}

_BY_CLASS: dict[ErrorClass, Category] = {
    ErrorClass.CONNECT_FAILED: Category.NETWORK,
    ErrorClass.AUTH: Category.AUTH,
    ErrorClass.QUOTA_EXHAUSTED: Category.QUOTA,
    ErrorClass.RATE_LIMITED: Category.RATE_LIMITED,
    ErrorClass.NOT_FOUND: Category.MODEL_NOT_FOUND,
    ErrorClass.BAD_REQUEST: Category.BAD_REQUEST,
    ErrorClass.CONTEXT_TOO_LONG: Category.BAD_REQUEST,
    ErrorClass.CONTENT_POLICY: Category.BAD_REQUEST,
    ErrorClass.CAPACITY: Category.MODEL_CAPACITY,
    ErrorClass.OVERLOADED: Category.PROVIDER_OVERLOADED,
    ErrorClass.UPSTREAM_ERROR: Category.UPSTREAM_ERROR,
    ErrorClass.TIMEOUT: Category.UPSTREAM_ERROR,
    ErrorClass.RESET: Category.UPSTREAM_ERROR,
    ErrorClass.STREAM_CUT: Category.UPSTREAM_ERROR,
    ErrorClass.STREAM_STALL: Category.UPSTREAM_ERROR,
    ErrorClass.STREAM_MALFORMED: Category.UPSTREAM_ERROR,
}
_NOT_AN_API = frozenset({BodyKind.HTML, BodyKind.TEXT, BodyKind.EMPTY})
_SCOPED = frozenset({Category.MODEL_CAPACITY, Category.PROVIDER_OVERLOADED})


@dataclass(frozen=True, slots=True)
class Diagnosis:
    category: Category
    summary: str
    """One line: what is wrong (or that nothing is)."""
    evidence: tuple[str, ...]
    """What each probe saw, one line each, then what the comparison showed."""
    advice: tuple[str, ...]
    """What to do next, most useful first."""
    retry_after: float | None = None
    """Seconds the deciding answer asked to wait, if it did."""
    answered: tuple[str, ...] = ()
    """Other models (base URL) or routes (alias) that answered."""
    via_spillgate: bool = False

    @property
    def ok(self) -> bool:
        return self.category is Category.OK


def category_of(result: ProbeResult) -> Category:
    """What one probe's outcome says on its own."""
    cls = result.error_class
    if cls is None:
        return Category.OK
    if cls is ErrorClass.RESET and result.status is None:
        return Category.NETWORK  # reset before any answer: nothing got through
    status = result.status
    if result.header("x-spillgate-error-class") is not None:
        return _BY_CLASS.get(cls, Category.UNKNOWN)  # Spillgate named the upstreams' failure class
    if (
        status is not None
        and status >= 500
        and result.transport is None
        and not result.in_stream
        and result.body_kind in _NOT_AN_API
    ):
        return Category.PROXY_OR_ROUTE_OVERLOAD  # a proxy's page or a bare status, not the API's JSON
    if status is not None and status >= 500 and result.header("x-should-retry") == "false":
        return Category.UPSTREAM_ERROR  # the server itself says waiting will not help: not capacity
    return _BY_CLASS.get(cls, Category.UNKNOWN)


def most_severe(results: Sequence[ProbeResult]) -> ProbeResult | None:
    """The failure that decides (the first of the most severe category), or ``None`` if all answered."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    return min(failed, key=lambda r: _RANK[category_of(r)])  # min keeps the first of equals


def diagnose(results: Sequence[ProbeResult], *, alias: str | None = None) -> Diagnosis:
    """The verdict on a base URL's probes, or (``alias`` given) on an alias's route probes."""
    if not results:
        return Diagnosis(Category.UNKNOWN, "Nothing was probed.", (), ("Check the command's arguments.",))
    evidence = [describe_result(r) for r in results]
    via = any(r.via_spillgate for r in results)
    if alias is not None:
        category, facts = _alias_facts(results, alias, via)
        if category is not Category.OK:
            evidence.append(
                f"routes answering: {', '.join(facts.answered) or 'none'}; "
                f"failing: {', '.join(facts.failing_others)}"
            )
    else:
        category, facts, notes = _url_facts(results, via)
        evidence.extend(notes)
    summary, advice = explain(category, facts)
    retry = facts.primary.retry_after if facts.primary is not None else None
    return Diagnosis(category, summary, tuple(evidence), advice, retry, facts.answered, via)


def _url_facts(results: Sequence[ProbeResult], via: bool) -> tuple[Category, Facts, list[str]]:
    api = kept_api(results)
    notes: list[str] = []
    main = [r for r in results if r.probe.role in (Role.MODEL, Role.RETRY) and r.probe.api is api]
    dropped = [r for r in results if r.probe.role is Role.MODEL and r.probe.api is not api]
    for r in dropped:
        notes.append(f"{r.probe.shown_path} is not served there ({r.status}); {api.title if api else '?'} is")
    first = main[0] if main else results[0]
    listing = next((r for r in results if r.probe.role is Role.LIST and r.ok), None)
    others = [r for r in results if r.probe.role is Role.OTHER]
    answered = tuple(r.probe.model for r in others if r.ok)
    down = tuple(r.probe.model for r in others if r.error_class in UNAVAILABLE)
    primary = most_severe(main)
    category = Category.OK if primary is None else category_of(primary)
    if category in _SCOPED:
        if answered:
            category = Category.MODEL_CAPACITY
            notes.append(
                f"other models answer: {', '.join(answered)} -> only {first.probe.model} is affected"
            )
        elif down:
            category = Category.PROVIDER_OVERLOADED
            notes.append(f"other models fail too: {', '.join(down)} -> the whole endpoint is affected")
    elif category is Category.UPSTREAM_ERROR and (answered or down):
        scope = "other models answer" if answered else "other models fail too"
        notes.append(f"{scope}: {', '.join(answered or down)}")
    retried = next((r for r in main if r.probe.role is Role.RETRY), None)
    recovered = retried.probe.wait_before if retried is not None and retried.ok else None
    if retried is not None:
        outcome = "answered" if retried.ok else "was still refused"
        notes.append(f"after waiting {format_wait(retried.probe.wait_before)} the model {outcome}")
    api_check = next((r for r in results if r.probe.role is Role.API), None)
    apis = served_apis(main, api_check)
    if api_check is not None and apis:
        notes.append(_apis_note(apis, api_check))
    facts = Facts(
        primary=primary,
        model=first.probe.model,
        host=first.probe.endpoint.host,
        key_hint=first.probe.endpoint.key_hint,
        answered=answered,
        failing_others=down,
        listed=listing.models if listing is not None else (),
        via_spillgate=via,
        recovered_after=recovered,
        intermittent=_intermittent(primary, main),
        stream_only=primary is not None
        and primary.probe.stream
        and any(r.ok and not r.probe.stream for r in main),
        in_stream=any(r.in_stream for r in main),
        reference=primary or first,
        api_check=api_check,
        apis=apis,
    )
    return category, facts, notes


def served_apis(main: Sequence[ProbeResult], api_check: ProbeResult | None) -> tuple[Api, ...]:
    """The APIs a local server answered the model on, in the config's order (``chat`` first):
    the one the model was probed on when its plain request answered, and the other OpenAI API
    when its check answered. Empty without a check (not a local server, or the model failed)."""
    if api_check is None:
        return ()
    answered = {r.probe.api for r in main if r.ok and not r.probe.stream and r.probe.role is Role.MODEL}
    if api_check.ok:
        answered.add(api_check.probe.api)
    return tuple(api for api in Api if api in answered)


def _apis_note(apis: tuple[Api, ...], check: ProbeResult) -> str:
    listed = ", ".join(config_name(api) for api in apis)
    if check.ok:
        return f"APIs answering: {listed} -> apis: [{listed}]"
    how = "not served" if path_missing(check) else "failed"
    return f"APIs answering: {listed}; {check.probe.shown_path} {how} ({check.status}) -> apis: [{listed}]"


def _intermittent(primary: ProbeResult | None, main: Sequence[ProbeResult]) -> bool:
    """The model failed once and answered once, in the same way (a failing stream next to a plain
    request that answers is the stream's trouble, not an intermittent one)."""
    if primary is None:
        return False
    return any(r.ok and (r.probe.stream == primary.probe.stream or not primary.probe.stream) for r in main)


def _route_of(result: ProbeResult) -> str:
    """The route a probe's label names: ``coder[0]`` of ``coder[0]/oa-1``."""
    return result.probe.endpoint.label.partition("/")[0]


def deciding_route_failure(results: Sequence[ProbeResult]) -> ProbeResult | None:
    """The failure an alias's report leads with: the primary route's (the first in the alias's
    order; the most severe of its accounts' failures), else the most severe of the later routes'."""
    if not results:
        return None
    primary = _route_of(results[0])
    return most_severe([r for r in results if _route_of(r) == primary]) or most_severe(results)


def _alias_facts(results: Sequence[ProbeResult], alias: str, via: bool) -> tuple[Category, Facts]:
    primary = deciding_route_failure(results)
    category = Category.OK if primary is None else category_of(primary)
    answered = tuple(r.probe.endpoint.label for r in results if r.ok)
    down = tuple(r.probe.endpoint.label for r in results if not r.ok)
    reference = primary or results[0]
    provider = reference.probe.endpoint.provider.name
    elsewhere = tuple(
        r.probe.endpoint.label for r in results if r.ok and r.probe.endpoint.provider.name != provider
    )
    also = tuple(
        f"{r.probe.endpoint.label} ({category_of(r).value})" for r in results if not r.ok and r is not primary
    )
    facts = Facts(
        primary=primary,
        model=reference.probe.model,
        host=reference.probe.endpoint.host,
        key_hint=reference.probe.endpoint.key_hint,
        answered=answered,
        failing_others=down,
        via_spillgate=via,
        alias=alias,
        route=reference.probe.endpoint.label,
        provider=provider,
        reference=reference,
        answered_elsewhere=elsewhere,
        also_failing=also,
        primary_answers=results[0].ok,
    )
    return category, facts


# -- evidence -----------------------------------------------------------------------------------

_SHOWN_HEADERS = (
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-spillgate-route",
    "x-spillgate-attempts",
    "x-spillgate-error-class",
    "server",
    "via",
    "cf-ray",
)


def describe_result(r: ProbeResult) -> str:
    """One evidence line: what was sent, what came back, how long it took, the headers that matter."""
    took = f"({_ms(r.latency)})"
    if r.ok:
        if r.probe.role is Role.LIST:
            outcome = f"{r.status}, {plural(len(r.models), 'model')} listed"
        elif r.first_content is not None:
            outcome = f"{r.status} OK, first content after {_ms(r.first_content)}"
            took = ""
        else:
            outcome = f"{r.status} OK"
    else:
        cls = r.error_class.value if r.error_class is not None else "?"
        head = f"{r.status} {cls}" if r.status is not None else cls
        if r.in_stream:
            head += " (in the stream)"
        if r.status is not None and r.body_kind in _NOT_AN_API:
            head += f", {r.body_kind.value} body"
        code = r.error_code or r.error_type
        outcome = head + (f" [{code}]" if code else "") + (f': "{_clip(r.message)}"' if r.message else "")
    shown = [f"{name}: {value}" for name, value in r.headers if _shown(name)]
    extra = f" {{{', '.join(shown)}}}" if shown else ""
    return f"{r.probe.describe()} -> {outcome}{' ' + took if took else ''}{extra}"


def _shown(name: str) -> bool:
    return name in _SHOWN_HEADERS or (name.endswith("reset") or "-reset-" in name) or "remaining" in name


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
