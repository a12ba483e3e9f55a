"""A reported usage in the price book's one convention (:class:`~spillgate.pricing.book.Tokens`:
``input`` counts every input token, cache reads and writes included).

Chat Completions' ``prompt_tokens`` and Responses' ``input_tokens`` already include the cached
tokens; Anthropic Messages' ``input_tokens`` counts only the uncached ones, beside
``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
"""

from __future__ import annotations

from spillgate.pricing.book import Tokens
from spillgate.protocols.apis import Api
from spillgate.protocols.usage import Usage


def tokens_of(api: Api, usage: Usage) -> Tokens | None:
    """``usage`` as ``api`` reports it, in the book's convention; ``None`` when it has no counts."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    reported = usage.input_tokens or 0
    read = usage.cached_tokens or 0
    write = usage.cache_write_tokens or 0
    total = reported + read + write if api is Api.ANTHROPIC_MESSAGES else reported
    return Tokens(input=total, output=usage.output_tokens or 0, cache_read=read, cache_write=write)
