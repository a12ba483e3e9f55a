"""Per-model traffic over time in fixed buckets: the data behind the dashboard's status bars.

An event observer (it runs on the event loop for every attempt and request): each event costs
a dict lookup, an index into a ring of buckets and a few integer increments. Memory is bounded:
``buckets`` slots per model, at most ``max_models`` models (later names share ``OTHER``).
Reading (:meth:`Timeline.view`) does the heavier work: dense lists, totals, percentiles.

Money is counted as attempts report it: what each cost (``spend_usd``, attempts of unknown price
left out and counted in ``unpriced``) and the part of it the client got nothing from
(``wasted_usd``); of that waste, what requests ended by an in-band error wasted is also counted
from the request (``wasted_in_band_usd``, requests whose cost is known in full), the rest being
what recoveries cost (replays, continuations).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spillgate.observe.events import IN_BAND_ENDINGS, RECOVERY_KINDS, AttemptFinished, Event, RequestFinished

OTHER = "(other)"
"""Where the traffic of models past ``max_models`` is counted."""

LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000)
"""Upper bounds (ms) of the latency histogram kept per bucket; one more bin holds the rest."""


ROW_FIELDS = 14
"""The fields of an exported row before money was counted: a row this short (a worker of an older
version, during a rolling restart) is merged without money."""


class _Bucket:
    """Counts of one model in one time slot; ``index`` says which slot it holds now."""

    __slots__ = (
        "attempt_errors",
        "attempts",
        "errors",
        "failed",
        "failed_attempts",
        "failovers",
        "index",
        "latency",
        "ok",
        "probes",
        "recoveries",
        "requests",
        "retries",
        "spend",
        "unpriced",
        "wasted",
        "wasted_in_band",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.ok = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.attempts = 0
        self.failed_attempts = 0
        self.attempt_errors: dict[str, int] = {}
        self.retries = 0
        self.failovers = 0
        self.probes = 0
        self.recoveries = 0
        self.latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        self.spend = 0.0
        self.wasted = 0.0
        self.wasted_in_band = 0.0
        self.unpriced = 0


@dataclass(frozen=True, slots=True)
class BucketView:
    """One model (or the total) in one bucket starting at ``start`` (unix seconds)."""

    start: float
    requests: int = 0
    ok: int = 0
    failed: int = 0
    errors: Mapping[str, int] | None = None
    """Failed requests by error class (``http_<status>`` when the gateway named none)."""
    attempts: int = 0
    """Upstream attempts, first tries included."""
    failed_attempts: int = 0
    attempt_errors: Mapping[str, int] | None = None
    retries: int = 0
    """Attempts of kind ``retry`` (the same route again)."""
    failovers: int = 0
    probes: int = 0
    recoveries: int = 0
    """Continuations and replays after a stream broke mid-answer."""
    p50_ms: float | None = None
    """Request latency percentiles, as the upper bound of the histogram bin (``None``: no requests;
    the total over all models carries none)."""
    p95_ms: float | None = None
    spend_usd: float = 0.0
    """What the attempts cost (USD), those of unknown price left out."""
    wasted_usd: float = 0.0
    """The part of ``spend_usd`` the client got nothing from."""
    wasted_in_band_usd: float = 0.0
    """The part of ``wasted_usd`` that requests ended by an in-band error wasted (the rest: what
    replays and continuations cost)."""
    unpriced: int = 0
    """Attempts whose cost is unknown (no known price, or pricing off)."""


@dataclass(frozen=True, slots=True)
class TimelineView:
    bucket_seconds: float
    start: float
    """Start of the oldest bucket (unix seconds)."""
    now: float
    models: Mapping[str, list[BucketView]]
    """Dense, oldest first, the current (partial) bucket last; one list per model seen in the window."""
    total: list[BucketView]


class Timeline:
    """Counts per public model in ``bucket_seconds`` slots over the last ``buckets`` slots."""

    def __init__(
        self,
        bucket_seconds: float = 10.0,
        buckets: int = 360,
        max_models: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_seconds <= 0 or buckets < 1 or max_models < 1:
            raise ValueError("bucket_seconds, buckets and max_models must be positive")
        self.bucket_seconds = float(bucket_seconds)
        self.buckets = buckets
        self.max_models = max_models
        self._clock = clock
        self._rings: dict[str, list[_Bucket | None]] = {}

    @property
    def span(self) -> float:
        """The longest window kept, in seconds."""
        return self.bucket_seconds * self.buckets

    # -- writing (once per event) -------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, RequestFinished):
            b = self._bucket(event.public_model)
            b.requests += 1
            if event.ok:
                b.ok += 1
            else:
                b.failed += 1
                cls = event.error_class or f"http_{event.status}"
                b.errors[cls] = b.errors.get(cls, 0) + 1
            b.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, event.latency * 1000.0)] += 1
            if event.wasted_usd and event.recovered in IN_BAND_ENDINGS:
                b.wasted_in_band += event.wasted_usd
        elif isinstance(event, AttemptFinished):
            b = self._bucket(event.public_model)
            b.attempts += 1
            if not event.ok:
                b.failed_attempts += 1
                cls = event.error_class or f"http_{event.status}"
                b.attempt_errors[cls] = b.attempt_errors.get(cls, 0) + 1
            kind = event.kind
            if kind == "retry":
                b.retries += 1
            elif kind == "failover":
                b.failovers += 1
            elif kind == "probe":
                b.probes += 1
            elif kind in RECOVERY_KINDS:
                b.recoveries += 1
            if event.cost_usd is None:
                b.unpriced += 1
            else:
                b.spend += event.cost_usd
                if event.wasted_usd:
                    b.wasted += event.wasted_usd

    def _bucket(self, model: str) -> _Bucket:
        ring = self._rings.get(model)
        if ring is None:
            if len(self._rings) >= self.max_models and model != OTHER:
                return self._bucket(OTHER)
            ring = self._rings[model] = [None] * self.buckets
        index = int(self._clock() // self.bucket_seconds)
        slot = index % self.buckets
        bucket = ring[slot]
        if bucket is None or bucket.index != index:
            bucket = ring[slot] = _Bucket(index)
        return bucket

    # -- several workers ------------------------------------------------------------------------

    def export(self) -> list[list[Any]]:
        """Every bucket held, as plain JSON-able rows, for the other workers of one gateway. New
        fields go at the end of a row (:data:`ROW_FIELDS`): another version's rows still merge."""
        return [
            [model, b.index, b.requests, b.ok, b.failed, b.errors, b.attempts, b.failed_attempts,
             b.attempt_errors, b.retries, b.failovers, b.probes, b.recoveries, b.latency,
             b.spend, b.wasted, b.wasted_in_band, b.unpriced]
            for model, ring in self._rings.items()
            for b in ring
            if b is not None
        ]  # fmt: skip

    def with_others(self, others: Sequence[Sequence[Sequence[Any]]]) -> Timeline:
        """A timeline of this one's buckets and the other workers' (their :meth:`export`)."""
        merged = Timeline(self.bucket_seconds, self.buckets, self.max_models, self._clock)
        for rows in (self.export(), *others):
            for row in rows:
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    merged._absorb(row)
        return merged

    def _absorb(self, row: Sequence[Any]) -> None:
        model, index = str(row[0]), int(row[1])
        ring = self._rings.get(model)
        if ring is None:
            if len(self._rings) >= self.max_models:
                model = OTHER
            ring = self._rings.setdefault(model, [None] * self.buckets)
        slot = index % self.buckets
        bucket = ring[slot]
        if bucket is not None and bucket.index > index:
            return
        if bucket is None or bucket.index < index:
            bucket = ring[slot] = _Bucket(index)
        bucket.requests += int(row[2])
        bucket.ok += int(row[3])
        bucket.failed += int(row[4])
        bucket.attempts += int(row[6])
        bucket.failed_attempts += int(row[7])
        bucket.retries += int(row[9])
        bucket.failovers += int(row[10])
        bucket.probes += int(row[11])
        bucket.recoveries += int(row[12])
        for mine, theirs in ((bucket.errors, row[5]), (bucket.attempt_errors, row[8])):
            for cls, n in dict(theirs).items():
                mine[str(cls)] = mine.get(str(cls), 0) + int(n)
        latency = list(row[13])
        if len(latency) == len(bucket.latency):
            bucket.latency = [a + int(b) for a, b in zip(bucket.latency, latency, strict=True)]
        if len(row) >= ROW_FIELDS + 4:
            bucket.spend += float(row[14])
            bucket.wasted += float(row[15])
            bucket.wasted_in_band += float(row[16])
            bucket.unpriced += int(row[17])

    # -- reading --------------------------------------------------------------------------------

    def view(self, window: float | None = None) -> TimelineView:
        """The last ``window`` seconds (all that is kept when ``None`` or longer), whole buckets."""
        now = self._clock()
        width = self.bucket_seconds
        count = self.buckets if window is None else max(1, min(self.buckets, math.ceil(window / width)))
        last = int(now // width)
        first = last - count + 1
        models: dict[str, list[BucketView]] = {}
        for model, ring in self._rings.items():
            live = [ring[i % self.buckets] for i in range(first, last + 1)]
            if not any(b is not None and b.index == first + n for n, b in enumerate(live)):
                continue
            models[model] = [
                _view(b, (first + n) * width)
                if b is not None and b.index == first + n
                else BucketView(start=(first + n) * width)
                for n, b in enumerate(live)
            ]
        total = [_sum((first + n) * width, (series[n] for series in models.values())) for n in range(count)]
        return TimelineView(
            bucket_seconds=width,
            start=first * width,
            now=now,
            models=dict(sorted(models.items())),
            total=total,
        )


def _view(b: _Bucket, start: float) -> BucketView:
    p50, p95 = _percentiles(b.latency, b.requests)
    return BucketView(
        start=start,
        requests=b.requests,
        ok=b.ok,
        failed=b.failed,
        errors=dict(b.errors) if b.errors else None,
        attempts=b.attempts,
        failed_attempts=b.failed_attempts,
        attempt_errors=dict(b.attempt_errors) if b.attempt_errors else None,
        retries=b.retries,
        failovers=b.failovers,
        probes=b.probes,
        recoveries=b.recoveries,
        p50_ms=p50,
        p95_ms=p95,
        spend_usd=b.spend,
        wasted_usd=b.wasted,
        wasted_in_band_usd=b.wasted_in_band,
        unpriced=b.unpriced,
    )


def _sum(start: float, views: Iterable[BucketView]) -> BucketView:
    requests = ok = failed = attempts = failed_attempts = retries = failovers = probes = recoveries = 0
    unpriced = 0
    spend = wasted = wasted_in_band = 0.0
    errors: dict[str, int] = {}
    attempt_errors: dict[str, int] = {}
    for v in views:
        requests += v.requests
        ok += v.ok
        failed += v.failed
        attempts += v.attempts
        failed_attempts += v.failed_attempts
        retries += v.retries
        failovers += v.failovers
        probes += v.probes
        recoveries += v.recoveries
        spend += v.spend_usd
        wasted += v.wasted_usd
        wasted_in_band += v.wasted_in_band_usd
        unpriced += v.unpriced
        for src, dst in ((v.errors, errors), (v.attempt_errors, attempt_errors)):
            for cls, n in (src or {}).items():
                dst[cls] = dst.get(cls, 0) + n
    return BucketView(
        start=start,
        requests=requests,
        ok=ok,
        failed=failed,
        errors=errors or None,
        attempts=attempts,
        failed_attempts=failed_attempts,
        attempt_errors=attempt_errors or None,
        retries=retries,
        failovers=failovers,
        probes=probes,
        recoveries=recoveries,
        spend_usd=spend,
        wasted_usd=wasted,
        wasted_in_band_usd=wasted_in_band,
        unpriced=unpriced,
    )


def _percentiles(histogram: list[int], n: int) -> tuple[float | None, float | None]:
    if n <= 0:
        return None, None
    out: list[float | None] = []
    for q in (0.5, 0.95):
        rank = math.ceil(q * n)
        running = 0
        value: float | None = None
        for bound, count in zip((*LATENCY_BOUNDS_MS, math.inf), histogram, strict=True):
            running += count
            if running >= rank:
                value = float(min(bound, LATENCY_BOUNDS_MS[-1]))
                break
        out.append(value)
    return out[0], out[1]
