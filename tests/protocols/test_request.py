"""Reading routing fields from bodies and rewriting exactly the top-level ``model``."""

from __future__ import annotations

import orjson
import pytest

from spillgate.protocols.apis import Api
from spillgate.protocols.errors import GatewayError
from spillgate.protocols.request import parse_request, rewrite_model


def test_fields_and_session_keys() -> None:
    p = parse_request(Api.OPENAI_RESPONSES, b'{"model":"m","stream":true,"prompt_cache_key":"th-1"}', {})
    assert (p.model, p.stream, p.session_key) == ("m", True, "th-1")
    p = parse_request(Api.OPENAI_RESPONSES, b'{"model":"m","prompt_cache_key":"th-1"}', {"session-id": "s-9"})
    assert p.session_key == "s-9" and p.stream is False
    p = parse_request(Api.OPENAI_RESPONSES, b'{"model":"m"}', {"session_id": "old-codex"})
    assert p.session_key == "old-codex"
    p = parse_request(Api.ANTHROPIC_MESSAGES, b'{"model":"c","metadata":{"user_id":"u-1"}}', {})
    assert p.session_key == "u-1"
    p = parse_request(Api.ANTHROPIC_MESSAGES, b'{"model":"c","prompt_cache_key":"x"}', {})
    assert p.session_key is None


@pytest.mark.parametrize(
    ("body", "fragment", "param"),
    [
        (b"", "body is empty", None),
        (b"{not json", "not valid JSON", None),
        (b"[1,2]", "must be a JSON object", None),
        (b'{"messages":[]}', "missing required field 'model'", "model"),
        (b'{"model":""}', "non-empty string", "model"),
        (b'{"model":7}', "non-empty string", "model"),
        (b'{"model":"m","stream":"yes"}', "'stream' must be true or false", "stream"),
    ],
)
def test_bad_bodies(body: bytes, fragment: str, param: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        parse_request(Api.OPENAI_CHAT, body, {})
    assert info.value.status == 400
    assert fragment in info.value.message
    assert info.value.param == param


def test_rewrite_replaces_only_the_top_level_model() -> None:
    body = (
        b'{"input": [{"role":"user","content":"say \\"model\\": \\"alias\\""}],\n "model" : "alias", "x":1}'
    )
    parsed = parse_request(Api.OPENAI_RESPONSES, body, {})
    out = rewrite_model(parsed, "gpt-5.3-codex")
    assert orjson.loads(out) == {**orjson.loads(body), "model": "gpt-5.3-codex"}
    assert list(orjson.loads(out)) == ["input", "model", "x"]  # the key keeps its place


def test_rewrite_same_name_is_identity() -> None:
    body = b'{"model":"same","stream":false}'
    parsed = parse_request(Api.OPENAI_CHAT, body, {})
    assert rewrite_model(parsed, "same") is body


# body -> what routing reads as the model, and what the upstream receives after a rewrite to "up"
EXACT = [
    (
        "nested model left alone",
        b'{"model":"a","tools":[{"model":"a"}]}',
        "a",
        {"model": "up", "tools": [{"model": "a"}]},
    ),
    ("escaped value", b'{"model":"a\\/b","n":1}', "a/b", {"model": "up", "n": 1}),
    (
        "escaped key with a nested plain model",
        b'{"mod\\u0065l":"cheap","metadata":{"model":"cheap"}}',
        "cheap",
        {"model": "up", "metadata": {"model": "cheap"}},
    ),
    (
        "escaped key, nested model of another name",
        b'{"mod\\u0065l":"gpt-5-pro","x":{"model":"gpt-5-pro"}}',
        "gpt-5-pro",
        {"model": "up", "x": {"model": "gpt-5-pro"}},
    ),
]


@pytest.mark.parametrize(("body", "routed", "upstream"), [c[1:] for c in EXACT], ids=[c[0] for c in EXACT])
def test_rewrite_is_exact(body: bytes, routed: str, upstream: dict[str, object]) -> None:
    parsed = parse_request(Api.OPENAI_CHAT, body, {})
    assert parsed.model == routed
    assert orjson.loads(rewrite_model(parsed, "up")) == upstream


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"model":"premium","model":"cheap"}', "model"),
        (b'{"model":"premium","mod\\u0065l":"cheap"}', "model"),
        (b'{"mod\\u0065l":"premium","model":"cheap"}', "model"),
        (b'{"model":"m","stream":false,"stream":true}', "stream"),
    ],
)
def test_duplicate_top_level_keys_are_refused(body: bytes, key: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_request(Api.OPENAI_CHAT, body, {})
    assert info.value.status == 400 and info.value.param == key
    assert "more than once" in info.value.message


def test_duplicates_below_the_top_level_are_the_clients_business() -> None:
    parsed = parse_request(
        Api.OPENAI_CHAT, b'{"model":"m","x":{"a":1,"a":2},"y":[{"model":1},{"model":2}]}', {}
    )
    assert parsed.model == "m"


@pytest.mark.parametrize(
    "model", ["x" * 257, "bad\nname", "tab\tname", "\x00"], ids=["too-long", "newline", "tab", "nul"]
)
def test_model_names_are_bounded_and_printable(model: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_request(Api.OPENAI_CHAT, orjson.dumps({"model": model}), {})
    assert info.value.status == 400 and info.value.param == "model"
    assert parse_request(Api.OPENAI_CHAT, orjson.dumps({"model": "x" * 256}), {}).model == "x" * 256


@pytest.mark.parametrize(
    ("api", "body", "param"),
    [
        (Api.OPENAI_CHAT, b'{"model":"m","messages":"hi"}', "messages"),
        (Api.OPENAI_CHAT, b'{"model":"m","messages":{"role":"user"}}', "messages"),
        (Api.OPENAI_CHAT, b'{"model":"m","messages":["hi"]}', "messages"),
        (Api.ANTHROPIC_MESSAGES, b'{"model":"m","messages":7}', "messages"),
        (Api.OPENAI_RESPONSES, b'{"model":"m","input":{"role":"user"}}', "input"),
        (Api.OPENAI_RESPONSES, b'{"model":"m","input":true}', "input"),
    ],
)
def test_the_conversation_field_is_type_checked(api: Api, body: bytes, param: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_request(api, body, {})
    assert info.value.status == 400 and info.value.param == param


def test_well_typed_conversations_pass() -> None:
    assert parse_request(Api.OPENAI_RESPONSES, b'{"model":"m","input":"hi"}', {}).model == "m"
    assert parse_request(Api.OPENAI_RESPONSES, b'{"model":"m","input":[]}', {}).model == "m"
    assert parse_request(Api.OPENAI_CHAT, b'{"model":"m","messages":[{"role":"user"}]}', {}).model == "m"
