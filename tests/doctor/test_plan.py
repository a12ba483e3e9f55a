"""Which probes the doctor sends (pure), and how it reads its arguments into a target."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from spillgate.config.loader import parse_settings
from spillgate.config.schema import Secret
from spillgate.doctor.plan import MAX_PAUSE, alias_steps, next_steps, pick_others
from spillgate.doctor.probe import PROMPT, request_body, token_limit_field
from spillgate.doctor.target import (
    MAX_PROBES,
    PROTOCOL_CHOICES,
    alias_target,
    candidate_apis,
    default_api,
    mask_key,
    model_family,
    root_url,
)
from spillgate.doctor.types import Probe, ProbeResult, Role
from spillgate.protocols.apis import Api
from spillgate.resilience.types import ErrorClass as C
from spillgate.resilience.types import Transport

from .helpers import TARGET, listing, ok, result

CHAT, MESSAGES = Api.OPENAI_CHAT, Api.ANTHROPIC_MESSAGES
CAP = {"status": 503, "cls": C.CAPACITY}


def shown(probe: Probe) -> str:
    wait = f" after {probe.wait_before:g}s" if probe.wait_before else ""
    return f"{probe.role.value} {probe.api.value} {probe.describe()}{wait}"


PLAN_CASES: dict[str, tuple[tuple[ProbeResult, ...], list[str]]] = {
    "first: the model, then (estimated) its stream and the listing": (
        (),
        [
            "model openai-chat POST /v1/chat/completions model=gpt-x",
            "model openai-chat POST /v1/chat/completions model=gpt-x stream",
            "list openai-chat GET /v1/models",
        ],
    ),
    "it answered: stream and listing": (
        (ok(),),
        [
            "model openai-chat POST /v1/chat/completions model=gpt-x stream",
            "list openai-chat GET /v1/models",
        ],
    ),
    "refused: nothing more": ((result(status=None, cls=C.CONNECT_FAILED, transport=Transport.CONNECT),), []),
    "path unknown: the other API once": (
        (result(status=404, cls=C.NOT_FOUND),),
        [
            "model anthropic-messages POST /v1/messages model=gpt-x",
            "model anthropic-messages POST /v1/messages model=gpt-x stream",
            "list anthropic-messages GET /v1/models",
        ],
    ),
    "both APIs 404: the model is unknown, list on the first": (
        (result(status=404, cls=C.NOT_FOUND), result(status=404, cls=C.NOT_FOUND, api=MESSAGES)),
        ["list openai-chat GET /v1/models"],
    ),
    "the other API answered: go on with it": (
        (result(status=404, cls=C.NOT_FOUND), ok(api=MESSAGES)),
        [
            "model anthropic-messages POST /v1/messages model=gpt-x stream",
            "list anthropic-messages GET /v1/models",
        ],
    ),
    "auth: only the listing": ((result(status=401, cls=C.AUTH),), ["list openai-chat GET /v1/models"]),
    "auth, listed: done": ((result(status=401, cls=C.AUTH), listing()), []),
    "rate limited with a short wait: listing, then again after it": (
        (result(status=429, cls=C.RATE_LIMITED, retry=2.0),),
        [
            "list openai-chat GET /v1/models",
            "retry openai-chat POST /v1/chat/completions model=gpt-x after 2s",
        ],
    ),
    "rate limited without a wait: again after a second": (
        (result(status=429, cls=C.RATE_LIMITED), listing()),
        ["retry openai-chat POST /v1/chat/completions model=gpt-x after 1s"],
    ),
    "rate limited for long: no second try": (
        (result(status=429, cls=C.RATE_LIMITED, retry=MAX_PAUSE + 1),),
        ["list openai-chat GET /v1/models"],
    ),
    "at capacity: stream, listing, then other chat models": (
        (
            result(**CAP),  # type: ignore[arg-type]
            result(stream=True, **CAP),  # type: ignore[arg-type]
            listing(
                "text-embedding-3-small", "gpt-x", "claude-sonnet-4-5", "gpt-4o", "whisper-1", "gpt-4o-mini"
            ),
        ),
        [
            "other openai-chat POST /v1/chat/completions model=gpt-4o",
            "other openai-chat POST /v1/chat/completions model=gpt-4o-mini",
        ],
    ),
    "fine, but the stream fails: compare too": (
        (ok(), result(stream=True, status=200, cls=C.CAPACITY, in_stream=True), listing("gpt-4o")),
        ["other openai-chat POST /v1/chat/completions model=gpt-4o"],
    ),
    "a timeout: no stream try (it would wait as long)": (
        (result(status=None, cls=C.TIMEOUT, transport=Transport.FIRST_BYTE_TIMEOUT),),
        ["list openai-chat GET /v1/models"],
    ),
}


@pytest.mark.parametrize(("done", "expected"), PLAN_CASES.values(), ids=PLAN_CASES.keys())
def test_next_steps(done: tuple[ProbeResult, ...], expected: list[str]) -> None:
    assert [shown(p) for p in next_steps(TARGET, done)] == expected


def test_compare_models_replace_the_listing_pick() -> None:
    target = dataclasses.replace(TARGET, compare=("a", "b", "c"))
    done = (result(**CAP), result(stream=True, **CAP), listing("gpt-4o"))  # type: ignore[arg-type]
    assert [p.model for p in next_steps(target, done)] == ["a", "b"]


def test_one_api_only_when_chosen() -> None:
    target = dataclasses.replace(TARGET, apis=(CHAT,))
    assert [p.role for p in next_steps(target, (result(status=404, cls=C.NOT_FOUND),))] == [Role.LIST]


def test_the_plan_is_bounded() -> None:
    target = dataclasses.replace(TARGET, compare=("a", "b"))
    done: list[ProbeResult] = []
    while steps := next_steps(target, done):
        probe = steps[0]
        done.append(result(probe.role, probe.model, api=probe.api, stream=probe.stream, **CAP))  # type: ignore[arg-type]
    assert 0 < len(done) <= MAX_PROBES


@pytest.mark.parametrize(
    ("listed", "model", "api", "picked"),
    [
        (("gpt-x", "gpt-4o", "gpt-4o-mini", "gpt-5"), "gpt-x", CHAT, ("gpt-4o", "gpt-4o-mini")),
        (("claude-a", "llama-3", "gpt-4o"), "gpt-x", CHAT, ("gpt-4o", "llama-3")),
        (
            ("gpt-4o", "claude-haiku", "claude-opus"),
            "claude-sonnet",
            MESSAGES,
            ("claude-haiku", "claude-opus"),
        ),
        (("coder", "helper", "old-coder"), "coder", CHAT, ("helper", "old-coder")),
        (("dall-e-3", "tts-1", "omni-moderation-latest", "gpt-image-1"), "gpt-x", CHAT, ()),
        (("gpt-x",), "gpt-x", CHAT, ()),
        ((), "gpt-x", CHAT, ()),
    ],
)
def test_pick_others(listed: tuple[str, ...], model: str, api: Api, picked: tuple[str, ...]) -> None:
    assert pick_others(listed, model, api) == picked


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api"),
        (" https://api.openai.com/v1 ", "https://api.openai.com"),
    ],
)
def test_root_url(given: str, root: str) -> None:
    assert root_url(given) == root


@pytest.mark.parametrize(
    "bad", ["localhost:8080", "ftp://x/v1", "http:///v1", "http://h/v1?x=1", "", "https://u:sk-secret@h/v1"]
)
def test_root_url_rejects(bad: str) -> None:
    with pytest.raises(ValueError) as raised:
        root_url(bad)
    assert "sk-secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("choice", "model", "root", "apis"),
    [
        ("auto", "gpt-4o", "http://h", (CHAT, MESSAGES)),
        ("auto", "gpt-5.3-codex", "http://h", (Api.OPENAI_RESPONSES, CHAT)),
        ("auto", "claude-sonnet-4-5", "http://h", (MESSAGES, CHAT)),
        ("auto", "coder", "https://api.anthropic.com", (MESSAGES, CHAT)),
        ("openai-responses", "claude-x", "http://h", (Api.OPENAI_RESPONSES,)),
        ("anthropic", "gpt-4o", "http://h", (MESSAGES,)),
    ],
)
def test_candidate_apis(choice: str, model: str, root: str, apis: tuple[Api, ...]) -> None:
    assert candidate_apis(choice, model, root) == apis  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "shown_as"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz1234", "sk-…1234"),
        ("sk-ant-api03-zzzzzzzzzzzz9876", "sk-…9876"),
        ("short", "…"),
        ("", None),
    ],
)
def test_mask_key(key: str, shown_as: str | None) -> None:
    assert mask_key(Secret(key)) == shown_as
    assert mask_key(None) is None


@pytest.mark.parametrize(
    ("api", "model", "field"),
    [
        (CHAT, "gpt-4o", "max_tokens"),
        (CHAT, "gpt-5-mini", "max_completion_tokens"),
        (CHAT, "o3", "max_completion_tokens"),
        (Api.OPENAI_RESPONSES, "gpt-5-codex", "max_output_tokens"),
        (MESSAGES, "claude-sonnet-4-5", "max_tokens"),
    ],
)
def test_minimal_bodies(api: Api, model: str, field: str) -> None:
    assert token_limit_field(api, model) == field
    body = request_body(Probe(Role.MODEL, TARGET.endpoint(api), api, model, stream=True))
    assert f'"{field}":16'.encode() in body and b'"stream":true' in body and model.encode() in body


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        (
            CHAT,
            {
                "model": "m",
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 16,
                "stream": False,
            },
        ),
        (
            Api.OPENAI_RESPONSES,
            {"model": "m", "input": PROMPT, "store": False, "max_output_tokens": 16, "stream": False},
        ),
        (
            MESSAGES,
            {
                "model": "m",
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 16,
                "stream": False,
            },
        ),
    ],
)
def test_minimal_bodies_are_exact(api: Api, expected: dict[str, object]) -> None:
    assert request_body(Probe(Role.MODEL, TARGET.endpoint(api), api, "m")) == orjson.dumps(expected)


def test_protocol_choices_and_defaults_come_from_the_adapters() -> None:
    assert PROTOCOL_CHOICES == ("auto", "openai-chat", "openai-responses", "anthropic")
    assert default_api("anthropic", "gpt-4o") is MESSAGES
    assert default_api("anthropic", "claude-x") is MESSAGES
    assert default_api("openai", "claude-x") is CHAT
    assert default_api("openai", "gpt-5-codex") is Api.OPENAI_RESPONSES
    assert default_api("openai", "gpt-4o") is CHAT
    assert [model_family(m) for m in ("Claude-3", "gpt-5-codex", "llama")] == [
        "anthropic",
        "openai",
        "openai",
    ]
    with pytest.raises(ValueError, match="unknown protocol"):
        candidate_apis("gemini", "m", "http://h")
    assert TARGET.endpoint(CHAT).provider.base_url.endswith("/v1")
    assert not TARGET.endpoint(MESSAGES).provider.base_url.endswith("/v1")
    assert Probe(Role.LIST, TARGET.endpoint(MESSAGES), MESSAGES).path == "/v1/models"
    assert Probe(Role.LIST, TARGET.endpoint(CHAT), CHAT).path == "/models"


def test_alias_target_probes_every_route_and_account_in_order() -> None:
    settings = parse_settings(
        {
            "providers": {
                "oa": {"protocol": "openai", "base_url": "http://oa.test/v1"},
                "an": {
                    "protocol": "anthropic",
                    "base_url": "http://an.test",
                    "api_key": "sk-an-provider-key",
                },
            },
            "accounts": [
                {"id": "a1", "provider": "oa", "api_key": "sk-a1-0000000000000"},
                {"id": "a2", "provider": "oa", "api_key": "sk-a2-0000000000000", "models": ["other"]},
                {"id": "a3", "provider": "oa", "api_key": "sk-a3-0000000000000"},
            ],
            "models": {
                "coder": {
                    "routes": [
                        {"accounts": ["a1", "a2", "a3"], "model": "gpt-5-codex"},
                        {"provider": "an", "model": "claude-sonnet-4-5"},
                    ]
                },
                "old": {"alias_of": "coder"},
            },
        }
    )
    target = alias_target(settings, "old")
    assert target.alias == "coder"
    assert [(r.endpoint.label, r.api, r.model) for r in target.routes] == [
        ("coder[0]/a1", Api.OPENAI_RESPONSES, "gpt-5-codex"),
        ("coder[0]/a3", Api.OPENAI_RESPONSES, "gpt-5-codex"),
        ("coder[1]", MESSAGES, "claude-sonnet-4-5"),
    ]
    assert target.skipped == ("coder[0]/a2: the account does not serve gpt-5-codex",)
    assert target.routes[2].endpoint.key_hint == "sk-…-key"
    assert [p.endpoint.label for p in alias_steps(target, ())] == ["coder[0]/a1", "coder[0]/a3", "coder[1]"]
    assert alias_steps(target, (ok(), ok(), ok())) == []
    with pytest.raises(ValueError, match=r"no model alias serves 'nope'.*aliases: coder"):
        alias_target(settings, "nope")
