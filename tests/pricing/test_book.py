"""Prices: looked up in genai-prices' shipped data (an OpenAI and an Anthropic model with cached
tokens, checked against the library's own calculation), operator overrides first, unknown prices
unknown (never 0), ``pricing: off``."""

from __future__ import annotations

import logging

import genai_prices
import pytest

from spillgate.config.loader import ConfigError, parse_settings
from spillgate.config.schema import Price, Pricing
from spillgate.pricing.book import PriceBook, Tokens, cost_of, priced_routes

OPENAI = ("openai", "openai", "https://api.openai.com/v1")
ANTHROPIC = ("anthropic", "anthropic", "https://api.anthropic.com")


def library(model: str, url: str, t: Tokens) -> float:
    usage = genai_prices.Usage(
        input_tokens=t.input,
        output_tokens=t.output,
        cache_read_tokens=t.cache_read or None,
        cache_write_tokens=t.cache_write or None,
    )
    return float(genai_prices.calc_price(usage, model, provider_api_url=url).total_price)


# (provider, model, tokens)
CASES = [
    (OPENAI, "gpt-5", Tokens(input=12_000, output=800, cache_read=9_000)),
    (OPENAI, "gpt-5", Tokens(input=1_000, output=0)),
    (OPENAI, "gpt-4o-mini", Tokens(input=5_000, output=1_000, cache_read=1_024)),
    (
        ANTHROPIC,
        "claude-sonnet-4-5",
        Tokens(input=40_000, output=2_000, cache_read=30_000, cache_write=5_000),
    ),
    (ANTHROPIC, "claude-sonnet-4-5", Tokens(input=250_000, output=1_000, cache_read=100_000)),  # a tier
    (ANTHROPIC, "claude-3-5-haiku-latest", Tokens(input=3_000, output=500, cache_write=1_000)),
]


@pytest.mark.parametrize(("provider", "model", "tokens"), CASES)
def test_a_known_models_cost_is_what_genai_prices_says(
    provider: tuple[str, str, str], model: str, tokens: Tokens
) -> None:
    cost = PriceBook().cost(*provider, model, tokens)
    assert cost.source == "genai-prices"
    assert cost.usd == pytest.approx(library(model, provider[2], tokens), rel=1e-9)


def test_cached_tokens_cost_less_than_plain_input() -> None:
    book = PriceBook()
    plain = book.cost(*OPENAI, "gpt-5", Tokens(input=10_000, output=0)).usd
    cached = book.cost(*OPENAI, "gpt-5", Tokens(input=10_000, output=0, cache_read=10_000)).usd
    assert plain is not None and cached is not None and cached == pytest.approx(plain / 10)


def test_overrides_come_first_provider_before_model() -> None:
    pricing = Pricing(
        models={"gpt-5": Price(input=2.0, output=20.0)},
        providers={
            "local": {"*": Price(input=0.0, output=0.0)},
            "openai": {"gpt-5": Price(input=1.0, output=1.0)},
        },
    )
    book = PriceBook(pricing)
    t = Tokens(input=1_000_000, output=1_000_000, cache_read=500_000)
    assert book.cost("openai", "openai", OPENAI[2], "gpt-5", t).usd == pytest.approx(2.0)
    other = book.cost("reseller", "openai", "https://llm.example/v1", "gpt-5", t)
    assert (other.usd, other.source) == (pytest.approx(22.0), "override")  # unset cache rate = input
    local = book.cost("local", "openai", "http://127.0.0.1:8081/v1", "smollm2", t)
    assert (local.usd, local.source) == (0.0, "override")


def test_an_unknown_price_is_unknown_counted_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    caplog.set_level(logging.WARNING, "spillgate.pricing")
    for _ in range(3):
        cost = book.cost("local", "openai", "http://127.0.0.1:8081/v1", "my-finetune-7b", Tokens(10, 10))
        assert (cost.usd, cost.source) == (None, "unknown")
    assert book.unknown == {"my-finetune-7b": 3}
    assert len([r for r in caplog.records if "my-finetune-7b" in r.getMessage()]) == 1


def test_pricing_off_looks_nothing_up() -> None:
    cost = PriceBook(Pricing(enabled=False)).cost(*OPENAI, "gpt-5", Tokens(100, 100))
    assert (cost.usd, cost.source) == (None, "off")


def test_cost_of_splits_the_input() -> None:
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    t = Tokens(input=1_000_000, output=100_000, cache_read=600_000, cache_write=200_000)
    assert cost_of(price, t) == pytest.approx(0.2 * 3 + 0.6 * 0.3 + 0.2 * 3.75 + 0.1 * 15)


BASE = {
    "providers": {"openai": {"protocol": "openai", "base_url": "https://api.openai.com/v1"}},
    "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-5"}]}},
}


