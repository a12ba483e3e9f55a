"""``plural``: counted nouns in what the gateway prints."""

from __future__ import annotations

import pytest

from spillgate.doctor.report import outcome_text
from spillgate.textutil import plural


@pytest.mark.parametrize(
    ("n", "word", "words", "expected"),
    [
        (0, "model", None, "0 models"),
        (1, "model", None, "1 model"),
        (2, "model", None, "2 models"),
        (1, "client key", None, "1 client key"),
        (3, "client key", None, "3 client keys"),
        (1, "entry", "entries", "1 entry"),
        (2, "entry", "entries", "2 entries"),
        (-1, "account", None, "-1 accounts"),
    ],
)
def test_plural(n: int, word: str, words: str | None, expected: str) -> None:
    assert plural(n, word, words) == expected


def test_doctor_lists_one_model_in_the_singular() -> None:
    from spillgate.doctor.diagnose import describe_result
    from spillgate.doctor.types import Role
    from tests.doctor.helpers import result

    assert outcome_text(result(Role.LIST, models=("gpt-x",))) == "200 OK, 1 model (4 ms)"
    assert outcome_text(result(Role.LIST, models=("gpt-x", "gpt-y"))) == "200 OK, 2 models (4 ms)"
    assert "200, 1 model listed" in describe_result(result(Role.LIST, models=("gpt-x",)))
