"""Attempts as a service: run one against its upstream, judge a failure, settle health, release
probes and in-flight slots, and report — for the dispatcher (before the commit point) and the
stream session (after it) alike. Neither reaches into the other: both hold this service.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from spillgate.config.schema import Settings
from spillgate.http.transport import Transport
from spillgate.observe.events import RECOVERY_KINDS, AttemptFinished, RequestFinished
from spillgate.pricing.waste import Billed, Use, wasted
from spillgate.protocols.adapter import adapter_for
from spillgate.protocols.request import rewrite_model
from spillgate.protocols.translate.canonical import Uncarriable
from spillgate.protocols.translate.translator import AnswerTranslator
from spillgate.protocols.usage import Usage, from_usage_object
from spillgate.resilience.types import ErrorClass, Scope

from . import costing
from .answer import outage_key
from .attempt import Attempt
from .call import Committed, Outcome, call
from .exchange import Exchange, estimate_tokens
from .forward import client_headers, upstream_headers
from .planner import Candidate, RequestPlan
from .redact import Redactor
from .runtime import Runtime

log = logging.getLogger("spillgate.dispatch")

MIN_TRY = 1.0
"""A try with less room than this before ``deadline - failover_reserve`` is the last possible one."""


@dataclass(slots=True)
class StreamUse:
    """A committed stream, as the stream session used it: reported when the session ends."""

    outcome: Outcome
    """The attempt's outcome (judged, when its stream broke)."""
    use: Use
    usage: Usage | None = None
    """What its stream reported, if anything."""
    text_chars: int = 0
    """Characters of answer text it produced."""
    prefill_chars: int = 0
    """A continuation's prefill (the text it was asked to continue)."""
    complete: bool = False
    """Its stream ended normally (its usage report, if any, is the whole one)."""
    ended: float | None = None
    """The runtime clock's time its stream ended."""


