"""Run the plan: send each probe in turn, tell the progress display, diagnose the results and say
what the probes cost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from spillgate.doctor.cost import ProbeCosts, probe_costs
from spillgate.doctor.diagnose import Diagnosis, diagnose
from spillgate.doctor.plan import alias_steps, next_steps
from spillgate.doctor.probe import send
from spillgate.doctor.target import DEFAULT_TIMEOUT, MAX_PROBES, AliasTarget, UrlTarget
from spillgate.doctor.types import Probe, ProbeResult
from spillgate.http.client import HttpClient
from spillgate.http.egress import tls_context
from spillgate.pricing.book import PriceBook
from spillgate.resilience.classify import Classifier


class Progress(Protocol):
    """Told about each step as it happens (the command prints one line per probe on stderr)."""

    def waiting(self, seconds: float, probe: Probe) -> None: ...

    def started(self, number: int, planned: int, probe: Probe) -> None: ...

    def finished(self, number: int, planned: int, result: ProbeResult) -> None: ...


class Silent:
    """A progress display that shows nothing."""

    def waiting(self, seconds: float, probe: Probe) -> None:
        pass

    def started(self, number: int, planned: int, probe: Probe) -> None:
        pass

    def finished(self, number: int, planned: int, result: ProbeResult) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Everything one run saw and concluded."""

    target: str
    """What was examined, in words (never a key)."""
    results: tuple[ProbeResult, ...]
    diagnosis: Diagnosis
    skipped: tuple[str, ...] = ()
    """Routes not probed, and why."""
    costs: ProbeCosts | None = None
    """What the probes cost; ``None`` when no prices were given or pricing is off."""

    @property
    def exit_code(self) -> int:
        """0 when everything answered, 1 when a problem was found."""
        return 0 if self.diagnosis.ok else 1


def describe_target(target: UrlTarget | AliasTarget) -> str:
    if isinstance(target, AliasTarget):
        source = f" in {target.source}" if target.source else ""
        return f"alias {target.alias}{source}: {len(target.routes)} route probes"
    fallback = f", else {target.apis[1].title}" if len(target.apis) > 1 else ""
    key = f", key {target.key_hint}" if target.key_hint else ", no key"
    return f"{target.root} model {target.model} ({target.apis[0].title}{fallback}{key})"


async def run_doctor(
    target: UrlTarget | AliasTarget,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    classifier: Classifier | None = None,
    progress: Progress | None = None,
    prices: PriceBook | None = None,
) -> DoctorReport:
    """Probe ``target`` (at most :data:`MAX_PROBES` requests, each within ``timeout``), diagnose, and
    cost the probes at ``prices`` (none: not costed)."""
    classifier = classifier if classifier is not None else Classifier()
    shown: Progress = progress if progress is not None else Silent()
    clients: dict[str, HttpClient] = {}
    done: list[ProbeResult] = []
    try:
        while len(done) < MAX_PROBES:
            steps = alias_steps(target, done) if isinstance(target, AliasTarget) else next_steps(target, done)
            if not steps:
                break
            probe = steps[0]
            planned = min(MAX_PROBES, len(done) + len(steps))
            if probe.wait_before > 0:
                shown.waiting(probe.wait_before, probe)
                await asyncio.sleep(probe.wait_before)
            shown.started(len(done) + 1, planned, probe)
            provider = probe.endpoint.provider
            base = provider.base_url
            client = clients.get(base)
            if client is None:
                # The provider's TLS settings and proxy, as the gateway's own pool has them.
                tls = None if provider.tls.default else tls_context(provider.tls)
                client = clients[base] = HttpClient(base, max_connections=4, tls=tls, proxy=provider.proxy)
            result = await send(probe, client, timeout=timeout, classifier=classifier)
            done.append(result)
            shown.finished(len(done), planned, result)
    finally:
        for client in clients.values():
            await client.close()
    alias = target.alias if isinstance(target, AliasTarget) else None
    skipped = target.skipped if isinstance(target, AliasTarget) else ()
    costs = probe_costs(done, prices) if prices is not None else None
    return DoctorReport(describe_target(target), tuple(done), diagnose(done, alias=alias), skipped, costs)
