"""What the doctor's probes cost: each answer's reported usage priced by the gateway's price book.

A probe is *billed* when the model answered (a stream counts from its first content) or when its
answer reported usage anyway; a model listing and a refused or failed request are not (nothing was
generated). A billed probe's cost is unknown when its answer reported no usage (a Chat stream that
was not asked for it) or when no price is known for its model. With ``pricing: off`` nothing is
costed at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from spillgate.config.schema import Pricing
from spillgate.doctor.types import ProbeResult, Role
from spillgate.pricing.book import PriceBook, Tokens
from spillgate.pricing.tokens import tokens_of
from spillgate.textutil import plural

NO_USAGE = "no usage"
"""The source of a billed probe's cost when its answer reported no token counts."""


@dataclass(frozen=True, slots=True)
class ProbeCost:
    """One billed probe's tokens and price."""

    tokens: Tokens | None
    """``None``: the answer reported no usage."""
    usd: float | None
    """``None``: unknown (no usage reported, or no price known for the model)."""
    source: str
    """Where the price came from: ``override``, ``genai-prices``, ``unknown`` (no price known) or
    :data:`NO_USAGE`."""

    @property
    def known(self) -> bool:
        return self.usd is not None


@dataclass(frozen=True, slots=True)
class ProbeCosts:
    """The costs of one run's probes, in the order of its results."""

    each: tuple[ProbeCost | None, ...]
    """One entry per probe result; ``None``: the probe is not billed."""

    @property
    def billed(self) -> int:
        return sum(1 for c in self.each if c is not None)

    @property
    def unknown(self) -> int:
        """Billed probes whose cost is unknown."""
        return sum(1 for c in self.each if c is not None and not c.known)

    @property
    def total_usd(self) -> float | None:
        """The sum of the known costs (a lower bound when :attr:`unknown` is not 0); ``None`` when
        no billed probe's cost is known; 0 when none was billed."""
        known = [c.usd for c in self.each if c is not None and c.usd is not None]
        if not known and self.billed:
            return None
        return sum(known)


def price_book(pricing: Pricing) -> PriceBook:
    """The doctor's price book: it says "cost unknown" in its report, so the book logs nothing (its
    warning is the gateway's: "its tokens are recorded")."""
    return PriceBook(pricing, warn=False)


def billed(result: ProbeResult) -> bool:
    """Whether the upstream charges for this probe: the model answered, or the answer counted tokens."""
    if result.probe.role is Role.LIST:
        return False
    return result.ok or result.usage is not None


def probe_cost(result: ProbeResult, book: PriceBook) -> ProbeCost | None:
    """``result``'s cost at ``book``'s prices; ``None`` when the probe is not billed."""
    if not billed(result):
        return None
    tokens = tokens_of(result.probe.api, result.usage) if result.usage is not None else None
    if tokens is None:
        return ProbeCost(None, None, NO_USAGE)
    provider = result.probe.endpoint.provider
    cost = book.cost(provider.name, provider.protocol, provider.base_url, result.probe.model, tokens)
    return ProbeCost(tokens, cost.usd, cost.source)


def probe_costs(results: Sequence[ProbeResult], book: PriceBook) -> ProbeCosts | None:
    """Every probe's cost; ``None`` when pricing is off (the report then says nothing of costs)."""
    if not book.settings.enabled:
        return None
    return ProbeCosts(tuple(probe_cost(r, book) for r in results))


def format_usd(usd: float) -> str:
    """``$0.0000036``: two significant figures, in plain decimals (a probe costs fractions of a
    cent); at least cents."""
    if usd <= 0:
        return "$0"
    decimals = min(max(2, 1 - math.floor(math.log10(usd))), 12)
    return f"${usd:.{decimals}f}"


def format_tokens(tokens: Tokens) -> str:
    cached = f", {tokens.cache_read} cached" if tokens.cache_read else ""
    return f"{tokens.input} in{cached} + {tokens.output} out tokens"


def cost_text(cost: ProbeCost) -> str:
    """``$0.000012 (11 in + 2 out tokens, genai-prices)``, ``cost unknown (no price known for …)``."""
    if cost.tokens is None:
        return "cost unknown (the answer reported no usage)"
    if cost.usd is None:
        return f"cost unknown ({format_tokens(cost.tokens)}, no price known for the model)"
    return f"{format_usd(cost.usd)} ({format_tokens(cost.tokens)}, {cost.source})"


def total_text(costs: ProbeCosts) -> str:
    """``$0.000034 for 3 probes``, with ``+ 1 of unknown cost`` where some are unknown."""
    if costs.billed == 0:
        return "nothing billed (no probe got an answer from a model)"
    total = costs.total_usd
    if total is None:
        return f"unknown ({plural(costs.billed, 'billed probe')})"
    text = f"{format_usd(total)} for {plural(costs.billed - costs.unknown, 'probe')}"
    if costs.unknown:
        text += f" + {costs.unknown} of unknown cost"
    return text
