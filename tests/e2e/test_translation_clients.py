"""The real clients through translation: Codex CLI (Responses) and Claude Code (Messages) finish
their coding turns on upstreams of another API while their own API's primary is at capacity,
and on the real local model (llama-cpp-python serving SmolLM2-135M, Chat only).

The fake upstream's scripted turn (reasoning, a call of the request's shell tool, the answer
echoing the tool's output) plays in each API; every fallback upstream serves one API only, so a
request the gateway sent to the wrong API would be a 404.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.fake.conversation import DEFAULT_ANSWER, ECHO_PREFIX
from spillgate.gateway.auth import hash_key
from tests.localmodel import LocalModel

from .claude import Arm, run_claude
from .codex import RUN_TIMEOUT, run_codex
from .conftest import CLIENT_KEY, Stack, start_stack

ANSWER = f"{DEFAULT_ANSWER}\n{ECHO_PREFIX}spillgate-e2e"
TIMEOUTS = {"connect": "2s", "first_byte": "5s", "first_token": "10s", "stream_idle": "5s", "total": "20s"}
LOCAL_TIMEOUTS = {
    "connect": "2s",
    "first_byte": "120s",
    "first_token": "150s",
    "stream_idle": "60s",
    "total": "150s",
}
LOCAL_CONTEXT = 16384
"""The context the local model server is started with (tests/localmodel.py)."""


def config(fake: FakeUpstream, local: LocalModel | None = None) -> dict[str, Any]:
    def openai(apis: list[str]) -> dict[str, Any]:
        return {"protocol": "openai", "base_url": fake.openai_base_url, "timeouts": TIMEOUTS, "apis": apis}

    providers: dict[str, Any] = {
        "openai": openai(["responses", "chat"]),
        "chat-only": openai(["chat"]),
        "responses-only": openai(["responses"]),
        "anthropic": {"protocol": "anthropic", "base_url": fake.anthropic_base_url, "timeouts": TIMEOUTS},
    }
    models: dict[str, Any] = {
        "codex-to-claude": {
            "routes": [
                {"provider": "openai", "model": "up-primary"},
                {"provider": "anthropic", "model": "up-claude"},
            ]
        },
        "codex-to-chat": {
            "routes": [
                {"provider": "openai", "model": "up-primary"},
                {"provider": "chat-only", "model": "up-chat"},
            ]
        },
        "claude-to-chat": {
            "routes": [
                {"provider": "anthropic", "model": "up-claude-primary"},
                {"provider": "chat-only", "model": "up-chat"},
            ]
        },
        "claude-to-responses": {
            "routes": [
                {"provider": "anthropic", "model": "up-claude-primary"},
                {"provider": "responses-only", "model": "up-responses"},
            ]
        },
        # Other model names a client may ask for (a small fast model): the Anthropic fake.
        "*": {"routes": [{"provider": "anthropic", "model": "*"}]},
    }
    if local is not None:
        providers["local"] = {
            "protocol": "openai",
            "base_url": local.base_url,
            "apis": ["chat"],
            "timeouts": LOCAL_TIMEOUTS,
        }
        local_route = {"provider": "local", "model": local.model, "context_window": LOCAL_CONTEXT}
        models["codex-local"] = {"routes": [{"provider": "openai", "model": "up-primary"}, local_route]}
        models["claude-local"] = {"routes": [local_route]}
        # SmolLM2's trained context: Claude Code's whole prompt does not fit it.
        models["claude-local-8k"] = {"routes": [{**local_route, "context_window": 8192}]}
    return {
        "listen": "127.0.0.1:0",
        "client_keys": [{"name": "e2e", "hash": hash_key(CLIENT_KEY)}],
        "providers": providers,
        "models": models,
        "resilience": {"deadline": "60s" if local is None else "170s"},
    }


def faults(fake: FakeUpstream) -> None:
    fake.set("up-primary", Fault.capacity())
    fake.set("up-claude-primary", Fault.capacity())
    fake.set("up-claude", Fault(apis=("messages",)).with_conversation())
    fake.set("up-chat", Fault(apis=("chat",)).with_conversation())
    fake.set("up-responses", Fault(apis=("responses",)).with_conversation())


@pytest.fixture
async def stack(fake: FakeUpstream) -> Any:
    faults(fake)
    s = await start_stack(fake, config(fake))
    yield s
    await s.app.stop(grace=1)


def _bodies(fake: FakeUpstream, model: str) -> list[dict[str, Any]]:
    return [json.loads(a.body) for a in fake.attempts_for(model)]


def _codex_function_tools(body: dict[str, Any]) -> list[str]:
    """The flat names of what Codex offered that another API can carry (namespaces flattened)."""
    names: list[str] = []
    for tool in body.get("tools", []):
        if tool.get("type") in ("function", "custom"):
            names.append(tool["name"])
        elif tool.get("type") == "namespace":
            names.extend(f"{tool['name']}__{inner['name']}" for inner in tool.get("tools", []))
    return names


@pytest.mark.parametrize(
    ("model", "upstream", "path"),
    [("codex-to-claude", "up-claude", "/v1/messages"), ("codex-to-chat", "up-chat", "/v1/chat/completions")],
    ids=["claude-messages", "chat-only"],
)
async def test_codex_turn_fails_over_to_another_api(
    stack: Stack, client_bin: Path, tmp_path: Path, model: str, upstream: str, path: str
) -> None:
    run = await run_codex(
        client_bin / "codex",
        workdir=tmp_path,
        base_url=stack.gateway_url + "/v1",
        model=model,
        api_key=CLIENT_KEY,
        timeout=RUN_TIMEOUT,
    )
    assert run.completed, run.describe()
    assert run.final_message == ANSWER, run.describe()
    commands = run.items("command_execution")
    assert commands and "spillgate-e2e" in str(commands[0].get("aggregated_output", "")), run.describe()
    fake = stack.fake
    assert {a.path for a in fake.attempts_for(upstream)} == {path}
    assert {a.outcome for a in fake.attempts_for("up-primary")} == {"status:503"}
    # What Codex offered reached the other API: every function, custom and namespaced tool (the
    # hosted web_search left out), its instructions first, the tool output paired with its call.
    codex_body = _bodies(fake, "up-primary")[0]
    sent = _bodies(fake, upstream)
    if path == "/v1/messages":
        names = [t["name"] for t in sent[0]["tools"]]
        assert sent[0]["system"], "Codex's developer instructions are the system prompt"
        results = [
            block
            for message in sent[-1]["messages"]
            if isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
        calls = [
            block
            for message in sent[-1]["messages"]
            if message["role"] == "assistant" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]
        assert [r["tool_use_id"] for r in results] == [c["id"] for c in calls]
    else:
        names = [t["function"]["name"] for t in sent[0]["tools"]]
        assert sent[0]["messages"][0]["role"] == "system"
        assert [m["role"] for m in sent[0]["messages"]].count("system") == 1
        calls = [c for m in sent[-1]["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
        results = [m for m in sent[-1]["messages"] if m["role"] == "tool"]
        assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls]
    assert names == _codex_function_tools(codex_body)
    assert "web_search" not in names
    assert calls and results


@pytest.mark.parametrize(
    ("model", "upstream", "path"),
    [
        ("claude-to-chat", "up-chat", "/v1/chat/completions"),
        ("claude-to-responses", "up-responses", "/v1/responses"),
    ],
    ids=["chat", "responses"],
)
async def test_claude_code_tool_turn_through_another_api(
    stack: Stack, client_bin: Path, tmp_path: Path, model: str, upstream: str, path: str
) -> None:
    arm = Arm("spillgate", stack.fake, stack.gateway_url, CLIENT_KEY, stack)
    run = await run_claude(
        arm,
        tmp_path,
        model=model,
        prompt="Run `echo spillgate-e2e` with the Bash tool and tell me what it printed.",
        timeout=90,
        extra=["--allowedTools", "Bash"],
    )
    assert run.succeeded(ANSWER), run.describe()
    fake = stack.fake
    assert {a.path for a in fake.attempts_for(upstream)} == {path}
    assert len(fake.attempts_for(upstream)) >= 2, "the tool call, then the follow-up with its output"
    follow_up = json.dumps(_bodies(fake, upstream)[-1])
    assert "spillgate-e2e" in follow_up


# -- the real local model -------------------------------------------------------------------------
SHORT_INSTRUCTIONS = "You are a coding agent. Answer briefly."


async def test_codex_plain_turn_on_the_local_model(
    fake: FakeUpstream, local_model: LocalModel, client_bin: Path, tmp_path: Path
) -> None:
    """Codex's Responses primary at capacity; the answer comes from SmolLM2 on llama-cpp-python
    (Chat only), translated. Codex's base instructions are replaced by a short file (its
    ``model_instructions_file``) and its extra context is left out, so the prompt fits the small
    model's context and is processed in seconds on two cores."""
    faults(fake)
    stack = await start_stack(fake, config(fake, local_model))
    instructions = tmp_path / "instructions.md"
    instructions.write_text(SHORT_INSTRUCTIONS)
    from .codex import overrides

    flags = [
        *overrides(),
        "-c",
        f"model_instructions_file={json.dumps(str(instructions))}",
        "-c",
        "include_permissions_instructions=false",
        "-c",
        "include_environment_context=false",
        "-c",
        "include_apps_instructions=false",
        "-c",
        'web_search="disabled"',
        "-c",
        "model_providers.e2e.stream_idle_timeout_ms=180000",
    ]
    try:
        run = await run_codex(
            client_bin / "codex",
            workdir=tmp_path,
            base_url=stack.gateway_url + "/v1",
            model="codex-local",
            api_key=CLIENT_KEY,
            task="Say hello in one short sentence.",
            timeout=240,
            flags=flags,
        )
    finally:
        await stack.app.stop(grace=1)
    assert run.completed, run.describe()
    assert run.final_message, run.describe()


