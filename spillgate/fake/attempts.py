"""The record of every LLM request the fake upstream received."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from spillgate.fake.protocol import ApiProtocol, JsonValue


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One request to an LLM endpoint, logged when it arrived.

    ``outcome`` is what the fake set out to do with it: ``ok``, ``status:<code>``, ``reset``,
    ``never_answer``, ``cut``, ``stall``, ``stream_error``, ``malformed``, ``omit_done``,
    ``bad_request`` (a body that is not JSON or names no model) or ``not_served`` (a 404: the
    path's API is not among the model's ``apis``). ``path`` and ``protocol`` say which API the
    request came on.
    """

    time: float
    """``time.monotonic()`` at arrival."""
    path: str
    protocol: ApiProtocol
    model: str
    stream: bool
    headers: Mapping[str, str]
    """Request headers, lower-cased names."""
    body: bytes
    outcome: str
    fault_applied: bool
    """Whether the model's fault applied to this request (see ``rate``/``times``/``for_seconds``)."""
    request_id: str
    """The ``x-request-id`` the fake answered with."""

    def to_json(self, *, include_body: bool = False) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {
            "time": self.time,
            "path": self.path,
            "protocol": self.protocol,
            "model": self.model,
            "stream": self.stream,
            "headers": dict(self.headers),
            "outcome": self.outcome,
            "fault_applied": self.fault_applied,
            "request_id": self.request_id,
            "body_size": len(self.body),
        }
        if include_body:
            out["body"] = self.body.decode("utf-8", "replace")
        return out


class AttemptLog:
    """The newest ``max_records`` attempts (all of them when ``None``), oldest first."""

    __slots__ = ("_records",)

    def __init__(self, max_records: int | None = None) -> None:
        self._records: deque[AttemptRecord] = deque(maxlen=max_records)

    def append(self, record: AttemptRecord) -> None:
        self._records.append(record)

    def all(self) -> list[AttemptRecord]:
        return list(self._records)

    def for_model(self, model: str) -> list[AttemptRecord]:
        return [r for r in self._records if r.model == model]

    def clear(self) -> int:
        count = len(self._records)
        self._records.clear()
        return count

    def __len__(self) -> int:
        return len(self._records)
