"""Token usage as each API reports it, read from a response body or a stream's usage events
(each API's own reading is its adapter's ``usage``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spillgate.protocols.adapter import adapter_for
from spillgate.protocols.apis import Api


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    """As the API counts it: Chat and Responses include cached tokens, Messages does not."""
    output_tokens: int | None = None
    cached_tokens: int | None = None
    """Input tokens read from the prompt cache."""
    cache_write_tokens: int | None = None
    """Input tokens written to the prompt cache (Messages' ``cache_creation_input_tokens``)."""

    def merge(self, other: Usage) -> Usage:
        """Fields of ``other`` where it has them (Anthropic streams report input and output apart)."""
        return Usage(
            other.input_tokens if other.input_tokens is not None else self.input_tokens,
            other.output_tokens if other.output_tokens is not None else self.output_tokens,
            other.cached_tokens if other.cached_tokens is not None else self.cached_tokens,
            other.cache_write_tokens if other.cache_write_tokens is not None else self.cache_write_tokens,
        )


def as_count(value: Any) -> int | None:
    """An integer count (a boolean is not one), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def from_usage_object(api: Api, usage: Any) -> Usage | None:
    """A ``usage`` object of ``api``: chat counts prompt/completion tokens, the others input/output."""
    return adapter_for(api).usage(usage)