CLAUDE_SMALL_PROMPT = ["--system-prompt", SHORT_INSTRUCTIONS, "--tools", ""]
"""Claude Code's own system prompt replaced and its tools left out: measured (2.1.328, ``-p "Say
hello."``), its whole request is a 48.8 KB body, about 12-14k tokens (12 tools with 32k characters
of schemas, 7k of system prompt); with these flags about 400."""


async def test_claude_code_plain_turn_on_the_local_model(
    fake: FakeUpstream, local_model: LocalModel, client_bin: Path, tmp_path: Path
) -> None:
    faults(fake)
    stack = await start_stack(fake, config(fake, local_model))
    arm = Arm("spillgate", fake, stack.gateway_url, CLIENT_KEY, stack)
    try:
        run = await run_claude(
            arm, tmp_path, model="claude-local", prompt="Say hello.", timeout=180, extra=CLAUDE_SMALL_PROMPT
        )
    finally:
        await stack.app.stop(grace=1)
    assert not run.is_error and run.run.returncode == 0, run.describe()
    assert run.text.strip(), run.describe()


async def test_claude_codes_whole_prompt_skips_a_small_local_route(
    fake: FakeUpstream, local_model: LocalModel, client_bin: Path, tmp_path: Path
) -> None:
    """Claude Code's whole prompt (about 12-14k tokens) on a route declaring the model's trained
    8k context: skipped by context-window routing, and Claude Code hears why, in its protocol,
    without the local server being asked."""
    faults(fake)
    stack = await start_stack(fake, config(fake, local_model))
    arm = Arm("spillgate", fake, stack.gateway_url, CLIENT_KEY, stack)
    seen: list[Any] = []
    stack.app.gateway.events.subscribe(seen.append)
    try:
        run = await run_claude(arm, tmp_path, model="claude-local-8k", prompt="Say hello.", timeout=60)
    finally:
        await stack.app.stop(grace=1)
    assert run.is_error, run.describe()
    assert "context_window 8192" in run.text, run.describe()
    assert seen and all(getattr(e, "attempts", 0) == 0 for e in seen), "nothing was sent to the local model"
