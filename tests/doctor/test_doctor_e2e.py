"""The doctor against the fault-injecting fake upstream, straight and through a running Spillgate,
in-process and as the real command line."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spillgate.app import App
from spillgate.config.loader import load_settings, parse_settings
from spillgate.config.schema import Secret
from spillgate.doctor.report import render_json, render_text
from spillgate.doctor.runner import DoctorReport, run_doctor
from spillgate.doctor.target import UrlTarget, alias_target, candidate_apis, root_url
from spillgate.doctor.types import Category, Role
from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key

from .helpers import cli

KEY = "sk-doctor-test-key-0123456789"
CLIENT_KEY = "sk-sg-doctor-client-key-42"
NGINX_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<hr><center>nginx/1.25.3</center></body></html>"
)


async def start_fake(behaviors: dict[str, Fault]) -> FakeUpstream:
    fake = FakeUpstream(behaviors)
    await fake.start("127.0.0.1", 0)
    return fake


async def doctor(base_url: str, model: str, *, key: str | None = KEY, timeout: float = 3.0) -> DoctorReport:
    root = root_url(base_url)
    target = UrlTarget(root, model, candidate_apis("auto", model, root), Secret(key) if key else None)
    report = await run_doctor(target, timeout=timeout)
    text = render_text(report) + render_json(report)
    if key:
        assert key not in text, "the key must never be printed"
    return report


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def advice(report: DoctorReport) -> str:
    return "\n".join(report.diagnosis.advice)


# -- straight at an OpenAI- / Anthropic-compatible endpoint ------------------------------------


async def test_healthy(fake: FakeUpstream) -> None:
    report = await doctor(fake.openai_base_url, "gpt-4o")
    assert report.diagnosis.category is Category.OK and report.exit_code == 0
    assert [(r.probe.role, r.probe.stream, r.status) for r in report.results] == [
        (Role.MODEL, False, 200),
        (Role.MODEL, True, 200),
        (Role.LIST, False, 200),
        (Role.API, False, 200),  # a loopback endpoint: which of its APIs answer (apis: advice)
    ]
    assert report.results[1].first_content is not None
    sent = fake.attempts_for("gpt-4o")
    assert [a.headers["authorization"] for a in sent] == [f"Bearer {KEY}"] * 3  # two chat, one responses
    assert b'"max_tokens":16' in sent[0].body


async def test_one_model_at_capacity_while_others_answer() -> None:
    fake = await start_fake({"gpt-x": Fault.capacity()})
    try:
        report = await doctor(fake.base_url, "gpt-x")  # no /v1: accepted as well
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.MODEL_CAPACITY and report.exit_code == 1
    assert d.answered and "gpt-x" not in d.answered
    assert "gpt-x is at capacity" in d.summary
    assert f"Switch to another model for now (e.g. {d.answered[0]})" in advice(report)
    assert "Selected model is at capacity" in "\n".join(d.evidence)


async def test_every_model_overloaded_is_the_provider() -> None:
    fake = await start_fake({"*": Fault.overloaded()})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x")
    finally:
        await fake.close()
    assert report.diagnosis.category is Category.PROVIDER_OVERLOADED
    assert sum(r.probe.role is Role.OTHER for r in report.results) == 2
    assert "switching models there will not help" in advice(report)


async def test_anthropic_overload_of_one_model() -> None:
    fake = await start_fake({"claude-sonnet-4-5": Fault.overloaded()})
    try:
        report = await doctor(fake.anthropic_base_url, "claude-sonnet-4-5")
    finally:
        await fake.close()
    first = report.results[0]
    assert first.probe.shown_path == "/v1/messages" and first.status == 529
    assert first.error_type == "overloaded_error"
    assert report.diagnosis.category is Category.MODEL_CAPACITY
    assert all(m.startswith("claude") for m in report.diagnosis.answered)
    sent = fake.attempts_for("claude-sonnet-4-5")[0].headers
    assert sent["x-api-key"] == KEY and sent["anthropic-version"] == "2023-06-01"


async def test_rate_limited_names_the_wait_and_tries_again() -> None:
    fake = await start_fake({"gpt-x": Fault.rate_limited(retry_after=1)})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x")
        tries = len(fake.attempts_for("gpt-x"))
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.RATE_LIMITED and d.retry_after == 1.0
    assert "Retry after 1 s (from its retry-after header)" in advice(report)
    assert tries == 2 and report.results[-1].probe.role is Role.RETRY


async def test_quota_with_its_reset() -> None:
    body = {
        "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "resets_in_seconds": 7200,
        }
    }
    fake = await start_fake({"gpt-x": Fault(status=429, body=body)})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x")
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.QUOTA
    assert "resets in about 2 h" in d.summary
    assert "retrying sooner will not help" in advice(report)


async def test_rejected_key_is_masked() -> None:
    fake = await start_fake({"gpt-x": Fault(status=401)})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x")
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.AUTH
    assert "The key sk-…6789 is rejected" in d.summary
    assert [r.probe.role for r in report.results] == [Role.MODEL, Role.LIST]


async def test_connection_refused_is_the_network() -> None:
    report = await doctor(f"http://127.0.0.1:{unused_port()}/v1", "gpt-x")
    d = report.diagnosis
    assert d.category is Category.NETWORK and report.exit_code == 1
    assert len(report.results) == 1
    assert "Cannot reach 127.0.0.1:" in d.summary and "could not connect" in d.summary


async def test_html_502_is_the_proxy_in_between() -> None:
    page = Fault(
        status=502, body=NGINX_502, headers=(("content-type", "text/html"), ("server", "nginx/1.25.3"))
    )
    fake = await start_fake({"*": page})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x")
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.PROXY_OR_ROUTE_OVERLOAD
    assert "502 with an html page from nginx/1.25.3" in d.summary
    assert "502 Bad Gateway" in "\n".join(d.evidence)


# -- through a running Spillgate ----------------------------------------------------------------


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[App, FakeUpstream]]:
    fake = await start_fake({"busy-a": Fault.capacity(), "busy-b": Fault.capacity()})
    config = {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "doctor", "hash": hash_key(CLIENT_KEY)}],
        "providers": {"up": {"protocol": "openai", "base_url": fake.openai_base_url}},
        "accounts": [
            {"id": "a1", "provider": "up", "api_key": "sk-up-account-1"},
            {"id": "a2", "provider": "up", "api_key": "sk-up-account-2"},
        ],
        "models": {
            "coder": {
                "routes": [{"accounts": ["a1"], "model": "busy-a"}, {"accounts": ["a2"], "model": "busy-b"}]
            },
            "helper": {"routes": [{"accounts": ["a1"], "model": "fine"}]},
            "locked": {"routes": [{"provider": "up", "model": "denied"}]},
        },
    }
    fake.set("denied", Fault(status=401, error_type="invalid_request_error", error_message="bad key"))
    app = App(parse_settings(config, env={}, source="test"))
    await app.start()
    yield app, fake
    await app.stop(grace=1)
    await fake.close()


async def test_through_spillgate_every_route_at_capacity(gateway: tuple[App, FakeUpstream]) -> None:
    app, _ = gateway
    report = await doctor(app.url, "coder", key=CLIENT_KEY)
    d = report.diagnosis
    assert d.via_spillgate
    assert d.category is Category.MODEL_CAPACITY and d.answered == ("helper",)
    evidence = "\n".join(d.evidence)
    assert "tried coder[0]/a1, coder[1]/a2" in evidence
    assert "upstream said: Selected model is at capacity" in evidence
    assert "x-spillgate-attempts: 2" in evidence
    assert "x-spillgate-route: helper[0]" in evidence
    assert "spillgate doctor --alias coder" in advice(report)


async def test_through_spillgate_healthy_shows_the_route(gateway: tuple[App, FakeUpstream]) -> None:
    app, _ = gateway
    report = await doctor(app.url + "/v1", "helper", key=CLIENT_KEY)
    assert report.diagnosis.category is Category.OK
    assert "through Spillgate route helper[0]" in report.diagnosis.summary


async def test_through_spillgate_the_upstream_rejecting_the_gateways_key(
    gateway: tuple[App, FakeUpstream],
) -> None:
    app, _ = gateway
    report = await doctor(app.url, "locked", key=CLIENT_KEY)
    d = report.diagnosis
    assert d.via_spillgate and d.category is Category.AUTH, render_text(report)
    assert "x-spillgate-error-class: auth" in "\n".join(d.evidence)
    assert "rejected the gateway's credentials" in d.summary and "Your own key is fine" in advice(report)


async def test_through_spillgate_with_a_wrong_client_key(gateway: tuple[App, FakeUpstream]) -> None:
    app, _ = gateway
    report = await doctor(app.url, "helper", key="sk-not-a-client-key-000")
    assert report.diagnosis.category is Category.AUTH


# -- an alias of a config file, route by route ---------------------------------------------------


def alias_config(tmp_path: Path, fake: FakeUpstream) -> Path:
    path = tmp_path / "spillgate.yaml"
    path.write_text(
        f"providers:\n  up: {{protocol: openai, base_url: '{fake.openai_base_url}'}}\n"
        "accounts:\n"
        "  - {id: a1, provider: up, api_key: '${DOCTOR_KEY_1}'}\n"
        "  - {id: a2, provider: up, api_key: '${DOCTOR_KEY_2}'}\n"
        "models:\n"
        "  coder:\n"
        "    routes:\n"
        "      - {accounts: [a1], model: busy-model}\n"
        "      - {accounts: [a2], model: fine-model}\n"
    )
    return path


ALIAS_ENV = {"DOCTOR_KEY_1": "sk-first-account-key-1111", "DOCTOR_KEY_2": "sk-second-account-key-2222"}


async def test_alias_first_route_at_capacity(tmp_path: Path) -> None:
    fake = await start_fake({"busy-model": Fault.capacity()})
    try:
        settings = load_settings(alias_config(tmp_path, fake), env=ALIAS_ENV)
        report = await run_doctor(alias_target(settings, "coder"), timeout=3)
        sent = {a.model: a.headers["authorization"] for a in fake.attempts}
    finally:
        await fake.close()
    d = report.diagnosis
    assert d.category is Category.MODEL_CAPACITY and report.exit_code == 1
    assert "Route coder[0]/a1 (busy-model at provider up) is at capacity" in d.summary
    assert d.answered == ("coder[1]/a2",)
    assert sent == {
        "busy-model": "Bearer sk-first-account-key-1111",
        "fine-model": "Bearer sk-second-account-key-2222",
    }
    text = render_text(report)
    assert all(key not in text for key in ALIAS_ENV.values())


# -- the command line ------------------------------------------------------------------------------


async def test_cli_capacity_exit_code_progress_and_json(tmp_path: Path) -> None:
    fake = await start_fake({"gpt-x": Fault.capacity(), "busy-model": Fault.capacity()})
    try:
        base = ["--base-url", fake.openai_base_url, "--api-key-env", "DOCTOR_KEY", "--timeout", "3"]
        code, out, err = await cli(*base, "--model", "gpt-x", env={"DOCTOR_KEY": KEY})
        json_code, json_out, _ = await cli(
            *base, "--model", "gpt-4o", "--json", "--quiet", env={"DOCTOR_KEY": KEY}
        )
        alias_code, alias_out, _ = await cli(
            "--alias", "coder", "--config", str(alias_config(tmp_path, fake)), "--quiet", env=ALIAS_ENV
        )
    finally:
        await fake.close()
    assert code == 1, err
    assert "Diagnosis: model_capacity" in out and "What to do next:" in out
    assert "[1/3] POST /v1/chat/completions model=gpt-x … 503 capacity" in err
    assert KEY not in out + err
    document = json.loads(json_out)
    assert json_code == 0 and document["category"] == "ok" and document["exit_code"] == 0
    assert [p["role"] for p in document["probes"]] == ["model", "model", "list", "api"]
    assert document["probes"][0]["key"] == "sk-…6789"
    assert alias_code == 1 and "coder[0]/a1" in alias_out and "is at capacity" in alias_out


async def test_cli_usage_errors() -> None:
    for args, message in [
        ((), "say what to examine"),
        (("--base-url", "http://127.0.0.1:1"), "--base-url needs --model"),
        (("--base-url", "127.0.0.1:1", "--model", "m"), "not an http(s) URL"),
        (("--alias", "coder"), "--alias needs --config"),
        (("--base-url", "http://h", "--model", "m", "--api-key-env", "NOPE_UNSET"), "NOPE_UNSET is not set"),
    ]:
        code, _, err = await cli(*args)
        assert code == 2 and message in err, (args, err)


async def test_responses_capacity_inside_the_stream() -> None:
    in_stream = Fault(
        stream_error_after_events=1,
        stream_error_code="server_is_overloaded",
        stream_error_message="Selected model is at capacity. Please try a different model.",
    )
    fake = await start_fake({"gpt-5-codex": in_stream})
    try:
        report = await doctor(fake.openai_base_url, "gpt-5-codex")
    finally:
        await fake.close()
    streamed = next(r for r in report.results if r.probe.stream)
    assert streamed.probe.shown_path == "/v1/responses"
    assert streamed.status == 200 and streamed.in_stream and streamed.error_code == "server_is_overloaded"
    assert report.diagnosis.category is Category.MODEL_CAPACITY
    assert "inside a 200 stream" in advice(report)


async def test_a_silent_model_is_bounded_by_the_timeout() -> None:
    fake = await start_fake({"gpt-x": Fault.hang()})
    try:
        report = await doctor(fake.openai_base_url, "gpt-x", timeout=0.3)
    finally:
        await fake.close()
    first = report.results[0]
    assert first.error_class is not None and first.error_class.value == "timeout" and first.latency < 1.0
    assert report.diagnosis.category is Category.UPSTREAM_ERROR
    assert "--timeout" in advice(report)
