"""What the probes cost, against the fake upstream (which reports usage like the real APIs): priced
from genai-prices or a config's overrides, a stream's usage read from its end, nothing with
``pricing: off``; and every probe is a minimal request."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import orjson
import pytest

from spillgate.config.loader import load_settings
from spillgate.config.schema import Secret
from spillgate.doctor import probe as probe_module
from spillgate.doctor.command import add_parser, build_target
from spillgate.doctor.cost import NO_USAGE
from spillgate.doctor.runner import DoctorReport, run_doctor
from spillgate.doctor.target import MAX_OUTPUT_TOKENS, MAX_PROBES, UrlTarget, alias_target, candidate_apis
from spillgate.doctor.types import Probe, Role
from spillgate.fake import FakeUpstream, Fault
from spillgate.http.client import HttpClient
from spillgate.pricing.book import PriceBook
from spillgate.pricing.tokens import tokens_of
from spillgate.protocols.apis import Api
from spillgate.resilience.classify import Classifier

from .helpers import cli

KEY = "sk-doctor-cost-key-0123456789"


async def doctor_of(fake: FakeUpstream, model: str, prices: PriceBook, base_url: str = "") -> DoctorReport:
    root = (base_url or fake.openai_base_url).removesuffix("/v1")
    target = UrlTarget(root, model, candidate_apis("auto", model, root), Secret(KEY))
    return await run_doctor(target, timeout=3.0, prices=prices)


async def test_chat_probes_priced_from_genai_prices(fake: FakeUpstream) -> None:
    book = PriceBook()
    report = await doctor_of(fake, "gpt-4o-mini", book)
    assert report.costs is not None
    roles = [(r.probe.role, r.probe.api, r.probe.stream) for r in report.results]
    assert roles == [
        (Role.MODEL, Api.OPENAI_CHAT, False),
        (Role.MODEL, Api.OPENAI_CHAT, True),
        (Role.LIST, Api.OPENAI_CHAT, False),
        (Role.API, Api.OPENAI_RESPONSES, False),
    ]
    plain, stream, listed, other_api = report.costs.each
    assert listed is None
    assert stream is not None and stream.source == NO_USAGE  # a Chat stream not asked for its usage
    for cost, result in ((plain, report.results[0]), (other_api, report.results[3])):
        assert cost is not None and cost.source == "genai-prices"
        assert result.usage is not None
        tokens = tokens_of(result.probe.api, result.usage)
        assert cost.tokens == tokens and tokens is not None and tokens.output > 0
        provider = result.probe.endpoint.provider
        expected = book.cost(provider.name, provider.protocol, provider.base_url, "gpt-4o-mini", tokens)
        assert cost.usd is not None and cost.usd > 0 and cost.usd == pytest.approx(expected.usd)
    assert report.costs.total_usd == pytest.approx((plain.usd or 0) + (other_api.usd or 0))
    assert report.costs.unknown == 1


async def test_a_messages_stream_is_priced_from_the_usage_at_its_end(fake: FakeUpstream) -> None:
    report = await doctor_of(fake, "claude-3-5-haiku-latest", PriceBook(), fake.anthropic_base_url)
    assert report.costs is not None
    plain, stream = report.results[0], report.results[1]
    assert plain.probe.api is Api.ANTHROPIC_MESSAGES and stream.probe.stream
    assert stream.usage is not None and plain.usage is not None
    # message_start's input and message_delta's output, as the whole answer reported them.
    assert (stream.usage.input_tokens, stream.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )
    assert all(c is not None and c.known for c in report.costs.each[:2])
    assert report.costs.unknown == 0


async def test_a_stream_stalling_after_its_first_content_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probe_module, "USAGE_WAIT", 0.3)
    fake = FakeUpstream({"gpt-4o-mini": Fault(stall_after_events=3)})
    await fake.start("127.0.0.1", 0)
    root = fake.openai_base_url.removesuffix("/v1")
    endpoint = UrlTarget(root, "gpt-4o-mini", (Api.OPENAI_CHAT,), Secret(KEY)).endpoint(Api.OPENAI_CHAT)
    client = HttpClient(endpoint.provider.base_url)
    try:
        started = time.perf_counter()
        result = await probe_module.send(
            Probe(Role.MODEL, endpoint, Api.OPENAI_CHAT, "gpt-4o-mini", stream=True),
            client,
            timeout=5.0,
            classifier=Classifier(),
        )
        took = time.perf_counter() - started
    finally:
        await client.close()
        await fake.close()
    assert result.ok and result.first_content is not None and result.usage is None
    assert took < 2.0, took  # the stall costs USAGE_WAIT, not the 5 s probe timeout


def alias_config(tmp_path: Path, fake: FakeUpstream, pricing: str) -> Path:
    path = tmp_path / "spillgate.yaml"
    path.write_text(
        f"providers:\n  up: {{protocol: openai, base_url: '{fake.openai_base_url}'}}\n"
        "models:\n"
        "  coder: {routes: [{provider: up, model: house-model}, {provider: up, model: gpt-4o-mini}]}\n"
        + pricing
    )
    return path


async def test_alias_priced_from_the_configs_overrides(tmp_path: Path, fake: FakeUpstream) -> None:
    config = alias_config(tmp_path, fake, "pricing: {models: {house-model: {input: 1.0, output: 4.0}}}\n")
    settings = load_settings(config, env={})
    report = await run_doctor(
        alias_target(settings, "coder"), timeout=3.0, prices=PriceBook(settings.pricing)
    )
    assert report.costs is not None
    house, mini = report.costs.each
    first = report.results[0]
    assert first.usage is not None and first.usage.input_tokens and first.usage.output_tokens
    assert house is not None and house.source == "override"
    assert house.usd == pytest.approx(
        (first.usage.input_tokens * 1.0 + first.usage.output_tokens * 4.0) / 1e6
    )
    assert mini is not None and mini.source == "genai-prices"


@pytest.mark.parametrize(
    ("pricing", "shown"),
    [("", True), ("pricing:\n", True), ("pricing: off\n", False)],
)
async def test_cli_alias_pricing(tmp_path: Path, fake: FakeUpstream, pricing: str, shown: bool) -> None:
    config = str(alias_config(tmp_path, fake, pricing))
    code, out, err = await cli("--alias", "coder", "--config", config, "--quiet")
    json_code, json_out, _ = await cli("--alias", "coder", "--config", config, "--quiet", "--json")
    assert code == json_code == 0, err
    assert ("What the probes cost:" in out) == shown, out
    document = json.loads(json_out)
    if not shown:
        assert document["cost"] is None and all(p["cost"] is None for p in document["probes"])
        return
    assert "cost unknown (" in out and "no price known for the model" in out  # house-model: no price
    assert "  - total: $" in out and "for 1 probe + 1 of unknown cost" in out
    assert document["cost"]["billed"] == 2 and document["cost"]["unknown"] == 1
    assert document["cost"]["total_usd"] > 0
    assert "tokens are recorded" not in err  # the price book's gateway-side warning stays quiet


def test_a_base_url_is_priced_at_the_defaults() -> None:
    parser = argparse.ArgumentParser()
    args = add_parser(parser.add_subparsers()).parse_args(
        ["--base-url", "http://127.0.0.1:1", "--model", "m"]
    )
    setup = build_target(args, {})
    assert setup.pricing.enabled and setup.pricing.models is None and setup.pricing.providers is None


PATHS = {
    "/v1/chat/completions": Api.OPENAI_CHAT,
    "/v1/responses": Api.OPENAI_RESPONSES,
    "/v1/messages": Api.ANTHROPIC_MESSAGES,
}


@pytest.mark.parametrize(
    ("model", "base"),
    [("gpt-4o-mini", "openai"), ("gpt-5.3-codex", "openai"), ("claude-3-5-haiku-latest", "anthropic")],
)
async def test_every_probe_is_a_minimal_request(fake: FakeUpstream, model: str, base: str) -> None:
    base_url = fake.openai_base_url if base == "openai" else fake.anthropic_base_url
    report = await doctor_of(fake, model, PriceBook(), base_url)
    sent = [a for a in fake.attempts if a.model == model]
    assert 0 < len(report.results) <= MAX_PROBES
    assert len(sent) == sum(1 for r in report.results if r.probe.role is not Role.LIST)
    for attempt in sent:
        body = orjson.loads(attempt.body)
        api = PATHS[attempt.path]
        assert body[api.adapter.token_limit_field(model)] == MAX_OUTPUT_TOKENS, (attempt.path, body)
        prompt = body.get("messages") or body.get("input")
        assert prompt == probe_module.PROMPT or (
            len(prompt) == 1 and prompt[0]["content"] == probe_module.PROMPT
        )
