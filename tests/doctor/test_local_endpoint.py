"""``spillgate doctor`` on a local OpenAI-compatible server: it also checks the server's other
OpenAI API and says which ``apis:`` its provider declares (``[chat]`` when ``/v1/responses``
answers 404, ``[chat, responses]`` when both answer).

Against hand-made results (the plan and the advice, pure), the fake upstream serving Chat only or
everything, and the real local model (llama-cpp-python, which 404s ``/v1/responses``)."""

from __future__ import annotations

import pytest

from spillgate.config.schema import Secret
from spillgate.doctor.diagnose import diagnose
from spillgate.doctor.plan import next_steps
from spillgate.doctor.report import render_json, render_text
from spillgate.doctor.runner import DoctorReport, run_doctor
from spillgate.doctor.target import UrlTarget, candidate_apis, local_host, root_url
from spillgate.doctor.types import Category, ProbeResult, Role
from spillgate.fake import FakeUpstream, Fault
from spillgate.protocols.apis import Api
from spillgate.resilience.types import ErrorClass as C
from tests.localmodel import LocalModel

from .helpers import cli, listing, result

CHAT, RESPONSES, MESSAGES = Api.OPENAI_CHAT, Api.OPENAI_RESPONSES, Api.ANTHROPIC_MESSAGES
KEY = "sk-local-doctor-key-0123456789"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.1.2.3", True),
        ("192.168.1.20", True),
        ("172.16.0.9", True),
        ("169.254.1.1", True),
        ("fd00::7", True),
        ("ollama", True),  # a compose service name
        ("host.docker.internal", True),
        ("gpu-box.local", True),
        ("nas.lan", True),
        ("api.localhost", True),
        ("api.openai.com", False),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("api.test", False),
        ("", False),
    ],
    ids=lambda v: str(v) if not isinstance(v, bool) else ("local" if v else "remote"),
)
def test_which_hosts_are_local(host: str, local: bool) -> None:
    assert local_host(host) is local


def local_target(root: str = "http://127.0.0.1:8000", model: str = "qwen3") -> UrlTarget:
    return UrlTarget(root, model, candidate_apis("auto", model, root))


def at(target: UrlTarget, api: Api = CHAT, **kw: object) -> ProbeResult:
    """A result of ``target``'s model probe on ``api``."""
    return result(model=target.model, api=api, endpoint=target.endpoint(api), **kw)  # type: ignore[arg-type]


def shown(target: UrlTarget, done: tuple[ProbeResult, ...]) -> list[str]:
    return [f"{p.role.value} {p.describe()}" for p in next_steps(target, done)]


LOCAL = local_target()
CODEX = local_target(model="gpt-oss-codex")
REMOTE = UrlTarget("https://api.example.com", "qwen3", (CHAT, MESSAGES))

PLAN_CASES: dict[str, tuple[UrlTarget, tuple[ProbeResult, ...], list[str]]] = {
    "local, nothing yet: the estimate leaves the API check out (it waits for an answer)": (
        LOCAL,
        (),
        [
            "model POST /v1/chat/completions model=qwen3",
            "model POST /v1/chat/completions model=qwen3 stream",
            "list GET /v1/models",
        ],
    ),
    "local, the model answers: stream, listing, then Responses": (
        LOCAL,
        (at(LOCAL),),
        [
            "model POST /v1/chat/completions model=qwen3 stream",
            "list GET /v1/models",
            "api POST /v1/responses model=qwen3",
        ],
    ),
    "local, a codex model answers on Responses: then Chat": (
        CODEX,
        (at(CODEX, RESPONSES), at(CODEX, RESPONSES, stream=True), listing()),
        ["api POST /v1/chat/completions model=gpt-oss-codex"],
    ),
    "local, the model is unknown: no API check": (
        LOCAL,
        (at(LOCAL, status=404, cls=C.NOT_FOUND), at(LOCAL, MESSAGES, status=404, cls=C.NOT_FOUND)),
        ["list GET /v1/models"],
    ),
    "local, the model fails: no API check": (
        LOCAL,
        (at(LOCAL, status=500, cls=C.UPSTREAM_ERROR),),
        ["model POST /v1/chat/completions model=qwen3 stream", "list GET /v1/models"],
    ),
    "local, the Chat path is missing and Messages answers: no OpenAI API to check": (
        LOCAL,
        (at(LOCAL, status=404, cls=C.NOT_FOUND), at(LOCAL, MESSAGES), at(LOCAL, MESSAGES, stream=True)),
        ["list GET /v1/models"],
    ),
    "remote: never": (
        REMOTE,
        (at(REMOTE), at(REMOTE, stream=True)),
        ["list GET /v1/models"],
    ),
}


