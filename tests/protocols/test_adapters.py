"""The wire adapters, table-driven: every API through the same interface, and what each must say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from spillgate.config.schema import Provider, Secret
from spillgate.fake.content import stream_events
from spillgate.gateway.forward import upstream_headers
from spillgate.protocols.adapter import WireAdapter, adapter_for, adapters, family_adapter
from spillgate.protocols.apis import ROUTES, Api, family_for_path
from spillgate.protocols.errors import ErrorKind, GatewayError
from spillgate.protocols.events import Kind, StreamTracker, parse_event
from spillgate.protocols.request import parse_request
from spillgate.protocols.usage import Usage, from_usage_object
from spillgate.resilience.policy import stop_error


@dataclass(frozen=True)
class Case:
    """What one API must look like through its adapter."""

    api: Api
    title: str
    upstream_suffix: str
    family: str
    client_paths: tuple[str, ...]
    capacity_status: int
    stop_code: str
    continuable: bool
    usage_object: dict[str, Any]
    session_body: dict[str, Any]
    """A body whose own session key is ``"s-1"``."""
    bad_conversation: dict[str, Any]
    bad_param: str


CASES = [
    Case(
        Api.OPENAI_CHAT,
        "OpenAI Chat Completions",
        "/chat/completions",
        "openai",
        ("/v1/chat/completions", "/chat/completions"),
        503,
        "server_error",
        True,
        {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}},
        {"prompt_cache_key": "s-1"},
        {"messages": "hi"},
        "messages",
    ),
    Case(
        Api.OPENAI_RESPONSES,
        "OpenAI Responses",
        "/responses",
        "openai",
        ("/v1/responses", "/responses"),
        503,
        "server_is_overloaded",
        False,
        {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 2}},
        {"prompt_cache_key": "s-1"},
        {"input": {"role": "user"}},
        "input",
    ),
    Case(
        Api.ANTHROPIC_MESSAGES,
        "Anthropic Messages",
        "/v1/messages",
        "anthropic",
        ("/v1/messages",),
        529,
        "server_error",
        True,
        {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 2},
        {"metadata": {"user_id": "s-1"}},
        {"messages": [1]},
        "messages",
    ),
]
IDS = [c.api.value for c in CASES]


def test_every_api_has_exactly_one_adapter_and_a_case_here() -> None:
    assert {c.api for c in CASES} == set(Api)
    for api in Api:
        adapter = adapter_for(api)
        assert isinstance(adapter, WireAdapter)
        assert adapter.api is api and api.adapter is adapter
    listed = list(adapters())
    assert sorted(a.api.value for a in listed) == sorted(a.value for a in Api)


def test_each_family_has_one_default_adapter() -> None:
    families = {a.family for a in adapters()}
    for family in families:
        defaults = [a for a in adapters() if a.family == family and a.family_default]
        assert len(defaults) == 1
        assert family_adapter(family) is defaults[0]  # type: ignore[arg-type]


def test_names_and_paths_are_unique() -> None:
    names = [a.cli_name for a in adapters()]
    paths = [p for a in adapters() for p in a.client_paths]
    assert len(set(names)) == len(names)
    assert len(set(paths)) == len(paths)
    assert all(adapter_for(a.probe_fallback) is not a for a in adapters())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_identity_and_addressing(case: Case) -> None:
    adapter = adapter_for(case.api)
    assert (case.api.title, case.api.upstream_suffix, case.api.family) == (
        case.title,
        case.upstream_suffix,
        case.family,
    )
    assert adapter.client_paths == case.client_paths
    for path in case.client_paths:
        assert ROUTES[path] is case.api and ROUTES.get(path) is case.api and path in ROUTES
        assert family_for_path(path) == case.family
        assert family_for_path(path + "/sub") == case.family


def test_routes_are_the_known_table() -> None:
    assert dict(ROUTES) == {
        "/v1/chat/completions": Api.OPENAI_CHAT,
        "/v1/responses": Api.OPENAI_RESPONSES,
        "/v1/messages": Api.ANTHROPIC_MESSAGES,
        "/chat/completions": Api.OPENAI_CHAT,
        "/responses": Api.OPENAI_RESPONSES,
    }
    assert ROUTES.get("/v1/models") is None and "/v1/models" not in ROUTES
    assert family_for_path("/v1/models") == "openai"
    assert family_for_path("/v1/messages/count_tokens") == "anthropic"


def _client(api: Api, created: int = 1) -> StreamTracker:
    """A tracker that has followed the first events of a real stream (its ids are known)."""
    tracker = StreamTracker(api)
    frames = stream_events(api.value, "m", ("Hel", "lo"), 10, created, True).frames  # type: ignore[arg-type]
    for frame in frames[:-3]:
        tracker.observe(parse_event(frame))
    return tracker


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_synthesised_events_read_back_as_their_kind(case: Case) -> None:
    adapter = adapter_for(case.api)
    client = _client(case.api)
    reader = _client(case.api)

    delta = adapter.text_delta(client, " more")
    assert reader.observe(parse_event(delta)) is Kind.CONTENT
    assert reader.last_text == " more" and client.sent_text().endswith(" more")

    end = adapter.stream_end(client)
    if case.api is Api.OPENAI_RESPONSES:
        assert end == b""
    else:
        assert reader.observe(parse_event(end)) is Kind.TERMINAL

    error = adapter.in_band_error(client, "broke")
    assert StreamTracker(case.api).observe(parse_event(error)) is Kind.ERROR
    assert b"broke" in error


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rewrite_keeps_the_clients_ids(case: Case) -> None:
    adapter = adapter_for(case.api)
    client = _client(case.api, created=1)
    other = StreamTracker(case.api)
    written: list[bytes] = []
    frames = list(stream_events(case.api.value, "m", ("Hel", "lo"), 10, 2, True).frames)  # type: ignore[arg-type]
    for frame in frames:
        event = parse_event(frame)
        other.observe(event)
        written.append(adapter.rewrite(client, event.payload, event.name, frame))
    reader = StreamTracker(case.api)
    kinds = [reader.observe(parse_event(w)) for w in written]
    assert kinds[-1] is Kind.TERMINAL and reader.sent_text() == "Hello"
    if case.api is Api.OPENAI_CHAT:
        assert other.chunk_id != client.chunk_id
        assert reader.chunk_id == client.chunk_id
    elif case.api is Api.OPENAI_RESPONSES:
        assert (other.response_id, other.item_id) != (client.response_id, client.item_id)
        assert (reader.response_id, reader.item_id) == (client.response_id, client.item_id)
        numbers = [orjson.loads(parse_event(w).data)["sequence_number"] for w in written]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert numbers[0] > 0 and client.sequence_number == numbers[-1]
    else:
        assert written == frames  # no stream-wide ids: relayed as they came
    assert adapter.rewrite(client, "not an object", None, b"raw") == b"raw"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prefill_bodies(case: Case) -> None:
    adapter = adapter_for(case.api)
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    made = adapter.prefill_body(body, "Hello, wor  \n", "upstream")
    assert adapter.continuable is case.continuable
    if not case.continuable:
        assert made is None
        return
    assert made is not None
    raw, skipped = made
    assert skipped == "  \n"
    sent = orjson.loads(raw)
    assert sent["model"] == "upstream" and sent["stream"] is True
    assert list(sent) == ["model", "messages", "stream"]
    last = sent["messages"][-1]
    assert last["role"] == "assistant" and last["content"] == "Hello, wor"
    assert sent["messages"][:-1] == body["messages"]
    assert body["model"] == "alias" and len(body["messages"]) == 1  # the client's body is untouched
    assert last.get("prefix") is (True if case.family == "openai" else None)


def test_anthropic_prefill_extends_a_trailing_assistant_text() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A: "}],
    }
    made = adapter_for(Api.ANTHROPIC_MESSAGES).prefill_body(body, "Hello", "m")
    assert made is not None
    assert orjson.loads(made[0])["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "A: Hello"},
    ]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_error_shapes(case: Case) -> None:
    adapter = adapter_for(case.api)
    error = GatewayError(
        503, ErrorKind.OVERLOADED, "busy", code="server_error", retry_after=3, should_retry=True
    )
    headers, body = adapter.error_body(error)
    payload = orjson.loads(body)
    assert ("retry-after", "3") in headers and ("x-should-retry", "true") in headers
    assert payload["error"]["message"] == "busy"
    if case.family == "anthropic":
        assert payload == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    else:
        assert payload["error"]["type"] == "server_error" and payload["error"]["code"] == "server_error"
    assert adapter.is_error_body(body)
    assert not adapter.is_error_body(b"<html>busy</html>")

    stop = stop_error(case.api, "out for an hour")
    assert (stop.status, stop.code, stop.should_retry) == (case.capacity_status, case.stop_code, False)
    assert (adapter.capacity_status, adapter.stop_code) == (case.capacity_status, case.stop_code)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_usage_objects(case: Case) -> None:
    assert from_usage_object(case.api, case.usage_object) == Usage(7, 3, 2)
    assert adapter_for(case.api).usage(case.usage_object) == Usage(7, 3, 2)
    assert from_usage_object(case.api, None) is None
    assert from_usage_object(case.api, {"input_tokens": True, "prompt_tokens": True}) == Usage()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_requests_conversation_and_session(case: Case) -> None:
    adapter = adapter_for(case.api)
    probe = adapter.probe_body("some-model", "Say OK.", 16, True)
    parsed = parse_request(case.api, orjson.dumps(probe), {})
    assert parsed.model == "some-model" and parsed.stream is True and parsed.session_key is None
    assert 16 in probe.values() and "Say OK." in orjson.dumps(probe).decode()

    keyed = parse_request(case.api, orjson.dumps({"model": "m", **case.session_body}), {})
    assert keyed.session_key == "s-1" and adapter.session_key(case.session_body) == "s-1"
    header = parse_request(case.api, orjson.dumps({"model": "m", **case.session_body}), {"session-id": "h"})
    assert header.session_key == "h"

    with pytest.raises(GatewayError) as refused:
        parse_request(case.api, orjson.dumps({"model": "m", **case.bad_conversation}), {})
    assert refused.value.param == case.bad_param


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_credentials_by_family(case: Case) -> None:
    adapter = adapter_for(case.api)
    provider = Provider(name="p", protocol=case.family, base_url="http://x", api_key=Secret("sk-test"))  # type: ignore[arg-type]
    headers = dict(upstream_headers({}, provider, None))
    if case.family == "anthropic":
        assert headers["x-api-key"] == "sk-test" and headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers
        kept = dict(adapter.auth_headers("k", {"anthropic-version": "2024-01-01"}))
        assert "anthropic-version" not in kept  # the client's own version is forwarded instead
    else:
        assert headers["authorization"] == "Bearer sk-test" and "x-api-key" not in headers
    assert not [k for k, _ in adapter.auth_headers(None, {}) if k in ("authorization", "x-api-key")]
