"""After the commit point: relay the stream; on a cut, stall or in-stream error, recover.

(a) continue on a route that supports assistant prefill, from the text already sent;
(b) replay on the next route and stream only what goes beyond what the client has;
(c) end with an in-band error the client retries. A truncated answer is never followed by
a normal ending.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from spillgate.http.client import FailureKind, UpstreamFailure
from spillgate.observe.events import IN_BAND_ENDINGS
from spillgate.pricing.waste import Use
from spillgate.protocols.adapter import adapter_for
from spillgate.protocols.events import Kind, StreamTracker, parse_event, split_events
from spillgate.protocols.sse import EventTooLarge
from spillgate.protocols.synth import in_band_error, rewrite, stream_end, text_delta
from spillgate.resilience.extract import error_fields, event_error_fields
from spillgate.resilience.types import ErrorClass, Phase, Scope, Signal, Transport

from .attempts import AttemptService, StreamUse
from .call import Committed, Outcome, transport_signal
from .exchange import Exchange
from .planner import Candidate

if TYPE_CHECKING:
    from .planner import RequestPlan

log = logging.getLogger("spillgate.streaming")

FINISH_GRACE = 0.5
"""Seconds to wait for the terminator once the answer is complete before writing it ourselves."""


class Mode(Enum):
    DIRECT = "direct"
    CONTINUATION = "continuation"
    REPLAY = "replay"


class _End(Enum):
    DONE = "done"
    MISMATCH = "mismatch"


@dataclass(slots=True)
class _Source:
    """One upstream stream feeding the client's stream."""

    outcome: Outcome
    stream: Committed
    """The upstream's open response and its splitter."""
    tracker: StreamTracker
    mode: Mode
    use: StreamUse
    """How the stream was used, for its attempt's report (kept up to date as it goes)."""
    target: str = ""
    """Replay: the text the client already has, which the replay must reproduce first."""
    consumed: int = 0
    skip: str = ""
    """Continuation: trailing whitespace the prefill left out; dropped if the upstream repeats it."""


