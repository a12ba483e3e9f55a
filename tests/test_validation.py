"""The shared checks of loaded values: each accepts what it documents and names the path otherwise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import pytest

from spillgate.validation import (
    ValidationError,
    check_keys,
    duration_seconds,
    file_keys,
    key,
    listed,
    parse_duration,
    require_bool,
    require_choice,
    require_duration,
    require_enum,
    require_float,
    require_int,
    require_list,
    require_mapping,
    require_ratio,
    require_scalar,
    require_size,
    require_str,
    require_switch,
    required_keys,
)


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


Check = Callable[[object, str], object]

# (check, value, what it returns)
GOOD: list[tuple[str, Check, object, object]] = [
    ("mapping", require_mapping, {"a": 1}, {"a": 1}),
    ("mapping_none", require_mapping, None, {}),
    ("list", require_list, [1, 2], [1, 2]),
    ("list_none", require_list, None, []),
    ("str", require_str, "x", "x"),
    ("str_empty_ok", lambda v, p: require_str(v, p, empty_ok=True), "", ""),
    ("scalar_int", require_scalar, 3, "3"),
    ("scalar_float", require_scalar, 1.5, "1.5"),
    ("bool", require_bool, False, False),
    ("switch_on", require_switch, "on", True),
    ("switch_off", require_switch, False, False),
    ("int", require_int, 7, 7),
    ("int_bounds", lambda v, p: require_int(v, p, minimum=1, maximum=9), 9, 9),
    ("float_int", require_float, 2, 2.0),
    ("ratio", require_ratio, 0.25, 0.25),
    ("ratio_edge", require_ratio, 1, 1.0),
    ("choice", lambda v, p: require_choice(v, p, ("day", "month")), "month", "month"),
    ("enum", lambda v, p: require_enum(Colour, v, p, "colour"), "blue", Colour.BLUE),
    ("duration_ms", require_duration, "250ms", 0.25),
    ("duration_minutes", require_duration, "2m", 120.0),
    ("duration_number", require_duration, 3, 3.0),
    ("duration_spaces", require_duration, " 90 S ", 90.0),
    ("duration_zero_ok", lambda v, p: require_duration(v, p, zero=True), "0s", 0.0),
    ("duration_zero_number", lambda v, p: require_duration(v, p, zero=True), 0, 0.0),
    ("size_mib", require_size, "32MiB", 32 * 2**20),
    ("size_kb", require_size, "64kb", 64_000),
    ("size_bytes", require_size, 4096, 4096),
    ("size_zero_ok", lambda v, p: require_size(v, p, zero=True), 0, 0),
]


@pytest.mark.parametrize(("check", "value", "expected"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_accepted(check: Check, value: object, expected: object) -> None:
    assert check(value, "here") == expected


# (check, value, the whole message or its start)
BAD: list[tuple[str, Check, object, str]] = [
    ("mapping", require_mapping, [1], "a.b: expected a mapping, got a list"),
    ("mapping_key", require_mapping, {1: 2}, "a.b: keys must be strings, got 1"),
    (
        "mapping_none_refused",
        lambda v, p: require_mapping(v, p, none_ok=False, show_value=True),
        None,
        "a.b: expected a mapping, got null",
    ),
    ("list", require_list, "x", "a.b: expected a list, got a string"),
    (
        "list_what",
        lambda v, p: require_list(v, p, what="a list of rules"),
        {},
        "a.b: expected a list of rules",
    ),
    ("str_blank", require_str, " ", "a.b: expected a non-empty string, got a string"),
    ("str_number", require_str, 5, "a.b: expected a non-empty string, got int"),
    (
        "str_shown",
        lambda v, p: require_str(v, p, show_value=True),
        5,
        "a.b: expected a non-empty string, got int 5",
    ),
    ("str_secret_not_shown", require_str, ["sk-secret"], "a.b: expected a non-empty string, got a list"),
    ("scalar_bool", require_scalar, True, "a.b: expected a string, got bool"),
    ("bool", require_bool, "yes", "a.b: expected true or false, got a string"),
    ("switch", require_switch, "maybe", "a.b: expected on or off, got 'maybe'"),
    ("int_bool", require_int, True, "a.b: expected an integer, got bool"),
    (
        "int_float",
        lambda v, p: require_int(v, p, show_value=True),
        1.5,
        "a.b: expected an integer, got float 1.5",
    ),
    ("int_minimum", lambda v, p: require_int(v, p, minimum=1), 0, "a.b: must be at least 1, got 0"),
    ("int_maximum", lambda v, p: require_int(v, p, maximum=9), 10, "a.b: must be at most 9, got 10"),
    (
        "int_range",
        lambda v, p: require_int(v, p, minimum=100, maximum=599),
        700,
        "a.b: must be between 100 and 599, got 700",
    ),
    ("float_nan", require_float, float("nan"), "a.b: expected a number, got nan"),
    ("float_bool", require_float, True, "a.b: expected a number, got True"),
    ("ratio", require_ratio, 1.5, "a.b: expected a number between 0 and 1, got 1.5"),
    (
        "choice",
        lambda v, p: require_choice(v, p, ("day", "month", "total")),
        "week",
        "a.b: expected 'day', 'month' or 'total', got 'week'",
    ),
    (
        "choice_two",
        lambda v, p: require_choice(v, p, ("any", "all")),
        "or",
        "a.b: expected 'any' or 'all', got 'or'",
    ),
    (
        "enum",
        lambda v, p: require_enum(Colour, v, p, "colour"),
        "green",
        "a.b: unknown colour 'green' (one of: red, blue)",
    ),
    ("duration_text", require_duration, "soon", "a.b: expected a duration like 5s, 250ms or 2m, got 'soon'"),
    ("duration_unit", require_duration, "5 parsecs", "a.b: expected a duration like 5s"),
    ("duration_bool", require_duration, True, "a.b: expected a duration like 5s"),
    ("duration_inf", require_duration, float("inf"), "a.b: expected a duration like 5s"),
    ("duration_zero", require_duration, "0s", "a.b: a duration must be positive, got '0s'"),
    ("duration_negative", require_duration, -1, "a.b: a duration must be positive, got -1"),
    (
        "duration_negative_zero_ok",
        lambda v, p: require_duration(v, p, zero=True),
        -0.1,
        "a.b: a duration must be 0 or positive, got -0.1",
    ),
    (
        "size_text",
        require_size,
        "huge",
        "a.b: expected a size such as 32MiB or a number of bytes, got 'huge'",
    ),
    ("size_small", require_size, "1B", "a.b: must be at least 1024 bytes, got 1"),
    (
        "size_small_zero_ok",
        lambda v, p: require_size(v, p, zero=True),
        10,
        "a.b: must be 0 or at least 1024 bytes",
    ),
    ("size_bool", require_size, False, "a.b: expected a size such as 32MiB"),
]


@pytest.mark.parametrize(("check", "value", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refused_with_the_path(check: Check, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check(value, "a.b")
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("m", "required", "message"),
    [
        ({"a": 1, "b": 2}, (), None),
        ({"a": 1, "zz": 2}, (), "s.zz: unknown key (allowed here: a, b, colour)"),
        ({"colur": 1}, (), "s.colur: unknown key (allowed here: a, b, colour); did you mean 'colour'?"),
        ({"b": 1}, ("a",), "s.a: required key is missing"),
    ],
)
def test_check_keys(m: dict[str, object], required: tuple[str, ...], message: str | None) -> None:
    if message is None:
        check_keys(m, "s", {"a", "b", "colour"}, required)
        return
    with pytest.raises(ValidationError) as info:
        check_keys(m, "s", {"a", "b", "colour"}, required)
    assert str(info.value) == message


def test_listed() -> None:
    assert listed(None) == [] and listed(3) == [3] and listed([1, 2]) == [1, 2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("3", 3.0),
    ],
)
def test_the_one_duration_grammar(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds
    assert parse_duration(text) == seconds
    assert duration_seconds("fast") is None


def test_parse_duration_has_no_path() -> None:
    with pytest.raises(ValueError, match=r"^a duration must be positive, got 0$"):
        parse_duration(0)


@dataclass(frozen=True)
class Inner:
    depth: int = 1


@dataclass(frozen=True)
class Described:
    name: str
    sha: str = field(metadata=key("hash"))
    ratio: float = field(default=0.5, metadata=key("ratio", group="budget", unit="ratio"))
    floor: int = field(default=1, metadata=key("floor", group="budget", minimum=0))
    label: str = field(default="", metadata=key(read=False))
    provider: str = field(default="", metadata=key(required=False))
    inner: Inner = field(default_factory=Inner, metadata=key(flatten=True))
    derived: int = field(default=0, init=False)


def test_keys_come_from_the_fields() -> None:
    assert file_keys(Described) == {"name", "hash", "budget", "provider", "depth"}
    assert file_keys(Described, "budget") == {"ratio", "floor"}
    assert required_keys(Described) == {"name", "hash"}


def test_flatten_needs_a_dataclass() -> None:
    @dataclass
    class Bad:
        x: int = field(default=0, metadata=key(flatten=True))

    with pytest.raises(TypeError, match="only a dataclass field can be flattened"):
        file_keys(Bad)
