"""Careless clients: Hypothesis writes request bodies (JSON of the wrong types in the fields the
gateway reads, escaped and duplicated keys, garbage bytes), headers and paths, and a running
gateway in front of a healthy fake upstream answers them (issue 10, acceptance: a client fuzz).

Every answer is the upstream's success or an error in the client's protocol with a 4xx status —
never a 500, never a traceback in the log — and nothing but a well-formed request reaches the
upstream.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillgate.app import App
from spillgate.config.loader import parse_settings
from spillgate.fake import FakeUpstream

from .conftest import LogWatch, LoopThread, watch_logs

PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/models", "/v1/nope", "/admin/health")
FIELDS = ("model", "stream", "messages", "input", "metadata", "prompt_cache_key", "max_tokens", "tools")


@dataclass
class Rig:
    loop: LoopThread
    fake: FakeUpstream
    app: App
    logs: LogWatch


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = LoopThread()
    fake = FakeUpstream()
    loop.run(fake.start("127.0.0.1", 0))
    config = {
        "listen": "127.0.0.1:0",
        "providers": {
            "oa": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk-up-oa"},
            "an": {"protocol": "anthropic", "base_url": fake.anthropic_base_url, "api_key": "sk-up-an"},
        },
        "models": {
            "m": {"routes": [{"provider": "oa", "model": "up"}, {"provider": "an", "model": "up"}]},
            "*": {"routes": [{"provider": "oa", "model": "*"}]},
        },
        "limits": {"max_body_bytes": "1MiB"},
    }
    app = App(parse_settings(config, env={}, source="fuzz"))
    loop.run(app.start())
    try:
        with watch_logs() as logs:
            yield Rig(loop, fake, app, logs)
    finally:
        loop.run(app.stop(grace=1))
        loop.run(fake.close())
        loop.close()


leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.just("m"),
    st.just(""),
)
value = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200))
    fields = draw(st.dictionaries(st.sampled_from(FIELDS), value, max_size=6))
    if kind <= 6:
        fields.setdefault("model", draw(st.sampled_from(["m", "other-model", "m" * 300, "a\nb"]) | leaf))
        fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    body = json.dumps(fields, ensure_ascii=draw(st.booleans())).encode()  # big ints too
    if kind == 7 and body.startswith(b'{"model"'):  # the key spelled with an escape
        body = b'{"mod\\u0065l"' + body[len(b'{"model"') :]
    if kind == 8:  # a duplicated top-level key
        body = body[:-1] + (b"," if len(body) > 2 else b"") + b'"model":"m"}'
    if kind == 9:
        body = b"[" + body + b"]"
    return body


HEADERS = st.dictionaries(
    st.sampled_from(
        ["content-type", "anthropic-version", "authorization", "x-api-key", "origin", "session-id", "accept"]
    ),
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40),
    max_size=4,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
    body=bodies(),
    headers=HEADERS,
)
def test_no_client_request_breaks_the_gateway(
    rig: Rig, path: str, method: str, body: bytes, headers: dict[str, str]
) -> None:
    before = len(rig.fake.attempts)
    connection = http.client.HTTPConnection("127.0.0.1", rig.app.server.port, timeout=15)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        status, answer = response.status, response.read()
    finally:
        connection.close()
    assert status != 500 and status < 600, (status, answer[:300])
    assert not rig.logs.take()
    if status >= 400:
        error = orjson.loads(answer)
        assert isinstance(error["error"]["message"], str), answer
    for attempt in rig.fake.attempts[before:]:  # what reached the upstream is well-formed
        sent = orjson.loads(attempt.body)
        assert isinstance(sent, dict) and isinstance(sent["model"], str) and sent["model"].isprintable()
        assert len(sent["model"]) <= 256
