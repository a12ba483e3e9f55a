"""What an attempt cost: its tokens (as the upstream reported them, or estimated for a stream that
has no usage report), priced by the runtime's :class:`~spillgate.pricing.book.PriceBook`.

The estimate (``estimated`` on the record): input tokens at four bytes of the client's request
body a token (its JSON framing counted like text: on the high side for short messages; decoding
the request for a closer count would cost more than the rest of the costing together, on every
Chat stream whose client did not ask for ``include_usage``) plus, for a continuation, the
prefill's characters at four a token; output tokens from the characters of answer text the
attempt produced, at four a token (tool-call arguments and reasoning that were not relayed as
text are not counted: on the low side). A token count the stream did report (an Anthropic
``message_start``'s input) is used as reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spillgate.pricing.book import PriceBook, Tokens
from spillgate.pricing.tokens import tokens_of
from spillgate.protocols.apis import Api
from spillgate.protocols.request import ParsedRequest
from spillgate.protocols.translate.estimate import CHARS_PER_TOKEN
from spillgate.protocols.usage import Usage

from .attempt import Attempt


@dataclass(frozen=True, slots=True)
class Spent:
    """One attempt's tokens and their price."""

    tokens: Tokens | None
    cost: float | None
    """USD; 0.0 for an attempt the upstream did not bill; ``None``: unknown price or pricing off."""
    input_cost: float | None
    estimated: bool = False


def not_billed(book: PriceBook) -> Spent:
    """An attempt that failed before any output (the upstream bills nothing for it)."""
    return Spent(None, 0.0, 0.0) if book.settings.enabled else Spent(None, None, None)


def priced(
    book: PriceBook, attempt: Attempt, tokens: Tokens, *, estimated: bool = False, with_input: bool = False
) -> Spent:
    """``with_input``: the input's part of the cost too (a second lookup; a continuation wastes it)."""
    provider = attempt.provider
    args = (provider.name, provider.protocol, provider.base_url, attempt.upstream_model)
    cost = book.cost(*args, tokens).usd
    input_cost: float | None = None
    if cost is not None and with_input:
        if tokens.output:
            only_input = Tokens(tokens.input, 0, tokens.cache_read, tokens.cache_write)
            input_cost = book.cost(*args, only_input).usd
        else:
            input_cost = cost
    return Spent(tokens, cost, input_cost, estimated)


def reported(book: PriceBook, attempt: Attempt, api: Api, usage: Usage | None) -> Spent:
    """A whole answer's cost from the usage it reported (in the client's ``api``); with no usage,
    its tokens are unknown: nothing to price (``tokens`` and cost None)."""
    tokens = tokens_of(api, usage) if usage is not None else None
    if tokens is None:
        return Spent(None, None, None)
    return priced(book, attempt, tokens)


def estimated_input(parsed: ParsedRequest) -> int:
    """The client's request in tokens, estimated from its size."""
    return math.ceil(len(parsed.body) / CHARS_PER_TOKEN)


def streamed(
    book: PriceBook,
    attempt: Attempt,
    parsed: ParsedRequest,
    usage: Usage | None,
    text_chars: int,
    prefill_chars: int = 0,
    *,
    complete: bool = False,
    with_input: bool = False,
) -> Spent:
    """A stream's cost: from its usage report when it ended with one (``complete``), else
    estimated from the request (``prefill_chars``: a continuation's prefill) and the
    ``text_chars`` it produced (what counts it did report stand: an Anthropic stream's input)."""
    known = tokens_of(parsed.api, usage) if usage is not None and usage.input_tokens is not None else None
    if complete and known is not None and usage is not None and usage.output_tokens is not None:
        return priced(book, attempt, known, with_input=with_input)
    if known is not None:
        input_tokens, read, write = known.input, known.cache_read, known.cache_write
    else:
        input_tokens = estimated_input(parsed) + math.ceil(prefill_chars / CHARS_PER_TOKEN)
        read = write = 0
    output = math.ceil(text_chars / CHARS_PER_TOKEN)
    if usage is not None and usage.output_tokens is not None:
        output = max(output, usage.output_tokens)
    tokens = Tokens(input_tokens, output, read, write)
    return priced(book, attempt, tokens, estimated=True, with_input=with_input)
