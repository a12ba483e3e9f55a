"""What a verdict means in words: a one-line summary and concrete next steps (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spillgate.config.durations import format_wait
from spillgate.config.schema import Cooldowns
from spillgate.doctor.types import Category, ProbeResult
from spillgate.protocols.apis import Api, config_name
from spillgate.resilience.types import ErrorClass, Transport

_COOLDOWNS = Cooldowns()
"""The default cooldowns, as the advice quotes them."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the advice speaks of, gathered from the probe results by the diagnosis."""

    reference: ProbeResult
    """The deciding failure, or (nothing failed) the model's first answer."""
    primary: ProbeResult | None = None
    """The deciding failure; ``None`` when everything answered."""
    model: str = ""
    host: str = ""
    key_hint: str | None = None
    answered: tuple[str, ...] = ()
    """Other models (base URL) or routes (alias) that answered."""
    failing_others: tuple[str, ...] = ()
    """Other models (base URL) or routes (alias) that failed."""
    listed: tuple[str, ...] = ()
    via_spillgate: bool = False
    recovered_after: float | None = None
    """A rate-limited model answered again after this many seconds."""
    intermittent: bool = False
    """The same model also answered once: the failure comes and goes."""
    in_stream: bool = False
    """A failure came inside a 200 stream (``response.failed``, ``event: error``)."""
    stream_only: bool = False
    """Plain requests answer; only streamed ones fail."""
    alias: str | None = None
    route: str = ""
    provider: str = ""
    answered_elsewhere: tuple[str, ...] = ()
    """Routes (alias) on another provider than the deciding failure's that answered."""
    also_failing: tuple[str, ...] = ()
    """Routes (alias) that failed besides the deciding one, each with its category."""
    primary_answers: bool = False
    """The alias's primary route (the first in its order) answered: a later route decides."""
    api_check: ProbeResult | None = None
    """A local server: the model on its other OpenAI API (Chat <-> Responses)."""
    apis: tuple[Api, ...] = ()
    """A local server: the APIs the model answered on, for its provider's ``apis:``."""


def explain(category: Category, facts: Facts) -> tuple[str, tuple[str, ...]]:
    """The summary line and the advice lines for ``category``."""
    summary, advice = _EXPLAIN[category](facts, facts.primary or facts.reference)
    if facts.alias is not None and facts.also_failing:
        advice.append(f"Also failing: {', '.join(facts.also_failing)} (see the evidence above).")
    declare = declare_apis(facts)
    if declare is not None and category is Category.OK:  # what a working local server needs first
        advice.insert(0, declare)
    elif declare is not None:  # after the fix for what failed
        advice.append(declare)
    return summary, tuple(advice)


def declare_apis(f: Facts) -> str | None:
    """For a local server: the ``apis:`` its provider declares, from the APIs the model answered on
    (``None`` when its other OpenAI API was not checked)."""
    check = f.api_check
    if check is None or not f.apis:
        return None
    words = ", ".join(config_name(api) for api in f.apis)
    served = " and ".join(api.title for api in f.apis)
    line = f"Declare `apis: [{words}]` on this server's provider in the gateway's config: it serves {served}"
    if check.ok:
        return f"{line}, so clients of {'both' if len(f.apis) > 1 else 'it'} reach it untranslated."
    path = check.probe.shown_path
    if check.status in (404, 405):
        return (
            f"{line}, and POST {path} answers {check.status} (not served). A route to it still serves "
            "every client API: Spillgate translates Responses and Messages requests (Codex CLI, Claude "
            f"Code) to {served}, unless the route says `translate: false`."
        )
    return f"{line}; POST {path} failed ({_said(check)}), so leave {config_name(check.probe.api)} out."


# -- helpers ---------------------------------------------------------------------------------------


def _subject(f: Facts) -> str:
    if f.alias is not None:
        return f"route {f.route} ({f.model} at provider {f.provider})"
    return f"{f.model} at {f.host}"


def _said(r: ProbeResult) -> str:
    """``503 server_is_overloaded: "Selected model is at capacity…"`` or the transport failure."""
    head = str(r.status) if r.status is not None else (r.transport.value if r.transport else "failed")
    code = r.error_code or r.error_type
    if code:
        head += f" {code}"
    message = r.message if len(r.message) <= 200 else r.message[:199] + "…"
    return f'{head}: "{message}"' if message else head


def _wait_source(r: ProbeResult) -> str:
    for name in ("retry-after-ms", "retry-after"):
        if r.header(name) is not None:
            return f"its {name} header"
    for name, _ in r.headers:
        if name.endswith("reset") or name.startswith("x-ratelimit-reset"):
            return f"its {name} header"
    return "the error message"


