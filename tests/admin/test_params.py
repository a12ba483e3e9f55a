"""Admin query parameters: instants, ranges, windows, limits; bad input is a 400 naming the parameter."""

from __future__ import annotations

import pytest

from spillgate.admin.errors import AdminError
from spillgate.admin.params import choice, duration, instant, limit, query_params, time_range

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z

INSTANTS = [
    ("1767225600", NOW),
    ("1767225600.5", NOW + 0.5),
    ("now", NOW),
    ("NOW", NOW),
    ("15m", NOW - 900),
    ("-15m", NOW - 900),
    ("24h", NOW - 86400),
    ("7d", NOW - 7 * 86400),
    ("1w", NOW - 604800),
    ("90s", NOW - 90),
    ("500ms", NOW - 0.5),
    ("2026-01-01T00:00:00Z", NOW),
    ("2026-01-01T00:00:00+00:00", NOW),
    ("2026-01-01T01:00:00+01:00", NOW),
    ("2026-01-01T00:00:00", NOW),  # no zone: UTC
    ("2026-01-01", NOW),
    (" 2026-01-01T00:00:30Z ", NOW + 30),
]


@pytest.mark.parametrize(("text", "expected"), INSTANTS)
def test_instant(text: str, expected: float) -> None:
    assert instant(text, "since", NOW) == pytest.approx(expected)


BAD_INSTANTS = [
    ("yesterday", "expected epoch seconds"),
    ("15 minutes", "expected epoch seconds"),
    ("", "expected epoch seconds"),
    ("1767225600000", "looks like milliseconds"),
    ("2026-13-01", "expected epoch seconds"),
    ("-5", "expected epoch seconds"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INSTANTS)
def test_bad_instant(text: str, message: str) -> None:
    with pytest.raises(AdminError) as info:
        instant(text, "until", NOW)
    assert info.value.status == 400 and info.value.param == "until"
    assert info.value.message.startswith("until: ") and message in info.value.message


RANGES = [
    (None, None, (NOW - 86400, NOW)),
    ("", "", (NOW - 86400, NOW)),
    ("1h", None, (NOW - 3600, NOW)),
    (None, "1h", (NOW - 3600 - 86400, NOW - 3600)),
    ("2h", "1h", (NOW - 7200, NOW - 3600)),
    ("1767225000", "1767225600", (1767225000.0, NOW)),
]


@pytest.mark.parametrize(("since", "until", "expected"), RANGES)
def test_time_range(since: str | None, until: str | None, expected: tuple[float, float]) -> None:
    assert time_range(since, until, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(("since", "until"), [("1h", "2h"), ("now", "now"), ("1767225600", "1767225600")])
def test_empty_range_is_rejected(since: str, until: str) -> None:
    with pytest.raises(AdminError, match="the range is empty") as info:
        time_range(since, until, NOW)
    assert info.value.status == 400


DURATIONS = [("15m", 900.0), ("1h", 3600.0), ("90", 90.0), ("2.5s", 2.5), ("1d", 86400.0), (" 5M ", 300.0)]


@pytest.mark.parametrize(("text", "expected"), DURATIONS)
def test_duration(text: str, expected: float) -> None:
    assert duration(text, "window") == expected


@pytest.mark.parametrize("text", ["-5m", "0", "0s", "abc", "5y", "inf"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(AdminError) as info:
        duration(text, "window")
    assert info.value.status == 400 and info.value.param == "window"


LIMITS = [(None, 50), ("", 50), ("10", 10), ("5000", 1000), ("1", 1)]


@pytest.mark.parametrize(("text", "expected"), LIMITS)
def test_limit(text: str | None, expected: int) -> None:
    assert limit(text, 50, 1000) == expected


@pytest.mark.parametrize("text", ["0", "-1", "ten", "1.5"])
def test_bad_limit(text: str) -> None:
    with pytest.raises(AdminError, match="limit: expected a whole number"):
        limit(text, 50, 1000)


def test_choice_and_query() -> None:
    assert choice(None, "by", ("a", "b"), "a") == "a"
    assert choice("b", "by", ("a", "b"), "a") == "b"
    with pytest.raises(AdminError, match="by: expected one of a, b, got 'c'"):
        choice("c", "by", ("a", "b"), "a")
    assert query_params("by=route&since=15m&by=account&x=") == {"by": "account", "since": "15m", "x": ""}
    long = "x" * 200
    with pytest.raises(AdminError) as info:
        choice(long, "by", ("a",), "a")
    assert long not in info.value.message  # shortened in the message