@pytest.mark.parametrize(("target", "done", "expected"), PLAN_CASES.values(), ids=PLAN_CASES.keys())
def test_plan(target: UrlTarget, done: tuple[ProbeResult, ...], expected: list[str]) -> None:
    assert shown(target, done) == expected


def check(target: UrlTarget, api: Api, **kw: object) -> ProbeResult:
    return result(Role.API, target.model, api=api, endpoint=target.endpoint(api), **kw)  # type: ignore[arg-type]


ANSWERED = (at(LOCAL), at(LOCAL, stream=True), listing("qwen3"))
DIAGNOSIS_CASES: dict[str, tuple[tuple[ProbeResult, ...], Category, str, str]] = {
    "Responses 404: chat only": (
        (*ANSWERED, check(LOCAL, RESPONSES, status=404, cls=C.NOT_FOUND, message="Not Found")),
        Category.OK,
        "Declare `apis: [chat]` on this server's provider in the gateway's config: it serves OpenAI Chat "
        "Completions, and POST /v1/responses answers 404 (not served). A route to it still serves every "
        "client API: Spillgate translates Responses and Messages requests (Codex CLI, Claude Code) to "
        "OpenAI Chat Completions, unless the route says `translate: false`.",
        "APIs answering: chat; /v1/responses not served (404) -> apis: [chat]",
    ),
    "Responses 405: chat only": (
        (*ANSWERED, check(LOCAL, RESPONSES, status=405, cls=C.BAD_REQUEST)),
        Category.OK,
        "Declare `apis: [chat]` on this server's provider in the gateway's config: it serves OpenAI Chat "
        "Completions, and POST /v1/responses answers 405 (not served). A route to it still serves every "
        "client API: Spillgate translates Responses and Messages requests (Codex CLI, Claude Code) to "
        "OpenAI Chat Completions, unless the route says `translate: false`.",
        "APIs answering: chat; /v1/responses not served (405) -> apis: [chat]",
    ),
    "both answer": (
        (*ANSWERED, check(LOCAL, RESPONSES)),
        Category.OK,
        "Declare `apis: [chat, responses]` on this server's provider in the gateway's config: it serves "
        "OpenAI Chat Completions and OpenAI Responses, so clients of both reach it untranslated.",
        "APIs answering: chat, responses -> apis: [chat, responses]",
    ),
    "Responses rejects the request: chat only, and why": (
        (
            *ANSWERED,
            check(LOCAL, RESPONSES, status=400, cls=C.BAD_REQUEST, message="input: field required"),
        ),
        Category.OK,
        "Declare `apis: [chat]` on this server's provider in the gateway's config: it serves OpenAI Chat "
        'Completions; POST /v1/responses failed (400: "input: field required"), so leave responses out.',
        "APIs answering: chat; /v1/responses failed (400) -> apis: [chat]",
    ),
    "the stream fails, the plain request answered: the fix first, then the APIs": (
        (
            at(LOCAL),
            at(LOCAL, stream=True, status=200, cls=C.STREAM_CUT, in_stream=True),
            listing("qwen3"),
            check(LOCAL, RESPONSES, status=404, cls=C.NOT_FOUND),
        ),
        Category.UPSTREAM_ERROR,
        "Declare `apis: [chat]` on this server's provider in the gateway's config: it serves OpenAI Chat "
        "Completions, and POST /v1/responses answers 404 (not served). A route to it still serves every "
        "client API: Spillgate translates Responses and Messages requests (Codex CLI, Claude Code) to "
        "OpenAI Chat Completions, unless the route says `translate: false`.",
        "APIs answering: chat; /v1/responses not served (404) -> apis: [chat]",
    ),
}


