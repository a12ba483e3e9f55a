"""Scripted coding turns in the fake upstream (``Fault.conversation``), over real HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spillgate.fake import (
    DEFAULT_TEXT,
    Conversation,
    ConversationError,
    FakeUpstream,
    Fault,
    FaultConfigError,
    load_behaviors,
)
from spillgate.fake.conversation import call_id, shell_call, tool_outputs

RESPONSES = "/v1/responses"

# The shell tool as Codex CLI 0.169.0 sends it (abridged: the optional properties it also lists
# are left out), plus a tool that is not a shell.
EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
VIEW_IMAGE = {
    "type": "function",
    "name": "view_image",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
}
CODEX_TOOLS = [VIEW_IMAGE, EXEC_COMMAND, {"type": "web_search", "external_web_access": False}]

USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "check it"}]}
EXEC_OUTPUT = (
    "Chunk ID: 1\nWall time: 0.0000 seconds\nProcess exited with code 0\n"
    "Original token count: 4\nOutput:\nspillgate-e2e\n"
)

FIRST_ANSWER_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.output_item.added",
    *["response.function_call_arguments.delta"] * 5,
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def first_request(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "stream": True, "input": [USER], "tools": CODEX_TOOLS, **extra}


def follow_up(output: object = EXEC_OUTPUT, *, calls: int = 1, **extra: Any) -> dict[str, Any]:
    """A request carrying ``calls`` tool calls and their outputs back, as Codex sends it."""
    items: list[object] = [USER]
    for step in range(calls):
        cid = call_id("echo spillgate-e2e", step)
        items.append({"type": "reasoning", "id": f"rs_{step}", "summary": [], "encrypted_content": "opaque"})
        items.append(
            {
                "type": "function_call",
                "name": "exec_command",
                "arguments": '{"cmd":"echo spillgate-e2e"}',
                "call_id": cid,
            }
        )
        items.append({"type": "function_call_output", "call_id": cid, "output": output})
    return first_request(input=items, **extra)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def sse(
    session: aiohttp.ClientSession, fake: FakeUpstream, body: dict[str, Any]
) -> tuple[list[str], list[dict[str, Any]], bool]:
    """(event names, payloads, whether the body ended cleanly) of a streamed request."""
    names: list[str] = []
    payloads: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    clean = True
    async with session.post(fake.base_url + RESPONSES, json=body) as resp:
        assert resp.status == 200, await resp.text()
        try:
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:  # the body ended before its final chunk
            clean = False
    for frame in b"".join(chunks).decode().split("\n\n"):
        if not frame:
            continue
        event, data = frame.split("\n", 1)
        names.append(event.removeprefix("event: "))
        payloads.append(json.loads(data.removeprefix("data: ")))
    return names, payloads, clean


def completed_output(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = payloads[-1]
    assert last["type"] == "response.completed"
    output: list[dict[str, Any]] = last["response"]["output"]
    return output


# -- the two steps of a Codex turn ----------------------------------------------------------------


async def test_first_request_gets_reasoning_and_a_shell_call(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault().with_conversation())
    names, payloads, clean = await sse(session, fake, first_request())
    assert clean and names == FIRST_ANSWER_EVENTS
    assert [p["sequence_number"] for p in payloads] == list(range(len(names)))
    assert [p["type"] for p in payloads] == names

    reasoning_added, reasoning_done = payloads[2]["item"], payloads[7]["item"]
    assert reasoning_added["type"] == reasoning_done["type"] == "reasoning"
    assert reasoning_added["id"] == reasoning_done["id"] and reasoning_added["summary"] == []
    assert reasoning_done["summary"] == [{"type": "summary_text", "text": Conversation().reasoning}]
    assert reasoning_done["encrypted_content"] and reasoning_added["encrypted_content"]
    assert payloads[4]["delta"] == Conversation().reasoning

    call_added, call_done = payloads[8]["item"], payloads[-2]["item"]
    assert call_added["type"] == "function_call" and call_added["status"] == "in_progress"
    assert call_added["arguments"] == ""
    assert call_done["name"] == "exec_command" and call_done["status"] == "completed"
    assert json.loads(call_done["arguments"]) == {"cmd": "echo spillgate-e2e"}
    assert (
        "".join(p["delta"] for p in payloads if p["type"].endswith("arguments.delta"))
        == (call_done["arguments"])
    )
    assert call_done["call_id"] == call_added["call_id"] == call_id("echo spillgate-e2e", 0)

    completed = payloads[-1]["response"]
    assert completed["id"].startswith("resp_") and completed["id"] == payloads[0]["response"]["id"]
    assert completed["status"] == "completed"
    assert [item["type"] for item in completed["output"]] == ["reasoning", "function_call"]
    usage = completed["usage"]
    assert usage["output_tokens"] == 6 and usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert [a.outcome for a in fake.attempts] == ["ok"]


async def test_follow_up_with_the_tool_output_gets_the_final_answer(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault().with_conversation())
    names, payloads, clean = await sse(session, fake, follow_up())
    assert clean
    assert names[:8] == FIRST_ANSWER_EVENTS[:8], "the reasoning item comes first again"
    assert names[8:] == [
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * (len(names) - 14),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    output = completed_output(payloads)
    assert [item["type"] for item in output] == ["reasoning", "message"]
    text = output[1]["content"][0]["text"]
    assert text == "SPILLGATE-E2E-DONE\ntool output: spillgate-e2e"
    assert "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta") == text


async def test_echo_takes_content_item_outputs_and_can_be_off(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault().with_conversation())
    output = [{"type": "input_text", "text": "line one\n"}, {"type": "input_text", "text": "line two"}]
    _, payloads, _ = await sse(session, fake, follow_up(output))
    assert completed_output(payloads)[-1]["content"][0]["text"].endswith("tool output: line one line two")

    fake.set("m", Fault().with_conversation(Conversation(echo_output=False, reasoning="", answer="done")))
    names, payloads, _ = await sse(session, fake, follow_up())
    assert names[2] == "response.output_item.added" and payloads[2]["item"]["type"] == "message"
    assert [item["type"] for item in completed_output(payloads)] == ["message"]
    assert completed_output(payloads)[0]["content"][0]["text"] == "done"


async def test_several_commands_run_in_order(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault(chunks=1).with_conversation(Conversation(commands=("ls", "cat README.md"))))
    calls = []
    for step in range(3):
        body = follow_up(calls=step) if step else first_request()
        _, payloads, _ = await sse(session, fake, body)
        calls.append(completed_output(payloads)[-1])
    assert [json.loads(c["arguments"])["cmd"] for c in calls[:2]] == ["ls", "cat README.md"]
    assert calls[0]["call_id"] != calls[1]["call_id"]
    assert calls[2]["type"] == "message"


async def test_non_streamed_request(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault().with_conversation())
    async with session.post(fake.base_url + RESPONSES, json=first_request(stream=False)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["reasoning", "function_call"]
    assert json.loads(body["output"][1]["arguments"]) == {"cmd": "echo spillgate-e2e"}
    async with session.post(fake.base_url + RESPONSES, json=follow_up(stream=False)) as resp:
        body = await resp.json()
    assert body["output"][-1]["content"][0]["text"].startswith("SPILLGATE-E2E-DONE")


# -- which tool, with which arguments -------------------------------------------------------------


def tool(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": {"type": "object", "properties": properties}}


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ([EXEC_COMMAND], ("exec_command", {"cmd": "echo hi"})),
        (
            [tool("shell", {"command": {"type": "array", "items": {"type": "string"}}})],
            ("shell", {"command": ["bash", "-lc", "echo hi"]}),
        ),
        (
            [tool("shell_command", {"command": {"type": "string"}})],
            ("shell_command", {"command": "echo hi"}),
        ),
        # exec_command is preferred whatever the order.
        ([tool("shell", {"command": {"type": "array"}}), EXEC_COMMAND], ("exec_command", {"cmd": "echo hi"})),
        ([VIEW_IMAGE], None),
        ([tool("shell", {"script": {"type": "string"}})], None),  # a schema it cannot fill
        ("not a list", None),
        (None, None),
    ],
)
def test_shell_tool_and_arguments(tools: object, expected: tuple[str, dict[str, Any]] | None) -> None:
    call = shell_call(tools, "echo hi", 0)
    if expected is None:
        assert call is None
    else:
        assert call is not None and (call.name, json.loads(call.arguments)) == expected


async def test_no_shell_tool_says_so(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault().with_conversation())
    _, payloads, _ = await sse(session, fake, first_request(tools=[VIEW_IMAGE]))
    text = completed_output(payloads)[-1]["content"][0]["text"]
    assert text.startswith("fake upstream: the request offers no shell tool")


def test_tool_outputs() -> None:
    assert tool_outputs("just a string") == []
    assert tool_outputs([USER, {"type": "custom_tool_call_output", "output": "x"}, "junk"]) == ["x"]
    assert tool_outputs([{"type": "function_call_output", "output": None}]) == [""]


# -- faults on top of the script ------------------------------------------------------------------


async def test_status_faults_apply_first(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    fake.set("m", Fault.capacity(rate=0.5).with_conversation())
    statuses = []
    for _ in range(4):
        async with session.post(fake.base_url + RESPONSES, json=follow_up()) as resp:
            statuses.append(resp.status)
            body = await resp.read()
            if resp.status == 503:
                assert json.loads(body)["error"]["code"] == "server_is_overloaded"
            else:
                assert b"SPILLGATE-E2E-DONE" in body
    assert statuses == [200, 503, 200, 503]
    assert [a.outcome for a in fake.attempts] == ["ok", "status:503", "ok", "status:503"]


async def test_cut_after_events_cuts_the_scripted_stream(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault(cut_after_events=10).with_conversation())
    names, payloads, clean = await sse(session, fake, first_request())
    assert not clean
    assert names == FIRST_ANSWER_EVENTS[:10], "cut after the first argument delta"
    assert payloads[-1]["type"] == "response.function_call_arguments.delta"
    assert [a.outcome for a in fake.attempts] == ["cut"]


async def test_stream_error_ends_the_scripted_stream(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set(
        "m",
        Fault(stream_error_after_events=2, stream_error_code="server_is_overloaded").with_conversation(),
    )
    names, payloads, clean = await sse(session, fake, first_request())
    assert clean and names == ["response.created", "response.in_progress", "response.failed"]
    failed = payloads[-1]["response"]
    assert failed["id"] == payloads[0]["response"]["id"] and failed["status"] == "failed"
    assert failed["error"]["code"] == "server_is_overloaded"
    assert payloads[-1]["sequence_number"] == 2


async def test_first_content_delay_waits_before_the_first_delta(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    fake.set("m", Fault(first_content_delay=0.2).with_conversation())
    started = time.monotonic()
    names, _, clean = await sse(session, fake, first_request())
    assert clean and names == FIRST_ANSWER_EVENTS and time.monotonic() - started >= 0.2


async def test_unscripted_models_keep_the_plain_answer(
    fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    """(The scripted turn in the other two APIs: test_conversation_apis.py.)"""
    fake.set("m", Fault().with_conversation())
    _, payloads, _ = await sse(session, fake, first_request(model="other"))
    output = completed_output(payloads)
    assert [item["type"] for item in output] == ["message"]
    assert output[0]["content"][0]["text"] == DEFAULT_TEXT


# -- configuration --------------------------------------------------------------------------------


def test_conversation_from_dict_and_back() -> None:
    assert Fault.from_dict({"conversation": True}) == Fault(conversation=Conversation())
    assert Fault.from_dict({"conversation": False}) == Fault()
    fault = Fault.from_dict(
        {
            "preset": "capacity",
            "rate": 0.5,
            "conversation": {"commands": "ls", "answer": "ok", "echo_output": False, "reasoning": ""},
        }
    )
    assert fault == Fault.capacity(rate=0.5).with_conversation(
        Conversation(commands=("ls",), answer="ok", echo_output=False, reasoning="")
    )
    assert fault.to_dict()["conversation"] == {
        "commands": ["ls"],
        "answer": "ok",
        "echo_output": False,
        "reasoning": "",
    }
    assert Fault.from_dict(fault.to_dict()) == fault
    assert not Fault().with_conversation().active, "a script alone is a healthy upstream"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"conversation": "yes"}, "fault.conversation: expected true or a mapping"),
        ({"conversation": {"command": ["ls"]}}, "fault.conversation: unknown key 'command'"),
        ({"conversation": {"commands": [""]}}, "fault.conversation.commands"),
        ({"conversation": {"commands": 3}}, "fault.conversation.commands"),
        ({"conversation": {"answer": ""}}, "fault.conversation.answer"),
        ({"conversation": {"echo_output": "no"}}, "fault.conversation.echo_output"),
        ({"conversation": {"reasoning": 3}}, "fault.conversation.reasoning"),
    ],
)
def test_conversation_config_errors(data: Any, fragment: str) -> None:
    with pytest.raises(FaultConfigError, match=re.escape(fragment)):
        Fault.from_dict(data)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConversationError, match="commands"):
        Conversation(commands=("ls", " "))
    with pytest.raises(ConversationError, match="answer"):
        Conversation(answer="")
    assert Conversation(commands="ls").commands == ("ls",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conversation"):
        Fault(conversation={"commands": ["ls"]})  # type: ignore[arg-type]


def test_behaviors_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "models:\n"
        "  up-primary: {preset: capacity, conversation: true}\n"
        "  up-secondary:\n"
        "    conversation:\n"
        "      commands: [ls, 'echo done']\n"
    )
    assert load_behaviors(path) == {
        "up-primary": Fault.capacity().with_conversation(),
        "up-secondary": Fault().with_conversation(Conversation(commands=("ls", "echo done"))),
    }


async def test_control_api(fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/_fake/behaviors/m"
    async with session.put(url, json={"conversation": {"answer": "all good"}}) as resp:
        assert resp.status == 200
        assert (await resp.json())["fault"]["conversation"]["answer"] == "all good"
    _, payloads, _ = await sse(session, fake, follow_up())
    assert completed_output(payloads)[-1]["content"][0]["text"].startswith("all good\n")
    async with session.put(url, json={"conversation": {"answr": "x"}}) as resp:
        assert resp.status == 400 and "unknown key 'answr'" in (await resp.json())["error"]["message"]
