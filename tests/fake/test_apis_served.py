"""The fake upstream's ``apis`` setting: a server (or a model) that serves only some of the APIs
answers the others' paths with a 404 in that path's error shape, as llama.cpp's server does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from spillgate.fake import FakeUpstream, Fault, FaultConfigError, load_behaviors, parse_behaviors
from spillgate.fake.protocol import ApiProtocol

PATHS: dict[ApiProtocol, str] = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic-messages": "/v1/messages",
}


def body_for(protocol: ApiProtocol, model: str = "m") -> dict[str, Any]:
    if protocol == "openai-responses":
        return {"model": model, "input": "hi"}
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if protocol == "anthropic-messages":
        body["max_tokens"] = 16
    return body


def openai_404(path: str, apis: str, method: str = "POST") -> dict[str, Any]:
    return {
        "error": {
            "message": f"{method} {path} not found: this upstream serves only {apis}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def anthropic_404(apis: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": f"POST /v1/messages not found: this upstream serves only {apis}",
        },
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, fake: FakeUpstream, protocol: ApiProtocol, body: object
) -> tuple[int, Any]:
    async with session.post(fake.base_url + PATHS[protocol], json=body) as resp:
        return resp.status, await resp.json(content_type=None)


CHAT_ONLY = "the chat API"
SERVED_CASES = [
    pytest.param(("chat",), "openai-chat", 200, None, id="chat-only/chat"),
    pytest.param(
        ("chat",), "openai-responses", 404, openai_404("/v1/responses", CHAT_ONLY), id="chat-only/responses"
    ),
    pytest.param(("chat",), "anthropic-messages", 404, anthropic_404(CHAT_ONLY), id="chat-only/messages"),
    pytest.param(
        ("messages", "responses"),
        "openai-chat",
        404,
        openai_404("/v1/chat/completions", "the responses and messages APIs"),
        id="no-chat/chat",
    ),
    pytest.param(("messages", "responses"), "anthropic-messages", 200, None, id="no-chat/messages"),
    pytest.param(("chat", "responses", "messages"), "openai-responses", 200, None, id="all/responses"),
]


@pytest.mark.parametrize(("apis", "protocol", "status", "error"), SERVED_CASES)
async def test_served_and_unserved_paths(
    fake: FakeUpstream,
    session: aiohttp.ClientSession,
    apis: tuple[str, ...],
    protocol: ApiProtocol,
    status: int,
    error: dict[str, Any] | None,
) -> None:
    fake.set("*", Fault.from_dict({"apis": list(apis)}))
    got_status, body = await post(session, fake, protocol, body_for(protocol))
    assert got_status == status
    if error is None:
        assert body.get("error") is None
    else:
        assert body == error
    (attempt,) = fake.attempts
    assert (attempt.path, attempt.protocol, attempt.model) == (PATHS[protocol], protocol, "m")
    assert attempt.outcome == ("ok" if status == 200 else "not_served") and not attempt.fault_applied


async def test_default_serves_every_api(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    for protocol in PATHS:
        assert (await post(session, fake, protocol, body_for(protocol)))[0] == 200


async def test_set_through_the_control_api_for_the_whole_server(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    async with session.put(fake.base_url + "/_fake/behaviors/*", json={"apis": ["chat"]}) as resp:
        assert resp.status == 200 and (await resp.json())["fault"] == {"apis": ["chat"]}
    for protocol in PATHS:
        await post(session, fake, protocol, body_for(protocol, model="any"))
    async with session.get(fake.base_url + "/_fake/attempts") as resp:
        log = await resp.json()
    assert [(a["path"], a["protocol"], a["outcome"]) for a in log] == [
        ("/v1/chat/completions", "openai-chat", "ok"),
        ("/v1/responses", "openai-responses", "not_served"),
        ("/v1/messages", "anthropic-messages", "not_served"),
    ]
    async with session.put(fake.base_url + "/_fake/behaviors/*", json={"apis": ["chta"]}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"].startswith("*.apis: unknown API 'chta'")
    assert fake.behaviors == {"*": Fault(apis=("chat",))}, "a bad setting leaves the last good one"


async def test_a_model_of_its_own_overrides_the_server(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("*", Fault(apis=("chat",)))
    fake.set("full", Fault())
    assert (await post(session, fake, "openai-responses", body_for("openai-responses", "full")))[0] == 200
    assert (await post(session, fake, "openai-responses", body_for("openai-responses", "other")))[0] == 404


async def test_unserved_path_404s_before_reading_the_request(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """Neither a body without a model (400 when served) nor another method (405) gets further."""
    fake.set("*", Fault(apis=("chat",)))
    status, body = await post(session, fake, "openai-responses", {"input": "no model"})
    assert (status, body) == (404, openai_404("/v1/responses", CHAT_ONLY))
    async with session.get(fake.base_url + "/v1/responses") as resp:
        assert resp.status == 404
        assert await resp.json() == openai_404("/v1/responses", CHAT_ONLY, method="GET")
    assert (await post(session, fake, "openai-chat", {"messages": []}))[0] == 400


async def test_unserved_requests_do_not_count_for_the_fault(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault.from_dict({"preset": "capacity", "times": 1, "apis": ["chat"]}))
    statuses = [
        (await post(session, fake, p, body_for(p)))[0]
        for p in ("openai-responses", "openai-chat", "openai-chat")
    ]
    assert statuses == [404, 503, 200]
    assert [a.outcome for a in fake.attempts] == ["not_served", "status:503", "ok"]


async def test_the_openai_sdk_sees_a_not_found(fake: FakeUpstream) -> None:
    fake.set("*", Fault(apis=("chat",)))
    client = openai.AsyncOpenAI(api_key="x", base_url=fake.openai_base_url, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model="m", input="hi")
    assert "not found" in info.value.message and info.value.code is None
    completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content
    await client.close()


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"apis": ["chat"]}, Fault(apis=("chat",)), id="list"),
        pytest.param({"apis": "chat"}, Fault(apis=("chat",)), id="bare-name"),
        pytest.param(
            {"apis": ["messages", "chat", "chat"]}, Fault(apis=("chat", "messages")), id="any-order-once"
        ),
        pytest.param({"apis": ["chat", "responses", "messages"]}, Fault(), id="all-is-the-default"),
    ],
)
def test_apis_from_dict(data: dict[str, Any], expected: Fault) -> None:
    fault = Fault.from_dict(data)
    assert fault == expected
    assert Fault.from_dict(fault.to_dict()) == fault


def test_apis_to_dict_and_served() -> None:
    assert Fault().to_dict() == {}
    fault = Fault(apis=("messages", "chat"))
    assert fault.apis == ("chat", "messages") and fault.to_dict() == {"apis": ["chat", "messages"]}
    assert fault.serves("openai-chat") and fault.serves("anthropic-messages")
    assert not fault.serves("openai-responses")
    assert not fault.active, "serving fewer APIs is not a fault that rate/times gate"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"apis": "chatt"},
            "fault.apis: unknown API 'chatt'; expected some of chat, responses, messages",
            id="typo",
        ),
        pytest.param({"apis": ["openai-chat"]}, "fault.apis: unknown API 'openai-chat'", id="protocol-name"),
        pytest.param({"apis": ["chat", 1]}, "fault.apis: unknown API 1", id="not-a-string"),
        pytest.param(
            {"apis": []},
            "fault.apis: expected at least one API (chat, responses, messages), got an empty list",
            id="empty",
        ),
        pytest.param(
            {"apis": 3},
            "fault.apis: expected a list of API names (chat, responses, messages), got int 3",
            id="number",
        ),
        pytest.param({"apis": {"chat": True}}, "fault.apis: expected a list of API names", id="mapping"),
        pytest.param({"apis": None}, "fault.apis: expected a list of API names", id="null"),
        pytest.param(
            {"apsi": ["chat"]}, "fault.apsi: unknown key (allowed here: apis, body,", id="misspelt-key"
        ),
    ],
)
def test_apis_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultConfigError, match="^" + re.escape(message)):
        Fault.from_dict(data)


@pytest.mark.parametrize("apis", [(), ("chat", "nope"), 3, {"chat": 1}])
def test_direct_construction_is_validated(apis: Any) -> None:
    with pytest.raises(ValueError, match="apis must be one or more of chat, responses, messages"):
        Fault(apis=apis)


def test_behaviours_file_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "llama.yaml"
    path.write_text("models:\n  '*': {apis: [chat], conversation: true}\n")
    assert load_behaviors(path) == {"*": Fault(apis=("chat",)).with_conversation()}
    with pytest.raises(FaultConfigError, match=re.escape("behaviors.models.m.apis: unknown API 'grpc'")):
        parse_behaviors({"models": {"m": {"apis": ["grpc"]}}})