@pytest.mark.parametrize(
    ("results", "category", "declare", "note"), DIAGNOSIS_CASES.values(), ids=DIAGNOSIS_CASES.keys()
)
def test_the_advice_declares_the_apis(
    results: tuple[ProbeResult, ...], category: Category, declare: str, note: str
) -> None:
    d = diagnose(results)
    assert d.category is category  # the API check never decides the verdict on the model
    assert declare in d.advice
    assert d.advice.index(declare) == (0 if category is Category.OK else len(d.advice) - 1)
    assert d.evidence[-1] == note


def test_no_api_check_no_apis_advice() -> None:
    d = diagnose(ANSWERED)
    assert d.category is Category.OK
    assert not any("apis:" in line for line in d.advice + d.evidence)


# -- run for real ------------------------------------------------------------------------------------


async def doctor(base_url: str, model: str, timeout: float = 60.0) -> DoctorReport:
    root = root_url(base_url)
    report = await run_doctor(
        UrlTarget(root, model, candidate_apis("auto", model, root), Secret(KEY)), timeout=timeout
    )
    assert KEY not in render_text(report) + render_json(report)
    return report


def probes(report: DoctorReport) -> list[tuple[str, str, bool, int | None]]:
    return [(r.probe.role.value, r.probe.shown_path, r.probe.stream, r.status) for r in report.results]


async def test_fake_serving_chat_only() -> None:
    async with FakeUpstream({"*": Fault(apis=("chat",))}) as fake:
        report = await doctor(fake.openai_base_url, "qwen3-coder")
    assert probes(report) == [
        ("model", "/v1/chat/completions", False, 200),
        ("model", "/v1/chat/completions", True, 200),
        ("list", "/v1/models", False, 200),
        ("api", "/v1/responses", False, 404),
    ]
    d = report.diagnosis
    assert d.category is Category.OK and report.exit_code == 0
    assert d.advice[0].startswith("Declare `apis: [chat]` on this server's provider")


async def test_fake_serving_both() -> None:
    async with FakeUpstream() as fake:
        report = await doctor(fake.openai_base_url, "qwen3-coder")
    assert probes(report)[-1] == ("api", "/v1/responses", False, 200)
    assert report.diagnosis.advice[0].startswith("Declare `apis: [chat, responses]`")


async def test_the_local_model(local_model: LocalModel) -> None:
    report = await doctor(local_model.base_url, local_model.model)
    assert probes(report) == [
        ("model", "/v1/chat/completions", False, 200),
        ("model", "/v1/chat/completions", True, 200),
        ("list", "/v1/models", False, 200),
        ("api", "/v1/responses", False, 404),
    ]
    d = report.diagnosis
    assert d.category is Category.OK and report.exit_code == 0, render_text(report)
    assert report.results[2].models == (local_model.model,)
    assert d.advice[0].startswith("Declare `apis: [chat]` on this server's provider")
    assert d.evidence[-1] == "APIs answering: chat; /v1/responses not served (404) -> apis: [chat]"


async def test_the_local_model_from_the_command_line(local_model: LocalModel) -> None:
    code, out, err = await cli("--base-url", local_model.base_url, "--model", local_model.model)
    assert code == 0, out + err
    assert "Diagnosis: ok" in out
    assert "1. Declare `apis: [chat]` on this server's provider" in out
    assert "[4/4] POST /v1/responses model=smollm2-135m … 404 not_found" in err