def _routes_served(f: Facts) -> str:
    if not f.answered:
        return f"; no route of {f.alias} answers"
    one = len(f.answered) == 1
    verb = "answers" if one else "answer"
    if f.primary_answers:
        return f"; the primary route {f.answered[0]} answers, so clients are served"
    return f"; {', '.join(f.answered)} {verb}, so Spillgate fails over to {'it' if one else 'them'}"


def _other_provider(f: Facts) -> str:
    """Add a route on another provider, unless (alias) one there already answers: then failover works."""
    if f.alias is not None and f.answered_elsewhere:
        one = len(f.answered_elsewhere) == 1
        return (
            f"Failover to another provider works: {', '.join(f.answered_elsewhere)} "
            f"{'answers' if one else 'answer'}, so Spillgate serves {f.alias} from "
            f"{'it' if one else 'them'} while {f.provider} is unavailable."
        )
    return "Add a route on another provider: Spillgate fails over to it while this one is overloaded."


def _spillgate_routes(f: Facts) -> str:
    return (
        "Spillgate answered for its routes (the message says what it tried): run "
        f"`spillgate doctor --alias {f.model}` where the gateway runs to probe each route on its own."
    )


# -- one function per category ------------------------------------------------------------------

Explained = tuple[str, list[str]]


def _ok(f: Facts, r: ProbeResult) -> Explained:
    if f.alias is not None:
        return (
            f"Every route of {f.alias} answers ({len(f.answered)} probed).",
            [
                "Nothing is wrong with the routes now. If clients still fail, probe the gateway itself: "
                f"spillgate doctor --base-url http://HOST:PORT --api-key-env VAR --model {f.alias}",
            ],
        )
    route = r.header("x-spillgate-route")
    through = f" through Spillgate route {route}" if route else ""
    return (
        f"{f.model} at {f.host} answers{through}.",
        [
            "Nothing is wrong here right now: the failure your agent saw has passed, or the agent uses a "
            "different base URL, key or model name than this check; compare them.",
        ],
    )


def _network(f: Facts, r: ProbeResult) -> Explained:
    where = f"provider {f.provider} ({f.host})" if f.alias is not None else f.host
    if r.transport is Transport.CONNECT_TIMEOUT:
        why = (
            "The connection attempt got no answer: a wrong host or port, a firewall or VPN dropping "
            "packets, or the server is down."
        )
    elif r.transport is Transport.RESET:
        why = (
            "The connection was cut before any answer: a proxy or firewall in between, or http:// used "
            "for an https:// endpoint (or the reverse)."
        )
    else:
        why = (
            "Nothing accepted the connection: check the host and port of the base URL, that the host "
            "name resolves, and that the server is running (for Spillgate: `spillgate serve`)."
        )
    return (
        f"Cannot reach {where}: {r.message}",
        [why, "This is not a capacity problem: no request reached the API."],
    )


def _auth(f: Facts, r: ProbeResult) -> Explained:
    advice: list[str] = []
    if f.alias is not None:
        summary = (
            f"The key of {f.route} ({f.key_hint or 'none'}) is rejected by provider {f.provider}: {_said(r)}"
        )
        advice.append(
            f"Fix the api_key of {f.route.partition('/')[2] or 'the provider'} in the config. Spillgate "
            "sets an account whose key is rejected aside (never retried) until it is fixed."
        )
    elif r.header("x-spillgate-error-class") == "auth":
        # Spillgate accepted the client's key; its upstreams refused the gateway's own credentials.
        summary = (
            f"Spillgate at {f.host} accepted the key, but its upstream rejected the gateway's "
            f"credentials: {_said(r)}"
        )
        advice.append(
            f"An operator must fix the account keys of model {f.model} in the gateway's config "
            f"(`spillgate doctor --alias {f.model}` where the gateway runs shows which). "
            "Your own key is fine."
        )
    else:
        summary = f"The key {f.key_hint or '(none sent)'} is rejected by {f.host}: {_said(r)}"
        if f.key_hint is None:
            advice.append("No key was sent: pass --api-key KEY or --api-key-env VAR.")
        advice.append(
            "Check the key: current (not revoked or expired), complete, and issued for this endpoint. An "
            "OpenAI key does not work on Anthropic's API or on a proxy with keys of its own, and a "
            "Spillgate client key works only on Spillgate (listed in client_keys: `spillgate keys hash KEY`)."
        )
    if r.status == 403:
        advice.append("403: the key is known but not allowed this model, organisation or region.")
    return summary, advice