class StreamSession:
    def __init__(self, attempts: AttemptService, ex: Exchange, plan: RequestPlan, outcome: Outcome) -> None:
        """``outcome``: the attempt that reached the commit point (its ``stream`` is open)."""
        stream = outcome.stream
        assert stream is not None
        self.a = attempts
        self.ex = ex
        self.plan = plan
        self.first = outcome
        self.stream = stream
        self.client = stream.tracker
        """What the client has been sent (the first upstream's tracker, then kept up to date)."""
        self._sources: list[Committed] = [stream]
        self._unsent: bytes | None = b"".join(stream.pending)
        """The committed first events, written with the headers at the first write."""
        self._uses: list[StreamUse] = [StreamUse(outcome, Use.ANSWER)]
        """The committed streams in order, for their attempts' reports."""
        self._first_token: float | None = None
        self._reported = False

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.stream.close()  # the client may have left before the first upstream was pumped
            for stream in self._sources:
                self.a.settle_abandoned(stream)
            if not self._reported:
                # The client went away mid-stream: what was spent is reported all the same.
                self._report(None, None, recovered="client_left", completed=True)

    def _report(
        self, last: Outcome | None, error_class: ErrorClass | None, *, recovered: str | None, completed: bool
    ) -> None:
        """The streams' attempts, then the request (once)."""
        self._reported = True
        self.a.report_streams(self.ex, self._uses, completed=completed)
        self.a.emit_request(
            self.ex,
            200,
            last if last is not None else self._uses[-1].outcome,
            error_class,
            first_token=self._first_token,
            recovered=recovered,
            usage=self.client.usage,
        )

    async def _run(self) -> None:
        ex, first = self.ex, self.first
        self._first_token = self.a.clock() - ex.started
        stream = self.stream
        source = _Source(first, stream, self.client, Mode.DIRECT, self._uses[0])
        result = await self._pump(source, stream.leftover)
        recovered: str | None = None
        error_class: ErrorClass | None = None
        failed = first
        while isinstance(result, Signal):
            # A break after the commit point opens the route at once: the client's own retry
            # (Codex replays the turn) must land elsewhere.
            probes = failed.stream.probes if failed.stream is not None else ()
            failed = self.a.judge(dataclasses.replace(failed, signal=result), probes, trip=True, ex=ex)
            self._uses[-1].outcome = failed  # the stream that broke is always the latest
            ex.failed(failed)
            verdict = failed.verdict
            assert verdict is not None
            error_class = verdict.error_class
            log.warning(
                "stream broke after content on %s: %s (%s)",
                failed.attempt.describe(),
                verdict.error_class.value,
                self.a.redact.text(result.message),
            )
            self.plan.tried.add(failed.attempt.identity)
            if verdict.scope is not Scope.REQUEST:
                self.plan.avoid.add(failed.attempt.key(verdict.scope))
            recovery = await self._recover()
            if recovery is None:
                await self._fail_in_band(verdict.error_class, failed)
                # Past the replay cap the text to reproduce was not kept: the record says so.
                recovered = "not_replayable" if self.client.replay_lost else "in_band_error"
                break
            mode, failed, result = recovery
            recovered = mode.value
        ok = recovered not in IN_BAND_ENDINGS
        if ok:
            self.a.answered(ex)
        self._report(failed, None if ok else error_class, recovered=recovered, completed=ok)

    # -- relaying -----------------------------------------------------------------------
    async def _pump(self, src: _Source, events: list[bytes]) -> Signal | _End:
        """Relay one upstream's events until the stream ends, fails, or (replay) diverges."""
        idle = src.outcome.attempt.timeouts.stream_idle
        response, splitter = src.stream.response, src.stream.splitter
        try:
            while True:
                out: list[bytes] = []
                for raw in events:
                    verdict = self._event(src, raw, out)
                    if verdict is _End.DONE:
                        self._ended(src, complete=True)
                        self.a.settle_success(src.outcome)
                        await self._end(b"".join(out))
                        return verdict
                    if verdict is not None:
                        self._ended(src)
                        await self._write(b"".join(out))
                        return verdict
                self._ended(src)
                await self._write(b"".join(out))
                wait = min(idle, FINISH_GRACE) if self.client.finished else idle
                try:
                    chunk = await response.next_chunk(wait)
                except UpstreamFailure as failure:
                    if self.client.finished and failure.kind is FailureKind.IDLE_TIMEOUT:
                        return await self._finish_for_upstream(src)
                    return transport_signal(failure, Phase.AFTER_CONTENT)
                if chunk is None:
                    if self.client.finished:
                        return await self._finish_for_upstream(src)
                    return Signal(
                        phase=Phase.AFTER_CONTENT,
                        transport=Transport.RESET,
                        message="the upstream stream ended before its answer was complete",
                    )
                try:
                    blob = splitter.feed(chunk)
                except EventTooLarge as exc:
                    return transport_signal(
                        UpstreamFailure(FailureKind.PROTOCOL, str(exc)), Phase.AFTER_CONTENT
                    )
                events = split_events(blob) if blob else []
        finally:
            src.stream.close()

    def _ended(self, src: _Source, *, complete: bool = False) -> None:
        """What the stream has produced so far (kept up to date as it goes, so that a client that
        leaves, or a break, finds it as it was): the usage it reported and its text."""
        use = src.use
        use.usage = src.tracker.usage
        use.text_chars = src.tracker.text_chars
        use.ended = self.a.clock()
        use.complete = complete

    async def _finish_for_upstream(self, src: _Source) -> _End:
        """The answer is complete but the terminator never came: write it ourselves."""
        self._ended(src, complete=True)
        self.a.settle_success(src.outcome)
        last = b""
        if not self.client.terminal_seen:
            last = stream_end(self.client)
            self.client.terminal_seen = True
        await self._end(last)
        return _End.DONE

    async def _write(self, data: bytes) -> None:
        """Write to the client; the first write carries the headers and the committed events."""
        unsent = self._unsent
        if unsent is not None:
            self._unsent = None
            self.ex.writer.start(200, self.a.response_headers(self.ex, self.first), unsent + data)
            return
        if data:
            await self.ex.writer.write(data)

    async def _end(self, last: bytes) -> None:
        unsent = self._unsent
        if unsent is not None:
            self._unsent = None
            headers = self.a.response_headers(self.ex, self.first)
            self.ex.writer.start(200, headers, unsent + last, final=True)
            return
        await self.ex.writer.end(last)

    def _event(self, src: _Source, raw: bytes, out: list[bytes]) -> Signal | _End | None:
        event = parse_event(raw)
        if src.mode is Mode.DIRECT:
            kind = self.client.observe(event)
        else:
            kind = src.tracker.observe(event)
            new_text = src.tracker.last_text
        if kind is Kind.MALFORMED:
            self.a.count_malformed()
            return None
        if kind is Kind.ERROR:
            fields = event_error_fields(event.name, event.data) or error_fields(event.data)
            return fields.signal(Phase.AFTER_CONTENT, 200, in_stream=True)
        if src.mode is Mode.DIRECT:
            out.append(raw)
            return _End.DONE if kind is Kind.TERMINAL else None
        # A continuation or a replay, written in the client's stream's own ids.
        if kind is Kind.PREAMBLE:
            return None
        if new_text:
            emit = self._match(src, new_text)
            if emit is None:
                return _End.MISMATCH
            if emit:
                out.append(text_delta(self.client, emit))
            return None
        if src.mode is Mode.REPLAY and src.consumed < len(src.target):
            # Anything but text before the replay caught up means it is telling another story.
            return None if kind is Kind.META else _End.MISMATCH
        out.append(self._rewrite(event.payload, event.name, raw))
        self.client.finished = self.client.finished or src.tracker.finished
        self.client.usage_seen = self.client.usage_seen or src.tracker.usage_seen
        if src.tracker.usage is not None:
            self.client.usage = src.tracker.usage  # the route that finished the answer reports it
        if kind is Kind.TERMINAL:
            self.client.terminal_seen = True
            return _End.DONE
        return None

    def _match(self, src: _Source, piece: str) -> str | None:
        """The part of ``piece`` the client does not have yet; ``None`` if the replay diverged."""
        if src.mode is Mode.CONTINUATION:
            if src.skip:
                n = 0
                while n < len(piece) and n < len(src.skip) and piece[n] == src.skip[n]:
                    n += 1
                src.skip = "" if n < len(piece) else src.skip[n:]
                return piece[n:]
            return piece
        target, pos = src.target, src.consumed
        src.consumed += len(piece)
        if pos >= len(target):
            return piece
        n = min(len(piece), len(target) - pos)
        if piece[:n] != target[pos : pos + n]:
            return None
        return piece[n:]

    def _rewrite(self, payload: Any, name: str | None, raw: bytes) -> bytes:
        """Another upstream's event, given the client stream's ids and sequence."""
        return rewrite(self.client, payload, name, raw)

    # -- recovery -----------------------------------------------------------------------
    async def _recover(self) -> tuple[Mode, Outcome, Signal | _End] | None:
        """Try to finish the answer elsewhere; None when it cannot be done (then: in-band error)."""
        a, ex, res = self.a, self.ex, self.a.settings.resilience
        if self.client.non_text_output:
            return None
        if self.client.replay_lost:
            log.warning(
                "the stream for model '%s' broke after more than %d characters: not replayable",
                ex.parsed.model,
                self.client.replay_limit,
            )
            return None
        while ex.attempts < res.max_attempts:
            candidate = self.plan.next()
            if candidate is None:
                return None
            attempt = candidate.attempt
            target = self.client.sent_text()
            modes = [Mode.REPLAY]
            if attempt.route.supports_prefill and target and adapter_for(attempt.api).continuable:
                modes.insert(0, Mode.CONTINUATION)
            for mode in modes:
                body, skip = (None, "")
                if mode is Mode.CONTINUATION:
                    try:
                        body, skip = a.prefill_payload(ex, attempt, target)
                    except ValueError:
                        continue  # this route cannot be continued: replay on it instead
                if not a.spend_retry():
                    a.release(candidate)
                    return None
                if not await a.claim_slot(candidate):
                    a.release(candidate)
                    self.plan.tried.add(attempt.identity)
                    break
                bound = a.try_bound(ex, self.plan, candidate, ex.started + res.deadline)
                outcome = await a.run(ex, candidate, mode.value, body=body, bound=bound)
                candidate = Candidate(attempt, forced=True)
                if outcome.verdict is not None:
                    if mode is Mode.CONTINUATION and outcome.verdict.error_class is ErrorClass.BAD_REQUEST:
                        # The target refused the prefill: that 400 is not the real error.
                        continue
                    ex.failed(outcome)
                    self.plan.tried.add(attempt.identity)
                    break
                if outcome.stream is None:
                    # Answered, but not as a stream: nothing to stitch onto the client's stream.
                    self.plan.tried.add(attempt.identity)
                    break
                stream = outcome.stream
                self._sources.append(stream)
                use = StreamUse(
                    outcome,
                    Use.CONTINUATION if mode is Mode.CONTINUATION else Use.REPLAY,
                    prefill_chars=len(target) if mode is Mode.CONTINUATION else 0,
                )
                self._uses.append(use)
                src = _Source(
                    outcome,
                    stream,
                    StreamTracker(ex.parsed.api, replay_limit=a.settings.limits.max_replay_text),
                    mode,
                    target=target,
                    skip=skip,
                    use=use,
                )
                result = await self._pump(src, stream.pending + stream.leftover)
                if result is _End.MISMATCH:
                    log.warning("replay on %s did not reproduce the text already sent", attempt.describe())
                    return None
                return mode, outcome, result
            else:
                self.plan.tried.add(attempt.identity)
        return None

    async def _fail_in_band(self, error_class: ErrorClass, failed: Outcome) -> None:
        writer = self.ex.writer
        message = (
            f"the upstream stream for model '{self.ex.parsed.model}' broke after the answer started "
            f"({error_class.value} on route {failed.attempt.route.label}) and no route could finish it; "
            "retry the request"
        )
        if not writer.disconnected:
            # The body ends right after the error: clients act on it when the stream closes.
            await self._end(in_band_error(self.client, message))
