"""The fake upstream's behaviours read through the shared checks (spillgate.validation)."""

from __future__ import annotations

import dataclasses

import pytest

from spillgate.fake import Fault, FaultConfigError, parse_behaviors
from spillgate.fake.behavior import _CONVERTERS
from spillgate.validation import ValidationError


def test_every_fault_field_is_a_key() -> None:
    """The keys a behaviour may set are the fault's init fields, plus ``preset`` and ``retry_after``."""
    fields = {f.name for f in dataclasses.fields(Fault) if f.init}
    assert set(_CONVERTERS) == fields | {"preset", "retry_after"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"headers_delay": "250ms"}, Fault(headers_delay=0.25)),
        ({"first_content_delay": "2s", "event_delay": 0}, Fault(first_content_delay=2.0)),
        ({"for_seconds": "1m", "preset": "capacity"}, Fault.capacity(for_seconds=60.0)),
        ({"preset": "rate_limited", "retry_after": "1500ms"}, Fault.rate_limited(1.5)),
        ({"error_message": ""}, Fault(error_message="")),
    ],
)
def test_delays_take_the_one_duration_grammar(data: dict[str, object], expected: Fault) -> None:
    assert Fault.from_dict(data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"event_delay": "-1s"}, "fault.event_delay: expected a duration like 5s, 250ms or 2m, got '-1s'"),
        ({"event_delay": -1}, "fault.event_delay: a duration must be 0 or positive, got -1"),
        ({"headers_delay": float("inf")}, "fault.headers_delay: expected a duration like 5s"),
        ({"status": 700}, "fault.status: must be between 100 and 599, got 700"),
        ({"status": "503"}, "fault.status: expected an integer, got a string '503'"),
        ({"times": -1}, "fault.times: must be at least 0, got -1"),
        ({"chunks": 0}, "fault.chunks: must be at least 1, got 0"),
        ({"rate": 1.5}, "fault.rate: expected a number between 0 and 1, got 1.5"),
        ({"never_answer": "yes"}, "fault.never_answer: expected true or false, got a string 'yes'"),
        ({"headers": {"x": None}}, "fault.headers.x: expected a string, got null"),
        ({"omit_dnoe": True}, "fault.omit_dnoe: unknown key (allowed here: apis, body, chunks,"),
        ({1: 2}, "fault: keys must be strings, got 1"),
    ],
)
def test_errors_name_the_key(data: dict[object, object], message: str) -> None:
    with pytest.raises(FaultConfigError) as info:
        Fault.from_dict(data)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, ValidationError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "behaviors: expected a mapping with a 'models' key, got a list"),
        ({"models": []}, "behaviors.models: expected a mapping of model names to faults, got a list"),
        ({"models": {"": {}}}, "behaviors.models: expected a non-empty string, got a string ''"),
        ({"modles": {}}, "behaviors.modles: unknown key (allowed here: models); did you mean 'models'?"),
    ],
)
def test_behaviours_file_errors(data: object, message: str) -> None:
    with pytest.raises(FaultConfigError) as info:
        parse_behaviors(data)
    assert str(info.value) == message
