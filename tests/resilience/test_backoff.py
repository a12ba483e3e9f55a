"""Waits as tables: every header form, precedence, garbage, dates, jitter bounds, Retry-After out."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, cast

import pytest

from spillgate.resilience.backoff import MAX_RETRY_AFTER, backoff_delay, format_retry_after, retry_after

NOW = 1_700_000_000.0
"""Tue, 14 Nov 2023 22:13:20 GMT"""

OA_REQ, OA_TOK = "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"
OA_REQ_LEFT, OA_TOK_LEFT = "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"
AN = "anthropic-ratelimit-"

# headers -> seconds (None: nothing usable)
CASES: list[tuple[str, dict[str, str], float | None]] = [
    ("nothing", {}, None),
    ("unrelated headers", {"content-type": "application/json", "x-request-id": "abc"}, None),
    # retry-after-ms
    ("ms", {"retry-after-ms": "1500"}, 1.5),
    ("ms fractional", {"retry-after-ms": "250.5"}, 0.2505),
    ("ms negative clamps", {"retry-after-ms": "-100"}, 0.0),
    # retry-after
    ("seconds", {"retry-after": "7"}, 7.0),
    ("seconds with spaces", {"retry-after": " 7 "}, 7.0),
    ("seconds fractional", {"retry-after": "1.5"}, 1.5),
    ("seconds zero", {"retry-after": "0"}, 0.0),
    ("seconds negative clamps", {"retry-after": "-5"}, 0.0),
    ("http date", {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, 30.0),
    ("http date, obsolete rfc 850 form", {"retry-after": "Tuesday, 14-Nov-23 22:14:20 GMT"}, 60.0),
    ("http date, asctime form", {"retry-after": "Tue Nov 14 22:13:25 2023"}, 5.0),
    ("http date in the past clamps", {"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, 0.0),
    # precedence
    ("ms before retry-after", {"retry-after-ms": "500", "retry-after": "10"}, 0.5),
    ("retry-after before resets", {"retry-after": "3", OA_REQ: "1m", OA_REQ_LEFT: "0"}, 3.0),
    ("ms before resets", {"retry-after-ms": "20", f"{AN}requests-reset": "2023-11-14T22:14:20Z"}, 0.02),
    # garbage falls through to the next source
    ("garbage ms, then retry-after", {"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
    ("garbage retry-after, then resets", {"retry-after": "later", OA_TOK: "2s"}, 2.0),
    (
        "garbage everywhere",
        {"retry-after-ms": "x", "retry-after": "y", OA_REQ: "z", f"{AN}tokens-reset": "w"},
        None,
    ),
    ("nan and inf are garbage", {"retry-after-ms": "nan", "retry-after": "inf"}, None),
    ("empty values", {"retry-after-ms": "", "retry-after": "  "}, None),
    ("hex is garbage", {"retry-after": "0x10"}, None),
    # OpenAI reset durations (Go time.Duration strings)
    ("go seconds", {OA_REQ: "1s"}, 1.0),
    ("go minutes and zero seconds", {OA_REQ: "6m0s"}, 360.0),
    ("go milliseconds", {OA_TOK: "20ms"}, 0.02),
    ("go hours minutes fractional seconds", {OA_TOK: "1h2m3.5s"}, 3723.5),
    ("go fractional seconds", {OA_TOK: "8.64s"}, 8.64),
    ("go microseconds", {OA_TOK: "500us"}, 0.0005),
    ("go micro sign", {OA_TOK: "1.5µs"}, 0.0000015),
    ("go nanoseconds", {OA_TOK: "100ns"}, 1e-7),
    ("go zero", {OA_TOK: "0s"}, 0.0),
    ("go bare zero", {OA_TOK: "0"}, 0.0),
    ("bare number taken as seconds", {OA_TOK: "3"}, 3.0),
    ("go negative clamps", {OA_TOK: "-1s"}, 0.0),
    ("go garbage: unknown unit", {OA_TOK: "1x"}, None),
    ("go garbage: trailing number", {OA_TOK: "1s2"}, None),
    ("go garbage: unit alone", {OA_TOK: "s"}, None),
    # OpenAI: the exhausted limit decides
    ("requests exhausted", {OA_REQ: "1s", OA_REQ_LEFT: "0", OA_TOK: "30s", OA_TOK_LEFT: "5000"}, 1.0),
    ("tokens exhausted", {OA_REQ: "1s", OA_REQ_LEFT: "59", OA_TOK: "30s", OA_TOK_LEFT: "0"}, 30.0),
    ("both exhausted: the longer", {OA_REQ: "45s", OA_REQ_LEFT: "0", OA_TOK: "30s", OA_TOK_LEFT: "0"}, 45.0),
    ("none exhausted: the longest", {OA_REQ: "1s", OA_REQ_LEFT: "3", OA_TOK: "30s", OA_TOK_LEFT: "10"}, 30.0),
    ("no remaining headers: the longest", {OA_REQ: "1s", OA_TOK: "30s"}, 30.0),
    ("garbage remaining is not exhausted", {OA_REQ: "1s", OA_REQ_LEFT: "none", OA_TOK: "30s"}, 30.0),
    (
        "exhausted but its reset is garbage: the others",
        {OA_REQ: "bad", OA_REQ_LEFT: "0", OA_TOK: "30s"},
        30.0,
    ),
    # Anthropic reset timestamps (RFC 3339)
    ("anthropic requests", {f"{AN}requests-reset": "2023-11-14T22:13:30Z"}, 10.0),
    ("anthropic fractional and offset", {f"{AN}tokens-reset": "2023-11-14T23:13:30.5+01:00"}, 10.5),
    ("anthropic nanoseconds", {f"{AN}tokens-reset": "2023-11-14T22:13:30.250000000Z"}, 10.25),
    ("anthropic without zone is utc", {f"{AN}tokens-reset": "2023-11-14T22:13:30"}, 10.0),
    ("anthropic in the past clamps", {f"{AN}requests-reset": "2023-11-14T22:00:00Z"}, 0.0),
    ("anthropic garbage", {f"{AN}requests-reset": "tomorrow"}, None),
    (
        "anthropic: the exhausted limit decides",
        {
            f"{AN}requests-reset": "2023-11-14T22:13:30Z",
            f"{AN}requests-remaining": "40",
            f"{AN}tokens-reset": "2023-11-14T22:14:20Z",
            f"{AN}tokens-remaining": "1000",
            f"{AN}input-tokens-reset": "2023-11-14T22:13:40Z",
            f"{AN}input-tokens-remaining": "0",
            f"{AN}output-tokens-reset": "2023-11-14T22:13:50Z",
            f"{AN}output-tokens-remaining": "12",
        },
        20.0,
    ),
    (
        "anthropic: none exhausted, the longest",
        {
            f"{AN}requests-reset": "2023-11-14T22:13:30Z",
            f"{AN}requests-remaining": "40",
            f"{AN}output-tokens-reset": "2023-11-14T22:13:50Z",
            f"{AN}output-tokens-remaining": "12",
        },
        30.0,
    ),
    (
        "openai and anthropic together: exhausted wins across both",
        {
            OA_REQ: "5s",
            OA_REQ_LEFT: "0",
            f"{AN}tokens-reset": "2023-11-14T22:14:00Z",
            f"{AN}tokens-remaining": "9",
        },
        5.0,
    ),
]


@pytest.mark.parametrize(("case", "headers", "seconds"), CASES, ids=[c[0] for c in CASES])
def test_retry_after(case: str, headers: dict[str, str], seconds: float | None) -> None:
    got = retry_after(headers, now_wall=NOW)
    if seconds is None:
        assert got is None
    else:
        assert got == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": None},
        {"retry-after-ms": 12},
        {"retry-after": b"5"},
        {OA_REQ: ["1s"], OA_REQ_LEFT: object()},
        {f"{AN}requests-reset": 1.5},
        {"retry-after": "Tue, 99 Nov 2023 99:99:99 GMT"},
        {"retry-after": "9" * 400},
        {"retry-after-ms": "1e400"},
        {f"{AN}requests-reset": "99999-01-01T00:00:00Z"},
    ],
    ids=repr,
)
def test_retry_after_never_raises(headers: dict[str, Any]) -> None:
    got = retry_after(cast(Mapping[str, str], headers), now_wall=NOW)
    assert got is None or (got >= 0 and math.isfinite(got))


def test_retry_after_defaults_to_the_wall_clock() -> None:
    assert retry_after({"retry-after": "Mon, 01 Jan 1990 00:00:00 GMT"}) == 0.0
    got = retry_after({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert got is not None and got > 0


def test_retry_after_with_a_broken_mapping() -> None:
    class Broken(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise RuntimeError("boom")

        def __iter__(self) -> Any:
            return iter(())

        def __len__(self) -> int:
            return 0

        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    assert retry_after(Broken(), now_wall=NOW) is None


# retry number, base, cap -> the un-jittered delay
DELAYS = [
    (0, 0.25, 4.0, 0.25),
    (1, 0.25, 4.0, 0.5),
    (2, 0.25, 4.0, 1.0),
    (3, 0.25, 4.0, 2.0),
    (4, 0.25, 4.0, 4.0),
    (5, 0.25, 4.0, 4.0),
    (10_000, 0.25, 4.0, 4.0),
    (-3, 0.25, 4.0, 0.25),
    (2, 0.5, 8.0, 2.0),
    (0, 0.0, 4.0, 0.0),
]


@pytest.mark.parametrize(("retry", "base", "cap", "nominal"), DELAYS)
def test_backoff_delay_jitter_bounds(retry: int, base: float, cap: float, nominal: float) -> None:
    rng = random.Random(1234)
    samples = [backoff_delay(retry, base, cap, rng) for _ in range(2000)]
    low, high = 0.5 * nominal, min(cap, 1.5 * nominal)
    assert all(low <= s <= high for s in samples)
    if nominal > 0:
        assert min(samples) < low + 0.05 * nominal  # the jitter really spreads
        assert max(samples) > high - 0.05 * nominal


def test_backoff_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(n, rng=random.Random(7)) for n in range(6)]
    second = [backoff_delay(n, rng=random.Random(7)) for n in range(6)]
    assert first == second


def test_backoff_delay_without_an_rng_stays_in_bounds() -> None:
    assert all(0.125 <= backoff_delay(0) <= 0.375 for _ in range(200))
    assert all(2.0 <= backoff_delay(30) <= 4.0 for _ in range(200))


FORMATS = [
    (0.0, "1"),
    (0.2, "1"),
    (1.0, "1"),
    (1.0001, "2"),
    (29.5, "30"),
    (30.0, "30"),
    (-5.0, "1"),
    (math.nan, "1"),
    (3600.0, "3600"),
    (1e12, str(MAX_RETRY_AFTER)),
    (math.inf, str(MAX_RETRY_AFTER)),
]


@pytest.mark.parametrize(("seconds", "header"), FORMATS)
def test_format_retry_after(seconds: float, header: str) -> None:
    assert format_retry_after(seconds) == header
