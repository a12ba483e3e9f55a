"""What tokens cost: prices from the maintained ``genai-prices`` data, operator overrides first.

``genai-prices`` ships its price table inside the package (no network: its auto-update is never
started here). A price is looked up once per (provider, model) — by the provider's base URL (how
``genai-prices`` tells ``api.openai.com`` from ``api.anthropic.com`` or a reseller), else by the
protocol's usual provider, else by the model name alone — and kept: costing an attempt is then a
few float multiplications. A model whose price has tiers (long-context surcharges) is costed by
``genai-prices`` itself (exact, slower).

Operators override or add prices (``pricing.models`` per upstream model, ``pricing.providers``
per provider and model, ``*`` for every model of a provider: a local model at 0 or at what its
hardware costs). A model with no known price is *unknown*: its tokens are recorded, its cost is
``None`` (never 0), and it is counted and warned about once per model.

Tokens follow one convention whatever the API: ``input`` counts every input token (cache reads
and cache writes included), ``cache_read`` and ``cache_write`` say how many of them were.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from spillgate.config.schema import WILDCARD, Price, Pricing, Settings

log = logging.getLogger("spillgate.pricing")

PER_MTOK = 1_000_000.0
MAX_MODELS = 1000
"""Prices kept, and models counted by name, at most: a ``*`` route passes on any model name a
client makes up, and none of them may grow memory without bound (past it: looked up again, and
counted as ``other``)."""


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int
    """Every input token, cache reads and cache writes included."""
    output: int
    """Output tokens, reasoning included (billed as output by every provider)."""
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float | None
    """``None``: the price is not known (never 0 for "unknown")."""
    source: str
    """``override``, ``genai-prices``, ``unknown`` or ``off``."""


def cost_of(price: Price, t: Tokens) -> float:
    """USD for ``t`` at ``price`` (per million tokens); an unset cache rate is the input rate."""
    cache_read = min(t.cache_read, t.input)
    cache_write = min(t.cache_write, t.input - cache_read)
    plain = t.input - cache_read - cache_write
    usd = plain * price.input + t.output * price.output
    usd += cache_read * (price.input if price.cache_read is None else price.cache_read)
    usd += cache_write * (price.input if price.cache_write is None else price.cache_write)
    return usd / PER_MTOK


UNKNOWN = Cost(None, "unknown")
OFF = Cost(None, "off")


class _Tiered:
    """A ``genai-prices`` price with tiers: below the first tier's start, its base rates (floats);
    from there on costed by the library (exact)."""

    __slots__ = ("base", "model_price", "start")

    def __init__(self, model_price: Any, base: Price, start: int) -> None:
        self.model_price = model_price
        self.base = base
        self.start = start

    def cost(self, t: Tokens) -> float:
        if t.input < self.start:
            return cost_of(self.base, t)
        import genai_prices

        usage = genai_prices.Usage(
            input_tokens=t.input,
            output_tokens=t.output,
            cache_read_tokens=t.cache_read or None,
            cache_write_tokens=t.cache_write or None,
        )
        return float(self.model_price.calc_price(usage)["total_price"])


class PriceBook:
    """Looks prices up (cached per provider and model) and costs token counts."""

    def __init__(self, settings: Pricing | None = None, *, warn: bool = True) -> None:
        """``warn``: log each model with no known price once (the gateway; a tool that reports
        unknown prices in its own words passes False)."""
        self.settings = settings or Pricing()
        self.warn = warn
        self._found: dict[tuple[str, str, str, str], Price | _Tiered | None] = {}
        self.unknown: dict[str, int] = {}
        """Model → attempts costed without a known price (``/metrics``)."""

    def configure(self, settings: Pricing) -> None:
        """A reloaded configuration's pricing: prices are looked up again; the counts carry over."""
        if settings != self.settings:
            self.settings = settings
            self._found.clear()

    def warm(self, routes: Iterable[tuple[str, str, str, str]]) -> None:
        """Load the price data and look up these (provider, protocol, base URL, model) now, at start,
        rather than in the first requests' path (loading ``genai-prices``' table takes ~0.1 s)."""
        if not self.settings.enabled:
            return
        for provider, protocol, base_url, model in routes:
            key = (provider, protocol, base_url, model)
            if self._override(provider, model) is None and key not in self._found:
                self._found[key] = _lookup(protocol, base_url, model)

    def cost(self, provider: str, protocol: str, base_url: str, model: str, tokens: Tokens) -> Cost:
        """What ``tokens`` of ``model`` on ``provider`` (its protocol and base URL) cost."""
        if not self.settings.enabled:
            return OFF
        override = self._override(provider, model)
        if override is not None:
            return Cost(cost_of(override, tokens), "override")
        key = (provider, protocol, base_url, model)
        price = self._found.get(key, _MISSING)
        if price is _MISSING:
            if len(self._found) >= MAX_MODELS:
                self._found.clear()
            price = self._found[key] = _lookup(protocol, base_url, model)
        if price is None:
            if model not in self.unknown and len(self.unknown) >= MAX_MODELS:
                model = "other"
            if self.warn and model not in self.unknown:
                log.warning(
                    "no price known for model %r (provider %r): its tokens are recorded, its cost is "
                    "unknown; set one under pricing.models or pricing.providers",
                    model,
                    provider,
                )
            self.unknown[model] = self.unknown.get(model, 0) + 1
            return UNKNOWN
        usd = price.cost(tokens) if isinstance(price, _Tiered) else cost_of(price, tokens)
        return Cost(usd, "genai-prices")

    def _override(self, provider: str, model: str) -> Price | None:
        providers = self.settings.providers
        if providers:
            of_provider = providers.get(provider)
            if of_provider:
                price = of_provider.get(model) or of_provider.get("*")
                if price is not None:
                    return price
        models = self.settings.models
        return models.get(model) if models else None


