"""The gateway's own errors: right status, the endpoint's protocol shape, a message that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from spillgate.fake import FakeUpstream

from ..harness import Harness, base_config, start_harness

OPENAI_PATHS = ["/v1/chat/completions", "/v1/responses"]
ALL_PATHS = [*OPENAI_PATHS, "/v1/messages"]


def assert_error(
    reply: Any, path: str, status: int, fragment: str, *, openai_code: str | None = None
) -> None:
    assert reply.status == status, reply.body
    body = reply.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        message = body["error"]["message"]
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
        message = body["error"]["message"]
        if openai_code is not None:
            assert body["error"]["code"] == openai_code
    assert fragment in message, message
    text = reply.body.decode()
    assert "Traceback" not in text and "sk-up" not in text


ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
}


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize(
    ("key", "fragment"),
    [(None, "missing API key"), ("sk-wrong", "invalid API key")],
    ids=["missing", "wrong"],
)
async def test_auth_failures(gw: Harness, path: str, key: str | None, fragment: str) -> None:
    reply = await gw.call(path, {"model": "coder", "messages": []}, key=key)
    assert_error(reply, path, 401, fragment, openai_code="invalid_api_key")
    if path == "/v1/messages":
        assert reply.json()["error"]["type"] == "authentication_error"
    assert not gw.fake.attempts


async def test_models_listing_needs_a_key(gw: Harness) -> None:
    reply = await gw.call("/v1/models", method="GET", key=None)
    assert_error(reply, "/v1/models", 401, "missing API key")


BAD_INPUT = [
    ("bad json", b'{"model": "coder",', 400, "not valid JSON", "invalid_request"),
    ("not an object", b'["coder"]', 400, "must be a JSON object", "invalid_request"),
    ("empty", b"", 400, "body is empty", "invalid_request"),
    (
        "missing model",
        b'{"messages": []}',
        400,
        "missing required field 'model'",
        "missing_required_parameter",
    ),
    ("model not a string", b'{"model": 5}', 400, "'model' must be a non-empty string", "invalid_request"),
    (
        "stream not a bool",
        b'{"model": "coder", "stream": "yes"}',
        400,
        "'stream' must be true or false",
        "invalid_request",
    ),
    (
        "unknown model",
        b'{"model": "gpt-nope"}',
        404,
        "model 'gpt-nope' is not served by this gateway (available: coder, old-coder)",
        "model_not_found",
    ),
]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize(
    ("case", "raw", "status", "fragment", "code"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input(
    gw: Harness, path: str, case: str, raw: bytes, status: int, fragment: str, code: str
) -> None:
    reply = await gw.call(path, raw=raw)
    assert_error(reply, path, status, fragment, openai_code=code)
    if path == "/v1/messages":
        assert reply.json()["error"]["type"] == ANTHROPIC_TYPES[status]
    else:
        assert reply.json()["error"]["type"] == "invalid_request_error"
    assert not gw.fake.attempts


@pytest.mark.parametrize("path", ALL_PATHS)
async def test_wrong_method(gw: Harness, path: str) -> None:
    reply = await gw.call(path, method="GET")
    assert_error(
        reply, path, 405, f"method GET is not allowed on {path}; use POST", openai_code="method_not_allowed"
    )
    assert reply.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/messages/count_tokens_unknown", "/"])
async def test_wrong_path(gw: Harness, path: str) -> None:
    reply = await gw.call(path, {"model": "coder"})
    assert_error(reply, path, 404, "no such endpoint: POST " + path)
    if path.startswith("/v1/messages"):
        assert reply.json()["error"]["type"] == "not_found_error"


async def test_model_without_a_route_for_the_protocol(fake: FakeUpstream) -> None:
    config = base_config(fake)
    config["models"]["gpt-only"] = {
        "routes": [{"accounts": ["oa-1"], "model": "up-coder", "translate": False}]
    }
    harness = await start_harness(fake, config)
    try:
        reply = await harness.call("/v1/messages", {"model": "gpt-only", "max_tokens": 5, "messages": []})
        assert_error(reply, "/v1/messages", 404, "has no route that serves the Anthropic Messages API")
        assert "translate: false" in reply.json()["error"]["message"]
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


@pytest.mark.parametrize("path", ALL_PATHS)
async def test_body_over_the_size_limit(fake: FakeUpstream, path: str) -> None:
    config = base_config(fake)
    config["limits"] = {"max_body_bytes": "64KiB"}
    harness = await start_harness(fake, config)
    try:
        big = b'{"model": "coder", "input": "' + b"x" * 70_000 + b'"}'
        reply = await harness.call(path, raw=big)
        assert_error(reply, path, 413, "larger than the gateway's limit of 65536 bytes")
        if path == "/v1/messages":
            assert reply.json()["error"]["type"] == "request_too_large"
        # Just under the limit is fine.
        ok = await harness.call(
            path, raw=b'{"model": "coder", "input": "' + b"x" * 60_000 + b'", "max_tokens": 5}'
        )
        assert ok.status == 200
        assert not any(a.body == big for a in fake.attempts)
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_every_account_disabled_is_a_503(gw: Harness) -> None:
    for account in ("oa-1", "oa-2"):
        gw.app.gateway.health.disable(f"account:{account}", "test")
    reply = await gw.call("/v1/chat/completions", {"model": "coder", "messages": []})
    assert_error(reply, "/v1/chat/completions", 503, "no route of model 'coder' can take the request now")
    assert reply.headers["retry-after"] == "1"
    assert reply.headers["x-should-retry"] == "true"
    assert not gw.fake.attempts
