"""The model the gateway routes and checks is the model the upstream receives (issue 10, item 5)."""

from __future__ import annotations

import orjson

from spillgate.fake import FakeUpstream
from spillgate.gateway.auth import hash_key

from ..harness import CLIENT_KEY, start_harness


def config(fake: FakeUpstream) -> dict[str, object]:
    return {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "cheap-only", "hash": hash_key(CLIENT_KEY), "models": ["cheap"]}],
        "providers": {"oa": {"protocol": "openai", "base_url": fake.openai_base_url, "api_key": "sk-org"}},
        "models": {
            "cheap": {"routes": [{"provider": "oa", "model": "up-cheap"}]},
            "premium": {"routes": [{"provider": "oa", "model": "up-premium"}]},
            "*": {"routes": [{"provider": "oa", "model": "up-pinned"}]},
        },
    }


async def test_duplicate_model_keys_cannot_pass_a_key_limited_to_cheap(fake: FakeUpstream) -> None:
    harness = await start_harness(fake, config(fake))
    try:
        for raw in (
            b'{"model":"premium","model":"cheap","messages":[]}',
            b'{"mod\\u0065l":"premium","model":"cheap","messages":[]}',
        ):
            reply = await harness.call("/v1/chat/completions", raw=raw)
            assert reply.status == 400, reply.body
            assert "more than once" in reply.json()["error"]["message"]
        assert not fake.attempts  # nothing reached the upstream
        # The plain request for the allowed model goes through, as "up-cheap" and nothing else.
        ok = await harness.call("/v1/chat/completions", {"model": "cheap", "messages": []})
        assert ok.status == 200
        assert [orjson.loads(a.body)["model"] for a in fake.attempts] == ["up-cheap"]
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)


async def test_an_escaped_model_key_cannot_slip_past_the_pinned_route(fake: FakeUpstream) -> None:
    cfg = config(fake)
    cfg["client_keys"] = [{"name": "any", "hash": hash_key(CLIENT_KEY)}]
    harness = await start_harness(fake, cfg)
    try:
        raw = b'{"mod\\u0065l":"gpt-5-pro","x":{"model":"gpt-5-pro"},"messages":[]}'
        reply = await harness.call("/v1/chat/completions", raw=raw)
        assert reply.status == 200, reply.body
        sent = orjson.loads(fake.attempts[-1].body)
        assert sent["model"] == "up-pinned"  # the `*` route's pinned model, at the top level
        assert sent["x"] == {"model": "gpt-5-pro"}  # a nested field is the client's own business
        raw = b'{"mod\\u0065l":"cheap","metadata":{"model":"cheap"},"messages":[]}'
        reply = await harness.call("/v1/chat/completions", raw=raw)
        assert reply.status == 200 and reply.headers["x-spillgate-route"] == "cheap[0]"
        sent = orjson.loads(fake.attempts[-1].body)
        assert sent["model"] == "up-cheap" and sent["metadata"] == {"model": "cheap"}
    finally:
        await harness.http.close()
        await harness.app.stop(grace=1)