class AttemptService:
    """Runs and accounts for attempts on one configuration's routes, over the runtime's state."""

    def __init__(self, settings: Settings, clients: dict[str, Transport], runtime: Runtime) -> None:
        self.settings = settings
        self.clients = clients
        self.runtime = runtime
        self.clock = runtime.clock
        self.classifier = runtime.classifier
        """This configuration's error rules (a reload builds a new service with the new ones)."""
        self.redact = Redactor.for_settings(settings)

    # -- running ------------------------------------------------------------------------
    async def run(
        self,
        ex: Exchange,
        candidate: Candidate,
        kind: str,
        body: bytes | None = None,
        bound: float | None = None,
    ) -> Outcome:
        """One attempt, counted on ``ex``; a failure comes back judged (its ``verdict`` set) and
        its scope marked. The caller decides whether it counts toward the final error."""
        rt = self.runtime
        attempt = candidate.attempt
        ex.attempts += 1
        ex.tried.append(attempt.route.label + (f"/{attempt.account.id}" if attempt.account else ""))
        account = attempt.account
        if account is not None:
            rt.inflight.acquire(account.id)
        outcome: Outcome | None = None
        answers: AnswerTranslator | None = None
        omitted: tuple[str, ...] = ()
        try:
            if attempt.api is ex.parsed.api:
                payload = body if body is not None else rewrite_model(ex.parsed, attempt.upstream_model)
            else:
                # The planner checked that it can be carried (misfit); the body is cached.
                encoded = ex.translation.encoded(attempt.api, attempt.upstream_model, attempt.route)
                payload = body if body is not None else encoded.body
                answers = ex.translation.answers(attempt, encoded, estimate_tokens(encoded.body))
                omitted = encoded.omitted
            headers = upstream_headers(ex.client_headers, attempt.provider, account)
            client = self.clients[attempt.provider.name]
            outcome = await call(
                attempt,
                ex.parsed,
                payload,
                headers,
                client,
                bound,
                self.settings.limits,
                answers=answers,
                on_malformed=self._count_malformed,
            )
        finally:
            if outcome is None:  # cancelled: the client went away
                self.release(candidate)
            if account is not None:
                if outcome is not None and outcome.stream is not None:
                    # A stream goes on after the commit point: in flight until it ends.
                    outcome.stream.on_close = lambda: rt.inflight.release(account.id)
                else:
                    rt.inflight.release(account.id)
        rt.counters.malformed_events += outcome.malformed
        if outcome.ok:
            if outcome.stream is None:
                self.settle_success(outcome)
            else:
                # A stream is healthy when it ends well, not when it starts: until then it
                # keeps its probes, and a break after the commit point still counts.
                outcome.stream.probes = candidate.probes
            if candidate.rebind and candidate.session and account is not None:
                rt.affinity.bind(candidate.session, account.id)
        else:
            outcome = self.judge(outcome, candidate.probes, ex=ex)
        if log.isEnabledFor(logging.DEBUG):
            _log_attempt(ex, outcome, kind)
        if outcome.ok and outcome.stream is not None:
            # Reported when its stream ends, with what it cost (report_streams).
            stream = outcome.stream
            stream.number, stream.kind, stream.omitted = ex.attempts, kind, omitted
            stream.committed_at = self.clock()
        elif self.runtime.events.active:
            self._report_now(ex, outcome, kind, omitted)
        return outcome

    async def claim_slot(self, candidate: Candidate) -> bool:
        """Take a ``max_concurrency`` slot of the candidate's account across the fleet (a shared
        state store only: alone, the planner's own count already decided)."""
        account = candidate.attempt.account
        fleet = self.runtime.fleet
        if fleet is None or account is None or account.max_concurrency is None:
            return True
        return await fleet.inflight.reserve(account.id, account.max_concurrency)

    def prefill_payload(self, ex: Exchange, attempt: Attempt, text: str) -> tuple[bytes, str]:
        """A request continuing the assistant text ``text`` on ``attempt`` (in its own API), and
        the trailing whitespace left out of the prefill; raises ValueError when it cannot be."""
        if attempt.api is ex.parsed.api:
            made = adapter_for(attempt.api).prefill_body(ex.parsed.data, text, attempt.upstream_model)
            if made is None:
                raise ValueError(f"a {attempt.api.title} request cannot be continued from a prefill")
            return made
        prefill = text.rstrip()
        try:
            encoded = ex.translation.encoded(attempt.api, attempt.upstream_model, attempt.route, prefill)
        except Uncarriable as why:
            raise ValueError(str(why)) from None
        return encoded.body, text[len(prefill) :]

    def _count_malformed(self, n: int) -> None:
        self.runtime.counters.malformed_events += n

    def try_bound(
        self, ex: Exchange, plan: RequestPlan, candidate: Candidate, deadline: float
    ) -> float | None:
        """How long this try may wait for response headers and its first token, so that a
        failover can still start within the deadline; ``None`` for the last possible try (it
        keeps its route's whole timeouts)."""
        res = self.settings.resilience
        if ex.attempts + 1 >= res.max_attempts:
            return None
        room = deadline - res.failover_reserve - self.clock()
        if room < MIN_TRY or not plan.has_other(candidate.attempt):
            return None
        return min(res.try_timeout, room)

    def spend_retry(self) -> bool:
        """Whether the retry budget allows one more extra attempt (spent when it does)."""
        return self.runtime.budget.try_spend()

    # -- settling -----------------------------------------------------------------------
    def release(self, candidate: Candidate) -> None:
        """A candidate that will not be attempted: free the probes it claimed."""
        for key in candidate.probes:
            self.runtime.health.release_probe(key)

    def settle_success(self, outcome: Outcome) -> None:
        attempt = outcome.attempt
        for key in attempt.health_keys():
            self.runtime.health.record_success(key)
        self.runtime.scopes.record_success(attempt.owner, attempt.provider.name)
        if outcome.stream is not None:
            outcome.stream.settled = True

    def settle_abandoned(self, stream: Committed) -> None:
        """The client went away mid-stream: no verdict on the upstream; free its probes."""
        if not stream.settled:
            for key in stream.probes:
                self.runtime.health.release_probe(key)
            stream.settled = True

    def judge(
        self, outcome: Outcome, probes: tuple[str, ...], *, trip: bool = False, ex: Exchange | None = None
    ) -> Outcome:
        """A failed outcome classified, with the scope its verdict names marked unhealthy:
        returned as a new Outcome carrying the verdict (and its redacted text). ``probes``: the
        half-open probes the attempt held; ``ex``: the request, whose client key weighs in when
        a credential is refused."""
        rt = self.runtime
        signal = outcome.signal
        assert signal is not None
        # Where a failure enters: from here on its text goes to health, logs and the client.
        message = self.redact.text(signal.message)
        if message is not signal.message:
            signal = dataclasses.replace(signal, message=message)
        verdict = self.classifier.classify(signal)
        attempt = outcome.attempt
        marked: list[str] = []
        if outcome.stream is not None:
            outcome.stream.settled = True
        proof: str | None = None
        mark = verdict.count
        if mark and verdict.error_class is ErrorClass.AUTH and verdict.widen:
            # A refused credential is disabled for everyone only on proof that it is the credential.
            client, request_id = (ex.client_key or "", ex.request_id) if ex is not None else ("", "")
            proof = rt.scopes.auth_refused(attempt.owner, client, request_id)
            mark = proof is not None
        if mark and verdict.scope is not Scope.REQUEST:
            marking = rt.scopes.mark(
                verdict,
                signal,
                owner=attempt.owner,
                provider=attempt.provider.name,
                model=attempt.upstream_model,
            )
            retry_at = None if outcome.retry_in is None else self.clock() + outcome.retry_in
            reason = signal.message[:200] + (f" ({proof})" if proof else "")
            for i, scope in enumerate(marking.scopes):
                key = attempt.key(scope)
                widened = i > 0
                why = f"{reason} ({marking.why})" if widened else reason
                rt.health.record_failure(key, verdict.error_class, retry_at, why, trip=trip or widened)
                marked.append(key)
            if marking.scope is not verdict.scope:
                verdict = dataclasses.replace(verdict, scope=marking.scope)
        for key in probes:
            if key not in marked:
                rt.health.release_probe(key)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "attempt failed on %s: %s (%s, rule %s, marks %s)",
                attempt.describe(),
                verdict.error_class.value,
                signal.message[:200],
                verdict.rule,
                ", ".join(marked) or "nothing",
            )
        return dataclasses.replace(
            outcome, signal=signal, body=self.redact.body(outcome.body), verdict=verdict
        )

    def answered(self, ex: Exchange) -> None:
        """The request's model answered: its outage (if any) is over."""
        self.runtime.outages.answered(outage_key(ex))

    def count_malformed(self) -> None:
        self.runtime.counters.malformed_events += 1

    # -- reporting ----------------------------------------------------------------------
    def response_headers(self, ex: Exchange, outcome: Outcome) -> list[tuple[str, str]]:
        return [
            *client_headers(outcome.headers, self.redact.text),
            ("x-spillgate-route", outcome.attempt.route.label),
            ("x-spillgate-attempts", str(ex.attempts)),
            ("x-spillgate-request-id", ex.request_id),
            *ex.extra_headers,
        ]

    def _report_now(self, ex: Exchange, outcome: Outcome, kind: str, omitted: tuple[str, ...]) -> None:
        """An attempt that ended before any stream: a refusal (billed nothing) or a whole answer."""
        book = self.runtime.prices
        if outcome.ok:
            usage = None
            if outcome.payload is not None:
                usage = from_usage_object(ex.parsed.api, outcome.payload.get("usage"))
            spent = costing.reported(book, outcome.attempt, ex.parsed.api, usage)
            # A whole answer to a stream's recovery cannot be stitched onto it: nothing reached the client.
            use = Use.DISCARDED if kind in RECOVERY_KINDS else Use.ANSWER
        else:
            spent, use = costing.not_billed(book), Use.ANSWER
        waste = wasted([Billed(use, spent.cost, spent.input_cost)], completed=True)[0]
        self._emit_attempt(ex, ex.attempts, outcome, kind, omitted, spent, waste)

    def report_streams(self, ex: Exchange, streams: Sequence[StreamUse], *, completed: bool) -> None:
        """The committed streams of a request, once (when its stream session is over): each one's
        tokens (estimated when it has no whole usage report), cost and wasted part (``completed``:
        the client got a whole answer, or left)."""
        if not self.runtime.events.active:
            return
        book = self.runtime.prices
        spent = [
            costing.streamed(
                book,
                s.outcome.attempt,
                ex.parsed,
                s.usage,
                s.text_chars,
                s.prefill_chars,
                complete=s.complete,
                with_input=s.use is Use.CONTINUATION,
            )
            for s in streams
        ]
        waste = wasted(
            [Billed(s.use, c.cost, c.input_cost) for s, c in zip(streams, spent, strict=True)],
            completed=completed,
        )
        now = self.clock()
        for s, c, w in zip(streams, spent, waste, strict=True):
            stream = s.outcome.stream
            assert stream is not None
            ran = (now if s.ended is None else s.ended) - stream.committed_at
            self._emit_attempt(ex, stream.number, s.outcome, stream.kind, stream.omitted, c, w, max(0.0, ran))

    def _emit_attempt(
        self,
        ex: Exchange,
        number: int,
        outcome: Outcome,
        kind: str,
        omitted: tuple[str, ...],
        spent: costing.Spent,
        waste: float | None,
        streamed: float | None = None,
    ) -> None:
        events = self.runtime.events
        attempt = outcome.attempt
        verdict = outcome.verdict
        ex.add_cost(spent.cost, waste, spent.estimated)
        tokens = spent.tokens
        events.emit(
            AttemptFinished(
                request_id=ex.request_id,
                attempt=number,
                api=ex.parsed.api.value,
                public_model=ex.parsed.model,
                route=attempt.route.label,
                provider=attempt.provider.name,
                account=attempt.account.id if attempt.account else None,
                upstream_model=attempt.upstream_model,
                stream=ex.parsed.stream,
                ok=outcome.ok and verdict is None,
                status=outcome.status,
                error_class=verdict.error_class.value if verdict else None,
                scope=verdict.scope.value if verdict else None,
                rule=verdict.rule if verdict else None,
                phase=outcome.signal.phase.value if outcome.signal else None,
                latency=outcome.latency,
                first_byte=outcome.first_byte,
                kind=kind,
                upstream_api=attempt.api.value,
                omitted="; ".join(omitted) or None,
                input_tokens=tokens.input if tokens else None,
                output_tokens=tokens.output if tokens else None,
                cached_tokens=tokens.cache_read if tokens else None,
                cache_write_tokens=tokens.cache_write if tokens else None,
                cost_usd=spent.cost,
                wasted_usd=waste,
                estimated=spent.estimated,
                streamed=streamed,
            )
        )

    def emit_request(
        self,
        ex: Exchange,
        status: int,
        outcome: Outcome | None,
        error_class: ErrorClass | None,
        first_token: float | None = None,
        recovered: str | None = None,
        usage: Usage | None = None,
    ) -> None:
        """The request's one report, when it is answered (success, refusal or final error)."""
        events = self.runtime.events
        if not events.active:
            return
        attempt = outcome.attempt if outcome is not None else None
        priced = self.runtime.prices.settings.enabled
        events.emit(
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
                upstream_api=attempt.api.value if attempt else None,
                error_class=error_class.value if error_class else None,
                latency=self.clock() - ex.started,
                first_token=first_token,
                recovered=recovered,
                session=ex.parsed.session_key,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                cached_tokens=usage.cached_tokens if usage else None,
                client_app=ex.client_headers.get("originator") or ex.client_headers.get("user-agent"),
                fingerprint=zlib.crc32(ex.parsed.body),
                cost_usd=ex.cost if priced else None,
                wasted_usd=ex.wasted if priced else None,
                cost_estimated=ex.cost_estimated,
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
