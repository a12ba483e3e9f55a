"""Prometheus metrics: counters and histograms fed by events, gauges read from state at scrape.

A small registry of our own (the text exposition format is simple) keeps the per-event cost
to a dict update. Labels carry names only — models, routes, accounts, classes — never a key.

Money: what attempts cost is counted per route (``spillgate_spend_usd_total``) and the part of it
the client got nothing from per attempt kind (``spillgate_wasted_usd_total``); an attempt's event
does not name the client key, so spend per key (``spillgate_client_spend_usd_total``) is counted
from each request's total — of requests whose cost is known in full. An unknown cost is never
counted as 0: attempts with no known price are ``spillgate_unpriced_attempts_total``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spillgate.observe.events import AttemptFinished, Event, RequestFinished

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
MAX_UNCONFIGURED_MODELS = 50
"""Model names a ``*`` route forwards as they were asked for get their own label up to this many;
every further one is counted as ``other`` (a client cannot grow /metrics without bound)."""
OTHER = "other"


def _escape(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return escaped if escaped.isprintable() else "".join(c if c.isprintable() else "?" for c in escaped)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        self.values[label_values] = self.values.get(label_values, 0.0) + by

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for values, count in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labels, values)} {_number(count)}"


@dataclass
class Histogram:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    series: dict[tuple[str, ...], list[float]] = field(default_factory=dict)
    """Per label set: bucket counts (len(buckets) + 1 for +Inf), then sum, then count."""

    def observe(self, value: float, *label_values: str) -> None:
        row = self.series.get(label_values)
        if row is None:
            row = self.series[label_values] = [0.0] * (len(self.buckets) + 3)
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        names = (*self.labels, "le")
        for values, row in sorted(self.series.items()):
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), row, strict=False):
                running += count
                yield f"{self.name}_bucket{_labels(names, (*values, _number(bound)))} {_number(running)}"
            yield f"{self.name}_sum{_labels(self.labels, values)} {_number(row[-2])}"
            yield f"{self.name}_count{_labels(self.labels, values)} {_number(row[-1])}"


Reader = Callable[[], Iterable[tuple[tuple[str, ...], float]]]


@dataclass(frozen=True)
class Scraped:
    """A gauge, or a counter kept elsewhere (rule hits, budget rejections), read at scrape time."""

    name: str
    help: str
    labels: tuple[str, ...]
    read: Reader
    kind: str = "gauge"
    fleet_wide: bool = False
    """The value is the same on every worker (it reads shared state: health, the retry budget):
    merged across workers by taking the largest, not the sum."""

    def render(self, others: Sequence[Mapping[tuple[str, ...], float]] = ()) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        values = dict(self.read())
        for other in others:
            for labels, value in other.items():
                if labels not in values:
                    values[labels] = value
                elif self.fleet_wide:
                    values[labels] = max(values[labels], value)
                else:
                    values[labels] += value
        for labels, value in sorted(values.items()):
            yield f"{self.name}{_labels(self.labels, labels)} {_number(value)}"


class Metrics:
    """The event observer and the ``/metrics`` renderer."""

    def __init__(self) -> None:
        self.requests = Counter(
            "spillgate_requests_total",
            "Client requests by public model, API, outcome and the error class that ended them.",
            ("model", "api", "route", "outcome", "error_class", "recovered"),
        )
        self.attempts = Counter(
            "spillgate_attempts_total",
            "Upstream attempts by route and account; kind is attempt, retry, failover, probe, "
            "continuation or replay; upstream_api is the API the attempt spoke (another than the "
            "request's api when it was translated).",
            ("model", "route", "account", "kind", "outcome", "error_class", "scope", "upstream_api"),
        )
        self.latency = Histogram(
            "spillgate_request_duration_seconds", "Client request duration.", ("model", "api", "stream")
        )
        self.first_token = Histogram(
            "spillgate_first_token_seconds", "Time to the first content event of a stream.", ("model",)
        )
        self.attempt_latency = Histogram(
            "spillgate_attempt_duration_seconds", "Upstream attempt duration until its outcome.", ("route",)
        )
        self.spend = Counter(
            "spillgate_spend_usd_total",
            "What upstream attempts cost (USD), by public model and route; attempts whose price is "
            "unknown are left out (spillgate_unpriced_attempts_total).",
            ("model", "route"),
        )
        self.wasted = Counter(
            "spillgate_wasted_usd_total",
            "The part of spillgate_spend_usd_total the client got nothing from (a replayed stream, a "
            "continuation's re-read prompt, an answer ended by an in-band error), by attempt kind.",
            ("model", "route", "kind"),
        )
        self.client_spend = Counter(
            "spillgate_client_spend_usd_total",
            'What client requests cost (USD) by client key name ("" without keys); requests with '
            "some attempt of unknown price are left out.",
            ("client_key",),
        )
        self.scraped: list[Scraped] = []
        self.configured: frozenset[str] = frozenset()
        """Public names of the configuration: always their own label."""
        self._unconfigured: set[str] = set()

    def model_label(self, name: str) -> str:
        """``name``, or ``other`` once :data:`MAX_UNCONFIGURED_MODELS` unconfigured names have one."""
        if name in self.configured or name in self._unconfigured:
            return name
        if len(self._unconfigured) < MAX_UNCONFIGURED_MODELS:
            self._unconfigured.add(name)
            return name
        return OTHER

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptFinished):
            outcome = "ok" if event.ok else "error"
            self.attempts.inc(
                self.model_label(event.public_model),
                event.route,
                event.account or "",
                event.kind,
                outcome,
                event.error_class or "",
                event.scope or "",
                event.upstream_api or event.api,
            )
            self.attempt_latency.observe(event.latency, event.route)
            if event.cost_usd is not None:
                model = self.model_label(event.public_model)
                self.spend.inc(model, event.route, by=event.cost_usd)
                if event.wasted_usd:
                    self.wasted.inc(model, event.route, event.kind, by=event.wasted_usd)
        elif isinstance(event, RequestFinished):
            outcome = "ok" if event.ok else "error"
            model = self.model_label(event.public_model)
            self.requests.inc(
                model,
                event.api,
                event.route or "",
                outcome,
                event.error_class or "",
                event.recovered or "",
            )
            self.latency.observe(event.latency, model, event.api, "true" if event.stream else "false")
            if event.first_token is not None:
                self.first_token.observe(event.first_token, model)
            if event.cost_usd is not None:
                self.client_spend.inc(event.client_key or "", by=event.cost_usd)

    def gauge(
        self, name: str, help: str, labels: tuple[str, ...], read: Reader, *, fleet_wide: bool = False
    ) -> None:
        """A value read at scrape time; registering a name again replaces the reader (a reload).
        ``fleet_wide``: it reads shared state (see :attr:`Scraped.fleet_wide`)."""
        self._scrape(Scraped(name, help, labels, read, fleet_wide=fleet_wide))

    def counter_from(self, name: str, help: str, labels: tuple[str, ...], read: Reader) -> None:
        """A counter whose value lives elsewhere, read at scrape time."""
        self._scrape(Scraped(name, help, labels, read, kind="counter"))

    def _scrape(self, metric: Scraped) -> None:
        self.scraped = [m for m in self.scraped if m.name != metric.name]
        self.scraped.append(metric)

    def _kept(self) -> tuple[Counter | Histogram, ...]:
        return (
            self.requests,
            self.attempts,
            self.latency,
            self.first_token,
            self.attempt_latency,
            self.spend,
            self.wasted,
            self.client_spend,
        )

    def labelled_models(self, counts: Mapping[str, float]) -> list[tuple[tuple[str, ...], float]]:
        """``counts`` per model name under :meth:`model_label`'s labels (bounded, ``other`` summed):
        a reader of counts kept per upstream model name, which a ``*`` route takes from clients."""
        out: dict[str, float] = {}
        for name, n in counts.items():
            label = self.model_label(name)
            out[label] = out.get(label, 0.0) + float(n)
        return [((label,), n) for label, n in out.items()]

    def export(self) -> dict[str, list[list[Any]]]:
        """Every value, as plain JSON-able data (``[labels, value or histogram row]`` per series),
        for the other workers of one gateway to merge into their ``/metrics``."""
        out: dict[str, list[list[Any]]] = {}
        for metric in self._kept():
            if isinstance(metric, Counter):
                out[metric.name] = [[list(k), v] for k, v in metric.values.items()]
            else:
                out[metric.name] = [[list(k), row] for k, row in metric.series.items()]
        for scraped in self.scraped:
            out[scraped.name] = [[list(k), v] for k, v in scraped.read()]
        return out

    def render(self, others: Sequence[Mapping[str, Any]] = ()) -> bytes:
        """The exposition text; ``others``: the :meth:`export` of each other worker, summed in."""
        lines: list[str] = []
        for metric in self._kept():
            if not others:
                lines.extend(metric.render())
                continue
            merged = _merged(metric, others)
            lines.extend(merged.render())
        for scraped in self.scraped:
            theirs = [{tuple(k): float(v) for k, v in o.get(scraped.name, ())} for o in others]
            lines.extend(scraped.render(theirs))
        return ("\n".join(lines) + "\n").encode()


def _merged(metric: Counter | Histogram, others: Sequence[Mapping[str, Any]]) -> Counter | Histogram:
    if isinstance(metric, Counter):
        counter = Counter(metric.name, metric.help, metric.labels, dict(metric.values))
        for other in others:
            for labels, value in other.get(metric.name, ()):
                counter.inc(*labels, by=float(value))
        return counter
    histogram = Histogram(
        metric.name,
        metric.help,
        metric.labels,
        metric.buckets,
        {k: list(v) for k, v in metric.series.items()},
    )
    width = len(metric.buckets) + 3
    for other in others:
        for labels, row in other.get(metric.name, ()):
            if len(row) != width:
                continue  # another version's buckets: left out rather than misread
            mine = histogram.series.setdefault(tuple(labels), [0.0] * width)
            for i, value in enumerate(row):
                mine[i] += float(value)
    return histogram