def _quota(f: Facts, r: ProbeResult) -> Explained:
    until = f" until it resets in about {format_wait(r.retry_after)}" if r.retry_after else ""
    who = (
        f"the account of {f.route}" if f.alias is not None else f"the account behind {f.key_hint or 'no key'}"
    )
    return (
        f"{who[0].upper()}{who[1:]} is out of quota at {f.host}{until}: {_said(r)}",
        [
            f"The quota is used up{until or ' until the billing period resets or credits are added'}: "
            "retrying sooner will not help.",
            "Add credits or raise the limit in the provider's console, or use another account's key.",
            "With Spillgate: put another account in the route's pool (accounts: [a, b]); an account out of "
            "quota is set aside until its reset and the others serve meanwhile.",
        ],
    )


def _rate_limited(f: Facts, r: ProbeResult) -> Explained:
    wait = r.retry_after
    announced = f"retry after {format_wait(wait)}" if wait is not None else "no wait announced"
    advice: list[str] = []
    if wait is not None:
        advice.append(f"Retry after {format_wait(wait)} (from {_wait_source(r)}).")
    else:
        advice.append(
            "No wait was announced: back off and retry (a few seconds, doubling). Codex CLI gives up at "
            "once on a 429 without Retry-After; Spillgate adds one and tries other accounts first."
        )
    if f.recovered_after is not None:
        advice.append(
            f"After waiting {format_wait(f.recovered_after)} it answered again: the limit is short-lived, "
            "and clients that honour Retry-After get through."
        )
    advice.append(
        "If it keeps happening: fewer parallel requests, a higher usage tier, or more accounts (with "
        "Spillgate, a pool accounts: [a, b] on the route spreads the load)."
    )
    return f"{_subject(f)} is rate limited ({r.status}, {announced}).", advice


def _model_capacity(f: Facts, r: ProbeResult) -> Explained:
    advice: list[str] = []
    if f.alias is not None:
        summary = f"Route {f.route} ({f.model} at provider {f.provider}) is at capacity{_routes_served(f)}."
        if f.answered:
            advice.append(
                "Clients are served meanwhile: Spillgate cools the route down "
                f"({_COOLDOWNS.capacity:g} s, doubling up to {_COOLDOWNS.capacity_max:g} s by default) "
                "and sends requests to the next route."
            )
            advice.append(
                f"If it persists, give {f.route} a lower priority or add another account to its pool."
            )
        else:
            advice.append(
                f"Add a route on another provider or model to {f.alias}; until one answers, clients get "
                "503 with Retry-After."
            )
        return summary, advice
    others = f"; other models answer: {', '.join(f.answered)}" if f.answered else ""
    sometimes = " (one of its requests got through: the shortage comes and goes)" if f.intermittent else ""
    streams = " for streamed requests (plain ones answer)" if f.stream_only else ""
    summary = f"{f.model} is at capacity{streams} at {f.host}{others}{sometimes}."
    if f.in_stream:
        advice.append(
            "The failure arrives inside a 200 stream (Codex reports it as 'Selected model is at capacity')."
        )
    example = f" (e.g. {f.answered[0]})" if f.answered else ""
    advice.append(
        f"Switch to another model for now{example}, or retry in a few minutes: one model's capacity "
        "shortage usually passes within minutes."
    )
    if f.via_spillgate:
        advice.append(
            "Every route Spillgate has for this model failed: add a route on another provider or model. "
            + _spillgate_routes(f)
        )
    else:
        advice.append(
            "Spillgate can fail over for you: serve this model name over two routes (another account, "
            "model or provider) and the agent keeps working while one is at capacity."
        )
    return summary, advice


def _provider_overloaded(f: Facts, r: ProbeResult) -> Explained:
    wait = f" after {format_wait(r.retry_after)}" if r.retry_after is not None else " later"
    if f.alias is not None:
        summary = f"Provider {f.provider} is overloaded for {f.model} (route {f.route}){_routes_served(f)}."
    elif f.via_spillgate and f.failing_others:
        summary = (
            f"Spillgate at {f.host} cannot serve {f.model} nor the other models probed "
            f"({', '.join(f.failing_others)}): their routes are all unavailable now."
        )
    elif f.failing_others:
        summary = (
            f"{f.host} is overloaded: {f.model} and the other models probed "
            f"({', '.join(f.failing_others)}) all fail."
        )
    else:
        summary = f"{f.host} says it is overloaded: {_said(r)}"
    advice = [
        f"Wait and retry{wait}: the provider as a whole is short of capacity, so switching models there "
        "will not help.",
        _other_provider(f),
    ]
    if f.via_spillgate:
        advice.append(_spillgate_routes(f))
    return summary, advice


