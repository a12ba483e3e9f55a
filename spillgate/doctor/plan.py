"""Which probe comes next (pure): the plan is rebuilt from the results so far, as far as they decide it.

For a base URL, in this order, at most :data:`~spillgate.doctor.target.MAX_PROBES` in all:

1. the model, not streamed, on the first candidate API; with ``--protocol auto`` a 404/405 there
   tries the other API once, and the one that knows the path is kept;
2. the model streamed (a stream may fail in-stream where a plain request does not), unless the
   first answer already settled it (refused, auth, quota, unknown model, a bad request, a rate
   limit, a timeout);
3. ``GET /v1/models`` (is the key accepted there, which models exist) unless nothing connects;
4. a local server (loopback, private network: see :func:`~spillgate.doctor.target.local_host`)
   whose model answered on Chat or Responses: the model once on the other of the two, to say
   which APIs its provider declares (``apis: [chat]`` or ``apis: [chat, responses]``);
5. when the model is unavailable (capacity, overload, 5xx, resets, stalls): a few other models,
   to tell "this model" from "the whole endpoint";
6. when rate limited: the model once more after the announced wait, if it is short.

For an alias: each route/account once, straight to its provider.
"""

from __future__ import annotations

from collections.abc import Sequence

from spillgate.doctor.target import MAX_PROBES, AliasTarget, UrlTarget, model_family, other_openai_api
from spillgate.doctor.types import UNAVAILABLE, Probe, ProbeResult, Role
from spillgate.protocols.apis import Api
from spillgate.resilience.types import ErrorClass

MAX_OTHERS = 2
"""Other models compared with the one asked about."""
MAX_PAUSE = 3.0
"""The longest announced wait the doctor sits out before trying a rate-limited model again."""
DEFAULT_PAUSE = 1.0
"""The pause before trying a rate-limited model again when it announced no wait."""

_NOT_CHAT = ("embed", "whisper", "tts", "dall-e", "moderation", "image", "audio", "realtime", "transcribe")
"""Listed models that do not chat (an OpenAI listing holds many): never picked for comparison."""
_SETTLED = frozenset(
    {
        ErrorClass.AUTH,
        ErrorClass.QUOTA_EXHAUSTED,
        ErrorClass.NOT_FOUND,
        ErrorClass.BAD_REQUEST,
        ErrorClass.CONTEXT_TOO_LONG,
        ErrorClass.CONTENT_POLICY,
        ErrorClass.RATE_LIMITED,
        ErrorClass.TIMEOUT,
    }
)
"""A first answer of these classes needs no streamed second try."""


def path_missing(result: ProbeResult) -> bool:
    """The endpoint does not know the path (or the method) at all: maybe the other API."""
    return result.status in (404, 405)


def kept_api(results: Sequence[ProbeResult]) -> Api | None:
    """The API the plan went on with: the first one tried, unless it did not know the path and the
    fallback did."""
    plain = [r for r in results if r.probe.role is Role.MODEL and not r.probe.stream]
    if not plain:
        return None
    first = plain[0]
    if len(plain) > 1 and path_missing(first) and not path_missing(plain[1]):
        return plain[1].probe.api
    return first.probe.api


def unavailable(result: ProbeResult) -> bool:
    return result.error_class in UNAVAILABLE


def pick_others(listed: Sequence[str], model: str, api: Api, limit: int = MAX_OTHERS) -> tuple[str, ...]:
    """Up to ``limit`` other chat models from a listing: the model's own family first
    (``gpt-…`` for ``gpt-…``), then models of the API's family, in listing order."""
    family = model.split("-", 1)[0].lower()
    seen: set[str] = set()
    candidates: list[str] = []
    for name in listed:
        lowered = name.lower()
        if name == model or name in seen or not name or any(word in lowered for word in _NOT_CHAT):
            continue
        seen.add(name)
        candidates.append(name)

    def rank(name: str) -> int:
        lowered = name.lower()
        if lowered.split("-", 1)[0] == family:
            return 0
        return 1 if model_family(name) == api.family else 2

    return tuple(sorted(candidates, key=rank)[:limit])  # sorted is stable: listing order within a rank


def rate_limit_pause(result: ProbeResult) -> float | None:
    """Seconds to wait before trying a rate-limited model again, or ``None`` when the wait is too long."""
    wait = DEFAULT_PAUSE if result.retry_after is None else result.retry_after
    return wait if wait <= MAX_PAUSE else None


def next_steps(target: UrlTarget, done: Sequence[ProbeResult]) -> list[Probe]:
    """The probes still to send for a base URL, as far as ``done`` (the results in order) decides."""
    return _planned(target, done)[len(done) :]


def alias_steps(target: AliasTarget, done: Sequence[ProbeResult]) -> list[Probe]:
    """The route probes still to send for an alias (each route/account once, in route order)."""
    planned = [Probe(Role.ROUTE, r.endpoint, r.api, r.model) for r in target.routes]
    return planned[len(done) : MAX_PROBES]


def _planned(t: UrlTarget, done: Sequence[ProbeResult]) -> list[Probe]:
    steps = _build(t, done)
    return steps[:MAX_PROBES]


def _build(t: UrlTarget, done: Sequence[ProbeResult]) -> list[Probe]:
    """Every step, in order. A result not in yet is taken to be an answer: the steps after it are then
    an estimate (for the progress display), but each step's own inclusion depends only on the results
    before it, so the next step to send is always decided by real results."""

    def result(index: int) -> ProbeResult | None:
        return done[index] if index < len(done) else None

    api = t.apis[0]
    steps = [_model(t, api)]
    main = result(0)
    if main is not None and len(t.apis) > 1 and path_missing(main):
        steps.append(_model(t, t.apis[1]))
        switched = result(1)
        if switched is None or not path_missing(switched):
            api, main = t.apis[1], switched
    if main is not None and main.error_class is ErrorClass.CONNECT_FAILED:
        return steps  # nothing listens there: every other probe would say the same
    stream_failed = False
    if main is None or main.error_class not in _SETTLED:
        steps.append(_model(t, api, stream=True))
        streamed = result(len(steps) - 1)
        stream_failed = streamed is not None and unavailable(streamed)
    endpoint = t.endpoint(api)
    steps.append(Probe(Role.LIST, endpoint, api))
    listing = result(len(steps) - 1)
    other_api = other_openai_api(api)
    if t.local and other_api is not None and main is not None and main.ok:  # not in the estimate
        steps.append(Probe(Role.API, t.endpoint(other_api), other_api, t.model))
    if (main is not None and unavailable(main)) or stream_failed:
        if t.compare:
            others = t.compare[:MAX_OTHERS]
        else:
            others = pick_others(listing.models, t.model, api) if listing is not None else ()
        steps.extend(Probe(Role.OTHER, endpoint, api, name) for name in others)
    if main is not None and main.error_class is ErrorClass.RATE_LIMITED:
        pause = rate_limit_pause(main)
        if pause is not None:
            steps.append(Probe(Role.RETRY, endpoint, api, t.model, wait_before=pause))
    return steps


def _model(t: UrlTarget, api: Api, *, stream: bool = False) -> Probe:
    return Probe(Role.MODEL, t.endpoint(api), api, t.model, stream=stream)
