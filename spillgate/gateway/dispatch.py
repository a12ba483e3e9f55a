"""Dispatch one request over its plan: attempt, classify, mark health, go around, within budgets.

Before the commit point (the first byte sent to the client) any failure may be retried or
failed over invisibly; after it, :mod:`spillgate.gateway.streaming` continues, replays or
ends the stream with an in-band error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from spillgate.config.schema import Settings
from spillgate.http.transport import Transport
from spillgate.protocols.errors import ErrorKind, GatewayError, is_error_body, render_error
from spillgate.protocols.usage import from_usage_object
from spillgate.resilience.backoff import backoff_delay
from spillgate.resilience.policy import NOT_OUTAGES, Step, final_error, next_step, no_route_error
from spillgate.resilience.types import ErrorClass, Scope, Verdict
from spillgate.routing.plan import order_routes, route_tier

from .answer import outage_key, reported_failure, route_report, stop_message
from .attempt import Attempt
from .attempts import AttemptService
from .call import Outcome
from .exchange import Exchange, estimate_tokens
from .planner import AttemptCache, Candidate, RequestPlan
from .runtime import Runtime
from .streaming import StreamSession

log = logging.getLogger("spillgate.dispatch")


class Dispatcher:
    """The loop before the commit point, and the request's answers; attempts themselves are the
    :class:`AttemptService`'s, which the stream session shares."""

    def __init__(self, settings: Settings, clients: dict[str, Transport], runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.attempts = AttemptService(settings, clients, runtime)
        self.clock = runtime.clock
        self.rng = runtime.rng
        self._rotation = itertools.count()
        self.attempt_cache: AttemptCache = {}
        """The Attempts of this configuration's routes, built once (see the planner)."""
        self.active = 0
        """Client requests being served now."""

    def rotation(self) -> int:
        return next(self._rotation)

    def plan_for(self, ex: Exchange) -> RequestPlan:
        api, providers = ex.parsed.api, self.settings.providers
        if len(ex.routes) > 1:
            routes = order_routes(ex.routes, self.rng, lambda r: route_tier(r, providers, api))
        else:
            routes = list(ex.routes)
        return RequestPlan(
            settings=self.settings,
            routes=routes,
            api=api,
            translation=ex.translation,
            requested_model=ex.parsed.model,
            session_key=ex.parsed.session_key,
            estimated_tokens=estimate_tokens(ex.parsed.body),
            health=self.runtime.health,
            inflight=self.runtime.inflight,
            affinity=self.runtime.affinity,
            rotation=self.rotation,
            clock=self.clock,
            cache=self.attempt_cache,
        )

    # -- the loop before the commit point ----------------------------------------------
    async def serve(self, ex: Exchange) -> None:
        self.active += 1
        try:
            await self._serve(ex)
        finally:
            self.active -= 1

    async def _serve(self, ex: Exchange) -> None:
        res, attempts = self.settings.resilience, self.attempts
        plan = self.plan_for(ex)
        self.runtime.budget.record_request(self.active)
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
                attempts.release(candidate)
                break
            if ex.attempts > 0 and not attempts.spend_retry():
                stopped = "the gateway's retry budget is spent"
                attempts.release(candidate)
                break
            if not await attempts.claim_slot(candidate):
                # Its account is at max_concurrency across the fleet: the next account or route.
                plan.tried.add(candidate.attempt.identity)
                attempts.release(candidate)
                candidate = plan.next()
                if candidate is None and ex.attempts == 0:
                    await self._no_route(ex, plan)
                    return
                if candidate is None:
                    stopped = "every account left is at its max_concurrency"
                continue
            kind = self._kind(ex, candidate, retried_same)
            bound = attempts.try_bound(ex, plan, candidate, deadline)
            outcome = await attempts.run(ex, candidate, kind, bound=bound)
            if outcome.verdict is None:
                await self.deliver(ex, plan, outcome)
                return
            verdict = outcome.verdict
            ex.failed(outcome)
            step = next_step(verdict.error_class, retried_same=candidate.attempt.identity in retried_same)
            if step is Step.STOP:
                await self._pass_through(ex, outcome, verdict)
                return
            attempt = candidate.attempt
            if step is Step.RETRY_SAME:
                delay = backoff_delay(0, res.backoff_base, res.backoff_cap, self.rng)
                if self.clock() + delay < deadline:
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
            if self.clock() >= deadline:
                stopped = "the deadline passed"
                break
            candidate = plan.next()
            wait = outcome.retry_in
            if (
                not waited
                and verdict.error_class is ErrorClass.RATE_LIMITED
                and wait is not None
                and wait <= res.max_retry_wait
                and self.clock() + wait < deadline
                and (candidate is None or candidate.attempt.upstream_model != attempt.upstream_model)
            ):
                # Keep the model the user chose when that costs a short wait: another account of
                # the same model went first (above); a different model only after the wait.
                waited = True
                if candidate is not None:
                    attempts.release(candidate)
                await asyncio.sleep(wait)
                retried_same.add(attempt.identity)
                candidate = Candidate(attempt, forced=True)
        await self._give_up(ex, plan, stopped)

    def _kind(self, ex: Exchange, candidate: Candidate, retried_same: set[tuple[str, str]]) -> str:
        if candidate.probes:
            return "probe"
        if ex.attempts == 0:
            return "attempt"
        if candidate.attempt.identity in retried_same:
            return "retry"
        return "failover"

    # -- answers --------------------------------------------------------------------------
    async def deliver(self, ex: Exchange, plan: RequestPlan, outcome: Outcome) -> None:
        attempts = self.attempts
        if outcome.stream is None:
            assert outcome.status is not None
            attempts.answered(ex)
            await ex.writer.send(outcome.status, attempts.response_headers(ex, outcome), outcome.body)
            usage = None
            if self.runtime.events.active and outcome.payload is not None:
                usage = from_usage_object(ex.parsed.api, outcome.payload.get("usage"))
            attempts.emit_request(ex, outcome.status, outcome, None, usage=usage)
            return
        await StreamSession(attempts, ex, plan, outcome).run()

    async def _pass_through(self, ex: Exchange, outcome: Outcome, verdict: Verdict) -> None:
        """The request itself was refused (content policy, bad request): the upstream's reason goes back."""
        status = verdict.client_status or outcome.status or 400
        if not 400 <= status <= 599:
            status = 400  # refused in a 200 stream, or by an odd status: still a refusal
        headers = [
            h
            for h in self.attempts.response_headers(ex, outcome)
            if h[0] not in ("x-should-retry", "retry-after")
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
        self.attempts.emit_request(ex, status, outcome, verdict.error_class)

    async def _give_up(self, ex: Exchange, plan: RequestPlan, stopped: str) -> None:
        res = self.settings.resilience
        now = self.clock()
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
        self.attempts.emit_request(ex, error.status, None, error_class)

    async def _no_route(self, ex: Exchange, plan: RequestPlan) -> None:
        now = self.clock()
        misfits = plan.routes and all(plan.misfit(route) is not None for route in plan.routes)
        if misfits and all(route.label in plan.uncarried for route in plan.routes):
            # No route's API can carry what the request has: the request, not an outage.
            error = GatewayError(
                400,
                ErrorKind.INVALID_REQUEST,
                f"no route of model {ex.parsed.model!r} can carry this {ex.parsed.api.title} request; "
                f"routes: {route_report(ex, plan, '', now)}",
                code="unsupported_request",
                should_retry=False,
            )
            await self._send_final(ex, error, "0", "unsupported_request")
            self.attempts.emit_request(ex, error.status, None, None)
            return
        if misfits:
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
            self.attempts.emit_request(ex, error.status, None, ErrorClass.CONTEXT_TOO_LONG)
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
        self.attempts.emit_request(ex, 503, None, None)

    def _outage(self, ex: Exchange, error_class: ErrorClass | None) -> str | None:
        """Count this final failure toward the model's outage; the stop message once it has lasted
        ``resilience.stop_retries_after``, else ``None``."""
        if error_class in NOT_OUTAGES:
            return None
        model = outage_key(ex)
        outages = self.runtime.outages
        out_for = outages.failed(model)
        if not outages.should_stop(out_for):
            return None
        return stop_message(model, out_for, self.settings, self.runtime.health, outages, ex.parsed.api)

    async def _send_final(self, ex: Exchange, error: GatewayError, attempts: str, error_class: str) -> None:
        headers, body = render_error(ex.parsed.api.family, error)
        headers += [
            ("x-spillgate-attempts", attempts),
            ("x-spillgate-error-class", error_class),
            ("x-spillgate-request-id", ex.request_id),
            *ex.extra_headers,
        ]
        await ex.writer.send(error.status, headers, body)


__all__ = ["Attempt", "Dispatcher", "Exchange"]
