"""Small helpers for the text the gateway prints."""

from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """``plural(1, "model")`` -> ``"1 model"``, ``plural(2, "model")`` -> ``"2 models"``;
    ``words`` is the plural when it is not ``word + "s"`` (``plural(3, "entry", "entries")``)."""
    return f"{n} {word if n == 1 else words or word + 's'}"
