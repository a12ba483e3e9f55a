"""Dispatch one request over its plan: attempt, classify, mark health, go around, within budgets.

Before the commit point (the first byte sent to the client) any failure may be retried or
failed over invisibly; after it, :mod:`spillgate.gateway.streaming` continues, replays or
ends the stream with an in-band error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import secrets
import time
import zlib
from dataclasses import dataclass, field

from spillgate.config.schema import ModelAlias, Route, Settings
from spillgate.http.client import HttpClient
from spillgate.http.server import ResponseWriter
from spillgate.observe.events import AttemptFinished, EventBus, RequestFinished
from spillgate.protocols.errors import ErrorKind, GatewayError, is_error_body, render_error
from spillgate.protocols.request import ParsedRequest, rewrite_model
from spillgate.protocols.usage import Usage, from_usage_object
from spillgate.resilience.backoff import backoff_delay
from spillgate.resilience.budget import RetryBudget
from spillgate.resilience.classify import Classifier
from spillgate.resilience.health import HealthBoard
from spillgate.resilience.outage import OutageBoard
from spillgate.resilience.policy import NOT_OUTAGES, Step, final_error, next_step, no_route_error
from spillgate.resilience.scoping import ScopeEvidence
from spillgate.resilience.types import ErrorClass, Scope, Verdict
from spillgate.routing.plan import order_routes
from spillgate.state.memory import InflightCounter, SessionAffinity

from .answer import outage_key, reported_failure, route_report, stop_message
from .attempt import Attempt
from .call import Outcome, call
from .forward import client_headers, upstream_headers
from .planner import AttemptCache, Candidate, RequestPlan
from .redact import Redactor

log = logging.getLogger("spillgate.dispatch")

_ids = itertools.count(1)
_RUN = secrets.token_hex(4)
"""Request ids are ``sg-<run>-<n>``: unique across restarts, so the usage store can be searched by one."""
MIN_TRY = 1.0
"""A try with less room than this before ``deadline - failover_reserve`` is the last possible one."""


@dataclass(slots=True)
class Exchange:
    """One client request on its way through the gateway."""

    parsed: ParsedRequest
    client_headers: dict[str, str]
    alias: ModelAlias
    routes: tuple[Route, ...]
    writer: ResponseWriter
    extra_headers: list[tuple[str, str]]
    client_key: str | None
    request_id: str = field(default_factory=lambda: f"sg-{_RUN}-{next(_ids)}")
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    failures: list[tuple[Verdict, Outcome]] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)


def estimate_tokens(body: bytes) -> int:
    """A cheap upper-side estimate of a request's prompt size (about 3.5 bytes a token)."""
    return int(len(body) / 3.5) + 1


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        clients: dict[str, HttpClient],
        health: HealthBoard,
        scopes: ScopeEvidence,
        outages: OutageBoard,
        budget: RetryBudget,
        classifier: Classifier,
        inflight: InflightCounter,
        affinity: SessionAffinity,
        events: EventBus,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.health = health
        self.scopes = scopes
        self.outages = outages
        self.budget = budget
        self.classifier = classifier
        self.inflight = inflight
        self.affinity = affinity
        self.events = events
        self.rng = rng or random.Random()
        self._rotation = itertools.count()
        self.malformed_events = 0
        self.redact = Redactor.for_settings(settings)
        self.attempts: AttemptCache = {}
        """The Attempts of this configuration's routes, built once (see the planner)."""
        self.active = 0
        """Client requests being served now."""

    def rotation(self) -> int:
        return next(self._rotation)

    def plan_for(self, ex: Exchange) -> RequestPlan:
        routes = order_routes(ex.routes, self.rng) if len(ex.routes) > 1 else list(ex.routes)
        return RequestPlan(
            settings=self.settings,
            routes=routes,
            requested_model=ex.parsed.model,
            session_key=ex.parsed.session_key,
            estimated_tokens=estimate_tokens(ex.parsed.body),
            health=self.health,
            inflight=self.inflight,
            affinity=self.affinity,
            rotation=self.rotation,
            cache=self.attempts,
        )

    # -- the loop before the commit point ----------------------------------------------
    async def serve(self, ex: Exchange) -> None:
        self.active += 1
        try:
            await self._serve(ex)
        finally:
            self.active -= 1

    async def _serve(self, ex: Exchange) -> None:
        res = self.settings.resilience
        plan = self.plan_for(ex)
        self.budget.record_request(self.active)
        deadline = ex.started + res.deadline
        retried_same: set[tuple[str, str]] = set()
        waited = False
        candidate = plan.next() or plan.least_bad()
        if candidate is None:
            await self._no_route(ex, plan)
            return
        stopped = ""  # why no further attempt was made, when that was not for want of a route
        while candidate is not None:
            if ex.attempts >= res.max_attempts:
                stopped = f"max_attempts ({res.max_attempts}) reached"
                self._release(candidate)
                break
            if ex.attempts > 0 and not self.budget.try_spend():
                stopped = "the gateway's retry budget is spent"
                self._release(candidate)
                break
            kind = self._kind(ex, candidate, retried_same)
            bound = self.try_bound(ex, plan, candidate, deadline)
            outcome = await self.run(ex, candidate, kind, bound=bound)
            if outcome.verdict is None:
                await self.deliver(ex, plan, outcome)
                return
            verdict = outcome.verdict
            step = next_step(verdict.error_class, retried_same=candidate.attempt.identity in retried_same)
            if step is Step.STOP:
                await self._pass_through(ex, outcome, verdict)
                return
            attempt = candidate.attempt
            if step is Step.RETRY_SAME:
                delay = backoff_delay(0, res.backoff_base, res.backoff_cap, self.rng)
                if time.monotonic() + delay < deadline:
                    retried_same.add(attempt.identity)
                    await asyncio.sleep(delay)
                    candidate = Candidate(attempt, forced=True)
                    continue
            if step is Step.LARGER_CONTEXT:
                plan.min_context = max(
                    plan.min_context, attempt.route.context_window or plan.estimated_tokens
                )
                plan.skipped_models.add((attempt.provider.name, attempt.upstream_model))
            plan.tried.add(attempt.identity)
            if verdict.scope is not Scope.REQUEST:
                plan.avoid.add(attempt.key(verdict.scope))
            if time.monotonic() >= deadline:
                stopped = "the deadline passed"
                break
            candidate = plan.next()
            wait = outcome.retry_in
            if (
                not waited
                and verdict.error_class is ErrorClass.RATE_LIMITED
                and wait is not None
                and wait <= res.max_retry_wait
                and time.monotonic() + wait < deadline
                and (candidate is None or candidate.attempt.upstream_model != attempt.upstream_model)
            ):
                # Keep the model the user chose when that costs a short wait: another account of
                # the same model went first (above); a different model only after the wait.
                waited = True
                if candidate is not None:
                    self._release(candidate)
                await asyncio.sleep(wait)
                retried_same.add(attempt.identity)
                candidate = Candidate(attempt, forced=True)
        await self._give_up(ex, plan, stopped)

    def try_bound(
        self, ex: Exchange, plan: RequestPlan, candidate: Candidate, deadline: float
    ) -> float | None:
        """How long this try may wait for response headers and its first token, so that a
        failover can still start within the deadline; ``None`` for the last possible try (it
        keeps its route's whole timeouts)."""
        res = self.settings.resilience
        if ex.attempts + 1 >= res.max_attempts:
            return None
        room = deadline - res.failover_reserve - time.monotonic()
        if room < MIN_TRY or not plan.has_other(candidate.attempt):
            return None
        return min(res.try_timeout, room)

    def _kind(self, ex: Exchange, candidate: Candidate, retried_same: set[tuple[str, str]]) -> str:
        if candidate.probes:
            return "probe"
        if ex.attempts == 0:
            return "attempt"
        if candidate.attempt.identity in retried_same:
            return "retry"
        return "failover"

    def _release(self, candidate: Candidate) -> None:
        for key in candidate.probes:
            self.health.release_probe(key)

    # -- one attempt --------------------------------------------------------------------
    async def run(
        self,
        ex: Exchange,
        candidate: Candidate,
        kind: str,
        body: bytes | None = None,
        bound: float | None = None,
    ) -> Outcome:
        attempt = candidate.attempt
        ex.attempts += 1
        ex.tried.append(attempt.route.label + (f"/{attempt.account.id}" if attempt.account else ""))
        account = attempt.account
        if account is not None:
            self.inflight.acquire(account.id)
        outcome: Outcome | None = None
        try:
            payload = body if body is not None else rewrite_model(ex.parsed, attempt.upstream_model)
            headers = upstream_headers(ex.client_headers, attempt.provider, account)
            client = self.clients[attempt.provider.name]
            outcome = await call(attempt, ex.parsed, payload, headers, client, bound, self.settings.limits)
        finally:
            if outcome is None:  # cancelled: the client went away
                self._release(candidate)
            if account is not None:
                if outcome is not None and outcome.response is not None:
                    # A stream goes on after the commit point: in flight until it ends.
                    outcome.on_close = lambda: self.inflight.release(account.id)
                else:
                    self.inflight.release(account.id)
        self.malformed_events += outcome.malformed
        if outcome.ok:
            if outcome.response is None:
                self.settle_success(outcome)
            else:
                # A stream is healthy when it ends well, not when it starts: until then it
                # keeps its probes, and a break after the commit point still counts.
                outcome.probes = candidate.probes
            if candidate.rebind and candidate.session and account is not None:
                self.affinity.bind(candidate.session, account.id)
        else:
            outcome.verdict = self.judge(outcome, candidate, ex=ex)
            ex.failures.append((outcome.verdict, outcome))
        if log.isEnabledFor(logging.DEBUG):
            _log_attempt(ex, outcome, kind)
        self._emit_attempt(ex, outcome, kind)
        return outcome

    def settle_success(self, outcome: Outcome) -> None:
        attempt = outcome.attempt
        for key in attempt.health_keys():
            self.health.record_success(key)
        self.scopes.record_success(attempt.owner, attempt.provider.name)
        outcome.settled = True

    def settle_abandoned(self, outcome: Outcome) -> None:
        """The client went away mid-stream: no verdict on the upstream; free its probes."""
        if not outcome.settled:
            for key in outcome.probes:
                self.health.release_probe(key)
            outcome.settled = True

    def judge(
        self, outcome: Outcome, candidate: Candidate, trip: bool = False, ex: Exchange | None = None
    ) -> Verdict:
        """Classify a failed outcome and mark the scope it says is unhealthy (``ex``: the request,
        whose client key weighs in when a credential is refused)."""
        assert outcome.signal is not None
        # Where a failure enters: from here on its text goes to health, logs and the client.
        message = self.redact.text(outcome.signal.message)
        if message is not outcome.signal.message:
            outcome.signal = dataclasses.replace(outcome.signal, message=message)
        outcome.body = self.redact.body(outcome.body)
        verdict = self.classifier.classify(outcome.signal)
        attempt = candidate.attempt
        marked: list[str] = []
        outcome.settled = True
        proof: str | None = None
        mark = verdict.count
        if mark and verdict.error_class is ErrorClass.AUTH and verdict.widen:
            # A refused credential is disabled for everyone only on proof that it is the credential.
            client, request_id = (ex.client_key or "", ex.request_id) if ex is not None else ("", "")
            proof = self.scopes.auth_refused(attempt.owner, client, request_id)
            mark = proof is not None
        if mark and verdict.scope is not Scope.REQUEST:
            marking = self.scopes.mark(
                verdict,
                outcome.signal,
                owner=attempt.owner,
                provider=attempt.provider.name,
                model=attempt.upstream_model,
            )
            retry_at = None if outcome.retry_in is None else time.monotonic() + outcome.retry_in
            reason = outcome.signal.message[:200] + (f" ({proof})" if proof else "")
            for i, scope in enumerate(marking.scopes):
                key = attempt.key(scope)
                widened = i > 0
                why = f"{reason} ({marking.why})" if widened else reason
                self.health.record_failure(key, verdict.error_class, retry_at, why, trip=trip or widened)
                marked.append(key)
            if marking.scope is not verdict.scope:
                verdict = dataclasses.replace(verdict, scope=marking.scope)
        for key in candidate.probes:
            if key not in marked:
                self.health.release_probe(key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "attempt failed on %s: %s (%s, rule %s, marks %s)",
                attempt.describe(),
                verdict.error_class.value,
                outcome.signal.message[:200],
                verdict.rule,
                ", ".join(marked) or "nothing",
            )
        return verdict

    def _emit_attempt(self, ex: Exchange, outcome: Outcome, kind: str) -> None:
        if not self.events.active:
            return
        attempt = outcome.attempt
        verdict = outcome.verdict
        self.events.emit(
            AttemptFinished(
                request_id=ex.request_id,
                attempt=ex.attempts,
                api=ex.parsed.api.value,
                public_model=ex.parsed.model,
                route=attempt.route.label,
                provider=attempt.provider.name,
                account=attempt.account.id if attempt.account else None,
                upstream_model=attempt.upstream_model,
                stream=ex.parsed.stream,
                ok=outcome.ok,
                status=outcome.status,
                error_class=verdict.error_class.value if verdict else None,
                scope=verdict.scope.value if verdict else None,
                rule=verdict.rule if verdict else None,
                phase=outcome.signal.phase.value if outcome.signal else None,
                latency=outcome.latency,
                first_byte=outcome.first_byte,
                kind=kind,
            )
        )

    # -- answers --------------------------------------------------------------------------
    def response_headers(self, ex: Exchange, outcome: Outcome) -> list[tuple[str, str]]:
        return [
            *client_headers(outcome.headers, self.redact.text),
            ("x-spillgate-route", outcome.attempt.route.label),
            ("x-spillgate-attempts", str(ex.attempts)),
            ("x-spillgate-request-id", ex.request_id),
            *ex.extra_headers,
        ]

    async def deliver(self, ex: Exchange, plan: RequestPlan, outcome: Outcome) -> None:
        if outcome.response is None:
            assert outcome.status is not None
            self.outages.answered(outage_key(ex))
            await ex.writer.send(outcome.status, self.response_headers(ex, outcome), outcome.body)
            usage = None
            if self.events.active and outcome.payload is not None:
                usage = from_usage_object(ex.parsed.api, outcome.payload.get("usage"))
            self._emit_request(ex, outcome.status, outcome, None, usage=usage)
            return
        from .streaming import StreamSession

        await StreamSession(self, ex, plan, outcome).run()

    async def _pass_through(self, ex: Exchange, outcome: Outcome, verdict: Verdict) -> None:
        """The request itself was refused (content policy, bad request): the upstream's reason goes back."""
        status = verdict.client_status or outcome.status or 400
        if not 400 <= status <= 599:
            status = 400  # refused in a 200 stream, or by an odd status: still a refusal
        headers = [
            h for h in self.response_headers(ex, outcome) if h[0] not in ("x-should-retry", "retry-after")
        ]
        headers.append(("x-should-retry", "false"))
        body = outcome.body
        family = ex.parsed.api.family
        if verdict.client_message is not None or status != outcome.status or not is_error_body(family, body):
            # Told in the client's protocol when the upstream's own body is not an error of it.
            error = GatewayError(
                status,
                ErrorKind.INVALID_REQUEST,
                verdict.client_message
                or outcome.signal_message()
                or f"the upstream refused the request (HTTP {outcome.status})",
                should_retry=None,
            )
            extra, body = render_error(family, error)
            headers = [h for h in headers if h[0] != "content-type"] + extra
        await ex.writer.send(status, headers, body)
        self._emit_request(ex, status, outcome, verdict.error_class)

    async def _give_up(self, ex: Exchange, plan: RequestPlan, stopped: str) -> None:
        res = self.settings.resilience
        now = time.monotonic()
        failure = reported_failure(ex, plan)
        error_class, verdict = failure.error_class, failure.verdict
        note = f"routes: {route_report(ex, plan, stopped, now)}"
        error = final_error(
            ex.parsed.api,
            error_class,
            ex.parsed.model,
            ex.tried,
            plan.reopens_in(now),
            failure.detail,
            note,
            cap=res.max_client_retry_after,
            stop=self._outage(ex, error_class),
        )
        if verdict is not None and (verdict.client_status is not None or verdict.client_message is not None):
            error = GatewayError(
                verdict.client_status or error.status,
                error.kind,
                verdict.client_message or error.message,
                code=error.code,
                retry_after=error.retry_after,
                should_retry=error.should_retry,
            )
        await self._send_final(ex, error, str(ex.attempts), error_class.value)
        self._emit_request(ex, error.status, None, error_class)

    async def _no_route(self, ex: Exchange, plan: RequestPlan) -> None:
        now = time.monotonic()
        if plan.routes and all(plan.misfit(route) is not None for route in plan.routes):
            # Too long for every route's declared window: the request, not an outage.
            error = final_error(
                ex.parsed.api,
                ErrorClass.CONTEXT_TOO_LONG,
                ex.parsed.model,
                [],
                None,
                note=f"routes: {route_report(ex, plan, '', now)}",
            )
            await self._send_final(ex, error, "0", ErrorClass.CONTEXT_TOO_LONG.value)
            self._emit_request(ex, error.status, None, ErrorClass.CONTEXT_TOO_LONG)
            return
        error = no_route_error(
            ex.parsed.api,
            ex.alias.name,
            route_report(ex, plan, "", now) or "the model has no route for this API",
            plan.reopens_in(now),
            cap=self.settings.resilience.max_client_retry_after,
            stop=self._outage(ex, None),
        )
        await self._send_final(ex, error, "0", "no_route")
        self._emit_request(ex, 503, None, None)

    def _outage(self, ex: Exchange, error_class: ErrorClass | None) -> str | None:
        """Count this final failure toward the model's outage; the stop message once it has lasted
        ``resilience.stop_retries_after``, else ``None``."""
        if error_class in NOT_OUTAGES:
            return None
        model = outage_key(ex)
        out_for = self.outages.failed(model)
        if not self.outages.should_stop(out_for):
            return None
        return stop_message(model, out_for, self.settings, self.health, self.outages, ex.parsed.api.family)

    async def _send_final(self, ex: Exchange, error: GatewayError, attempts: str, error_class: str) -> None:
        headers, body = render_error(ex.parsed.api.family, error)
        headers += [
            ("x-spillgate-attempts", attempts),
            ("x-spillgate-error-class", error_class),
            ("x-spillgate-request-id", ex.request_id),
            *ex.extra_headers,
        ]
        await ex.writer.send(error.status, headers, body)

    def _emit_request(
        self,
        ex: Exchange,
        status: int,
        outcome: Outcome | None,
        error_class: ErrorClass | None,
        first_token: float | None = None,
        recovered: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        if not self.events.active:
            return
        attempt = outcome.attempt if outcome is not None else None
        self.events.emit(
            RequestFinished(
                request_id=ex.request_id,
                api=ex.parsed.api.value,
                public_model=ex.parsed.model,
                client_key=ex.client_key,
                stream=ex.parsed.stream,
                ok=200 <= status < 300 and error_class is None,
                status=status,
                attempts=ex.attempts,
                route=attempt.route.label if attempt else None,
                account=attempt.account.id if attempt and attempt.account else None,
                upstream_model=attempt.upstream_model if attempt else None,
                error_class=error_class.value if error_class else None,
                latency=time.monotonic() - ex.started,
                first_token=first_token,
                recovered=recovered,
                session=ex.parsed.session_key,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                cached_tokens=usage.cached_tokens if usage else None,
                client_app=ex.client_headers.get("originator") or ex.client_headers.get("user-agent"),
                fingerprint=zlib.crc32(ex.parsed.body),
            )
        )


def _log_attempt(ex: Exchange, outcome: Outcome, kind: str) -> None:
    """One DEBUG line per attempt, answered or failed, to follow a request through the log (ids and
    names only: never a key)."""
    attempt = outcome.attempt
    verdict = outcome.verdict
    result = "ok" if verdict is None else f"failed {verdict.error_class.value} (rule {verdict.rule})"
    log.debug(
        "request %s attempt %d (%s): route %s account %s provider %s model %s -> %s %s in %.0f ms",
        ex.request_id,
        ex.attempts,
        kind,
        attempt.route.label,
        attempt.account.id if attempt.account is not None else "-",
        attempt.provider.name,
        attempt.upstream_model,
        outcome.status if outcome.status is not None else "no status",
        result,
        outcome.latency * 1000,
    )


__all__ = ["Attempt", "Dispatcher", "Exchange"]
