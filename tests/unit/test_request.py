"""Reading routing fields from bodies and rewriting ``model`` without touching other bytes."""

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


def test_rewrite_splices_only_the_model_value() -> None:
    body = (
        b'{"input": [{"role":"user","content":"say \\"model\\": \\"alias\\""}],\n "model" : "alias", "x":1}'
    )
    parsed = parse_request(Api.OPENAI_RESPONSES, body, {})
    out = rewrite_model(parsed, "gpt-5.3-codex")
    assert out == body.replace(b'"model" : "alias"', b'"model":"gpt-5.3-codex"')
    assert orjson.loads(out)["input"] == orjson.loads(body)["input"]


def test_rewrite_same_name_is_identity() -> None:
    body = b'{"model":"same","stream":false}'
    parsed = parse_request(Api.OPENAI_CHAT, body, {})
    assert rewrite_model(parsed, "same") is body


def test_rewrite_falls_back_when_the_pair_repeats() -> None:
    body = b'{"model":"a","tools":[{"model":"a"}]}'
    out = rewrite_model(parse_request(Api.OPENAI_CHAT, body, {}), "b")
    assert orjson.loads(out) == {"model": "b", "tools": [{"model": "a"}]}


def test_rewrite_with_escaped_spelling() -> None:
    body = b'{"model":"a\\/b","n":1}'
    out = rewrite_model(parse_request(Api.OPENAI_CHAT, body, {}), "c")
    assert orjson.loads(out) == {"model": "c", "n": 1}