def priced_routes(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(provider, protocol, base URL, upstream model) of every route with a fixed model: what
    :meth:`PriceBook.warm` looks up at start."""
    found: dict[tuple[str, str, str, str], None] = {}
    for alias in settings.models.values():
        for route in alias.routes:
            provider = settings.providers[route.provider]
            if route.model != WILDCARD:
                found[(provider.name, provider.protocol, provider.base_url, route.model)] = None
    return list(found)


_MISSING: Any = object()

_USUAL_PROVIDER = {"openai": "openai", "anthropic": "anthropic"}


def _lookup(protocol: str, base_url: str, model: str) -> Price | _Tiered | None:
    """The price ``genai-prices`` knows for ``model`` at ``base_url``, else for the protocol's
    usual provider, else for the model name alone; ``None`` when none."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    attempts: list[tuple[str | None, str | None]] = [(None, base_url)]
    usual = _USUAL_PROVIDER.get(protocol)
    if usual is not None:
        attempts.append((usual, None))
    attempts.append((None, None))
    for provider_id, url in attempts:
        try:
            _provider, info = snapshot.find_provider_model(model, None, provider_id, url)
        except LookupError:
            continue
        model_price = info.get_prices(datetime.datetime.now(datetime.UTC))
        return _rates(model_price)
    return None


def _rates(model_price: Any) -> Price | _Tiered:
    """Plain per-MTok rates as floats, or the library's own costing when any rate is tiered."""
    fields = vars(model_price)
    names = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    base: dict[str, float | None] = {}
    starts: list[int] = []
    for name in names:
        value = fields.get(name)
        if value is None or isinstance(value, Decimal):
            base[name] = None if value is None else float(value)
            continue
        base[name] = float(value.base)  # tiered: the base rate, and where the tiers start
        starts.extend(int(tier.start) for tier in value.tiers)
    price = Price(
        input=base["input_mtok"] or 0.0,
        output=base["output_mtok"] or 0.0,
        cache_read=base["cache_read_mtok"],
        cache_write=base["cache_write_mtok"],
    )
    return _Tiered(model_price, price, min(starts)) if starts else price
