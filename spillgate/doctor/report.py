"""Show a run: progress lines on stderr as probes go, the diagnosis (and what the probes cost) as
text or JSON on stdout."""

from __future__ import annotations

from typing import TextIO

import orjson

from spillgate.config.durations import format_wait
from spillgate.doctor.cost import ProbeCost, ProbeCosts, cost_text, total_text
from spillgate.doctor.diagnose import category_of
from spillgate.doctor.runner import DoctorReport
from spillgate.doctor.types import BodyKind, Probe, ProbeResult
from spillgate.protocols.usage import Usage
from spillgate.textutil import plural


def outcome_text(result: ProbeResult) -> str:
    """``200 OK (12 ms)``, ``503 capacity (41 ms)``, ``connect_failed (1 ms)``, with an announced wait."""
    took = f"({result.latency * 1000:.0f} ms)"
    if result.ok:
        listed = f", {plural(len(result.models), 'model')}" if result.models else ""
        return f"{result.status} OK{listed} {took}"
    name = result.error_class.value if result.error_class is not None else "failed"
    head = f"{result.status} {name}" if result.status is not None else name
    if result.status is not None and result.body_kind in (BodyKind.HTML, BodyKind.TEXT, BodyKind.EMPTY):
        head += f" ({result.body_kind.value} body)"
    wait = f", retry after {format_wait(result.retry_after)}" if result.retry_after is not None else ""
    return f"{head}{wait} {took}"


class StderrProgress:
    """``[2/5] POST /v1/chat/completions model=gpt-x … 503 capacity (41 ms)``, one line per probe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def waiting(self, seconds: float, probe: Probe) -> None:
        self._stream.write(f"      waiting {format_wait(seconds)} before trying {probe.model} again …\n")
        self._stream.flush()

    def started(self, number: int, planned: int, probe: Probe) -> None:
        self._stream.write(f"[{number}/{planned}] {probe.describe()} … ")
        self._stream.flush()

    def finished(self, number: int, planned: int, result: ProbeResult) -> None:
        self._stream.write(outcome_text(result) + "\n")
        self._stream.flush()


def render_text(report: DoctorReport) -> str:
    d = report.diagnosis
    lines = [f"spillgate doctor: {report.target}", "", f"Diagnosis: {d.category.value}", f"  {d.summary}"]
    lines += ["", "Evidence:"]
    lines += [f"  - {line}" for line in d.evidence]
    if report.skipped:
        lines += ["", "Not probed:"]
        lines += [f"  - {line}" for line in report.skipped]
    if report.costs is not None:
        lines += ["", "What the probes cost:"]
        lines += [f"  - {line}" for line in cost_lines(report)]
    lines += ["", "What to do next:"]
    lines += [f"  {i}. {line}" for i, line in enumerate(d.advice, 1)]
    return "\n".join(lines) + "\n"


def cost_lines(report: DoctorReport) -> list[str]:
    """One line per billed probe (``[1] POST … : $0.0000036 (16 in + 2 out tokens, genai-prices)``)
    and the total; nothing when the probes were not costed."""
    costs = report.costs
    if costs is None:
        return []
    lines = [
        f"[{number}] {result.probe.describe()}: {cost_text(cost)}"
        for number, (result, cost) in enumerate(zip(report.results, costs.each, strict=True), 1)
        if cost is not None
    ]
    return [*lines, f"total: {total_text(costs)}"]


def render_json(report: DoctorReport) -> str:
    d = report.diagnosis
    document = {
        "target": report.target,
        "category": d.category.value,
        "ok": d.ok,
        "exit_code": report.exit_code,
        "summary": d.summary,
        "evidence": list(d.evidence),
        "advice": list(d.advice),
        "retry_after": d.retry_after,
        "answered": list(d.answered),
        "via_spillgate": d.via_spillgate,
        "skipped": list(report.skipped),
        "probes": [_probe_json(r, _cost_at(report, n)) for n, r in enumerate(report.results)],
        "cost": _total_json(report.costs),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _cost_at(report: DoctorReport, index: int) -> ProbeCost | None:
    return report.costs.each[index] if report.costs is not None else None


def _total_json(costs: ProbeCosts | None) -> dict[str, object] | None:
    if costs is None:
        return None
    return {"total_usd": costs.total_usd, "billed": costs.billed, "unknown": costs.unknown}


def _usage_json(usage: Usage | None) -> dict[str, object] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }


def _cost_json(cost: ProbeCost | None) -> dict[str, object] | None:
    if cost is None:
        return None
    t = cost.tokens
    tokens = (
        None
        if t is None
        else {"input": t.input, "output": t.output, "cache_read": t.cache_read, "cache_write": t.cache_write}
    )
    return {"usd": cost.usd, "source": cost.source, "tokens": tokens}


def _probe_json(r: ProbeResult, cost: ProbeCost | None) -> dict[str, object]:
    p = r.probe
    return {
        "role": p.role.value,
        "route": p.endpoint.label or None,
        "host": p.endpoint.host,
        "key": p.endpoint.key_hint,
        "method": p.method,
        "path": p.shown_path,
        "api": p.api.value,
        "model": p.model or None,
        "stream": p.stream,
        "waited": p.wait_before,
        "status": r.status,
        "ok": r.ok,
        "category": category_of(r).value,
        "error_class": r.error_class.value if r.error_class is not None else None,
        "rule": r.rule,
        "error_type": r.error_type,
        "error_code": r.error_code,
        "message": r.message,
        "transport": r.transport.value if r.transport is not None else None,
        "in_stream": r.in_stream,
        "body": r.body_kind.value,
        "retry_after": r.retry_after,
        "latency_ms": round(r.latency * 1000, 1),
        "first_content_ms": round(r.first_content * 1000, 1) if r.first_content is not None else None,
        "headers": dict(r.headers),
        "models": list(r.models),
        "usage": _usage_json(r.usage),
        "cost": _cost_json(cost),
    }