def test_the_config_reads_prices_and_off() -> None:
    s = parse_settings(
        {**BASE, "pricing": {"models": {"gpt-5": {"input": 1.25, "output": 10, "cache_read": 0.125}}}}
    )
    assert s.pricing.models == {"gpt-5": Price(1.25, 10.0, 0.125)}
    assert parse_settings({**BASE, "pricing": "off"}).pricing.enabled is False
    assert parse_settings(BASE).pricing == Pricing()


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ({"models": {"gpt-5": {"input": -1, "output": 1}}}, "pricing.models.gpt-5.input: a price"),
        ({"models": {"gpt-5": {"input": 1}}}, "output"),
        ({"providers": {"nope": {"*": {"input": 0, "output": 0}}}}, "unknown provider 'nope'"),
        ({"models": {"gpt-5": {"input": 1, "output": 1, "cached": 1}}}, "cached"),
    ],
)
def test_bad_prices_are_config_errors_naming_the_key(pricing: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({**BASE, "pricing": pricing})


# (api, the usage object as the API sends it, tokens in the book's convention)
USAGE_CASES = [
    (
        "openai-chat",
        {"prompt_tokens": 1200, "completion_tokens": 80, "prompt_tokens_details": {"cached_tokens": 1024}},
        Tokens(input=1200, output=80, cache_read=1024),
    ),
    (
        "openai-responses",
        {"input_tokens": 900, "output_tokens": 30, "input_tokens_details": {"cached_tokens": 512}},
        Tokens(input=900, output=30, cache_read=512),
    ),
    (
        "anthropic-messages",
        {
            "input_tokens": 25,
            "output_tokens": 400,
            "cache_read_input_tokens": 30_000,
            "cache_creation_input_tokens": 2_000,
        },
        Tokens(input=32_025, output=400, cache_read=30_000, cache_write=2_000),
    ),
    ("anthropic-messages", {"input_tokens": 10, "output_tokens": 5}, Tokens(input=10, output=5)),
    ("openai-chat", {"prompt_tokens": 7}, Tokens(input=7, output=0)),
]


@pytest.mark.parametrize(("api", "usage", "expected"), USAGE_CASES)
def test_each_apis_usage_reads_in_one_convention(
    api: str, usage: dict[str, object], expected: Tokens
) -> None:
    from spillgate.pricing.tokens import tokens_of
    from spillgate.protocols.apis import Api
    from spillgate.protocols.usage import from_usage_object

    read = from_usage_object(Api(api), usage)
    assert read is not None
    assert tokens_of(Api(api), read) == expected


def test_an_anthropic_turn_with_cache_costs_what_genai_prices_says() -> None:
    from spillgate.pricing.tokens import tokens_of
    from spillgate.protocols.apis import Api
    from spillgate.protocols.usage import from_usage_object

    usage = {"input_tokens": 25, "output_tokens": 400, "cache_read_input_tokens": 30_000,
             "cache_creation_input_tokens": 2_000}  # fmt: skip
    read = from_usage_object(Api.ANTHROPIC_MESSAGES, usage)
    assert read is not None
    tokens = tokens_of(Api.ANTHROPIC_MESSAGES, read)
    assert tokens is not None
    cost = PriceBook().cost(*ANTHROPIC, "claude-sonnet-4-5", tokens)
    assert cost.usd == pytest.approx(library("claude-sonnet-4-5", ANTHROPIC[2], tokens))
    # 25 fresh x $3 + 30k cache reads x $0.30 + 2k writes x $3.75 + 400 out x $15, per million
    assert cost.usd == pytest.approx((25 * 3 + 30_000 * 0.3 + 2_000 * 3.75 + 400 * 15) / 1e6)


def test_made_up_model_names_do_not_grow_memory_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``*`` route passes on whatever model a client names: the cache and the counts stay bounded."""
    from spillgate.pricing import book as book_module

    monkeypatch.setattr(book_module, "MAX_MODELS", 5)
    priced = PriceBook()
    for i in range(12):
        cost = priced.cost("p", "openai", "http://127.0.0.1:1/v1", f"made-up-{i}", Tokens(10, 10))
        assert cost.usd is None
    assert len(priced._found) <= 5
    assert len(priced.unknown) == 6 and priced.unknown["other"] == 7


def test_the_configured_routes_are_looked_up_at_start() -> None:
    settings = parse_settings(
        {
            "listen": "127.0.0.1:0",
            "providers": {"oa": {"protocol": "openai", "base_url": "https://api.openai.com/v1"}},
            "models": {
                "mini": {"routes": [{"provider": "oa", "model": "gpt-4o-mini"}]},
                "any": {"routes": [{"provider": "oa", "model": "*"}]},  # the client's name: not known yet
            },
            "pricing": {"models": {"gpt-4o-mini-free": {"input": 0, "output": 0}}},
        },
        env={},
        source="test",
    )
    routes = priced_routes(settings)
    assert routes == [("oa", "openai", "https://api.openai.com/v1", "gpt-4o-mini")]
    book = PriceBook(settings.pricing)
    book.warm(routes)
    assert book._found[routes[0]] is not None  # found in genai-prices, before any request
    off = PriceBook(Pricing(enabled=False))
    off.warm(routes)
    assert off._found == {}