def _proxy(f: Facts, r: ProbeResult) -> Explained:
    server = r.header("server") or r.header("via")
    by = f" from {server}" if server else ""
    kind = r.body_kind.value
    body = "no body" if kind == "empty" else f"an {kind} page" if kind == "html" else f"a {kind} body"
    where = f"provider {f.provider} ({f.host})" if f.alias is not None else f.host
    return (
        f"A proxy in front of the API fails at {where}: {r.status} with {body}{by}, not an API error.",
        [
            f"The API itself was probably never reached: the {r.status} comes from something in between "
            "(a reverse proxy, load balancer or CDN).",
            "Check that proxy's status and logs, or point the base URL at the API directly to compare.",
            "If the proxy is yours (nginx, an account-pool proxy), its own upstream is down or overloaded, "
            "or it has too few workers or connections for the load.",
        ],
    )


def _model_not_found(f: Facts, r: ProbeResult) -> Explained:
    if f.alias is not None:
        return (
            f"Provider {f.provider} does not know {f.model} (route {f.route}): {_said(r)}",
            [f"Fix the model of {f.route.partition('/')[0]} in the config: the provider does not serve it."],
        )
    if f.model in f.listed:
        hint = (
            "It is in the endpoint's model list, yet the request got 404: check the base URL's path and "
            "--protocol (it may serve the model on another API)."
        )
    elif f.listed:
        shown = ", ".join(f.listed[:12]) + (f" (+{len(f.listed) - 12} more)" if len(f.listed) > 12 else "")
        hint = f"Check the name. The endpoint lists: {shown}."
    else:
        hint = "Check the name (the endpoint's model list was not available)."
    return f"{f.host} does not know the model {f.model}: {_said(r)}", [hint]


def _bad_request(f: Facts, r: ProbeResult) -> Explained:
    return (
        f"{_subject(f)} rejects a minimal request: {_said(r)}",
        [
            "The endpoint may speak another API: try --protocol openai-chat, openai-responses or anthropic.",
            "Otherwise the model wants parameters this probe does not send: its message says which.",
        ],
    )


def _upstream_error(f: Facts, r: ProbeResult) -> Explained:
    advice: list[str] = []
    if r.status is not None and r.header("x-should-retry") == "false":
        advice.append("The server says retrying will not help: its message says why.")
    elif r.error_class is ErrorClass.TIMEOUT:
        advice.append(
            "No answer within the probe's timeout: the model is overloaded or the request is stuck. Retry, "
            "or raise --timeout to see whether it answers at all."
        )
    elif r.error_class in (ErrorClass.STREAM_CUT, ErrorClass.STREAM_STALL, ErrorClass.STREAM_MALFORMED):
        advice.append(
            "The answer broke before any content: retry; Spillgate replays such failures on another route."
        )
    else:
        request_id = r.header("x-request-id") or r.header("request-id")
        ident = f" (request id {request_id})" if request_id else ""
        advice.append(
            "A server error, not a capacity signal: retry shortly; if it persists, report it to the "
            f"provider{ident}."
        )
    if f.alias is None and f.answered:
        advice.append(f"Other models answer ({', '.join(f.answered)}): switch for now.")
    if f.via_spillgate:
        advice.append(_spillgate_routes(f))
    else:
        advice.append("Spillgate retries such a failure once on the same route, then fails over to the next.")
    extra = _routes_served(f) if f.alias is not None else ""
    return f"{_subject(f)} fails: {_said(r)}{extra}", advice


def _unknown(f: Facts, r: ProbeResult) -> Explained:
    return (
        f"{_subject(f)}: an unrecognised failure: {_said(r)}",
        ["See the evidence above; --json prints every field of every probe."],
    )


_EXPLAIN: dict[Category, Callable[[Facts, ProbeResult], Explained]] = {
    Category.OK: _ok,
    Category.NETWORK: _network,
    Category.AUTH: _auth,
    Category.QUOTA: _quota,
    Category.RATE_LIMITED: _rate_limited,
    Category.MODEL_CAPACITY: _model_capacity,
    Category.PROVIDER_OVERLOADED: _provider_overloaded,
    Category.PROXY_OR_ROUTE_OVERLOAD: _proxy,
    Category.MODEL_NOT_FOUND: _model_not_found,
    Category.BAD_REQUEST: _bad_request,
    Category.UPSTREAM_ERROR: _upstream_error,
    Category.UNKNOWN: _unknown,
}
