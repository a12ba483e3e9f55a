"""The real local model, measured: llama-cpp-python's OpenAI-compatible server (0.3.36) serving
SmolLM2-135M-Instruct (see ``tests/localmodel.py``).

What a route to such a server can send and what comes back: Chat Completions only (``/v1/responses``
and ``/v1/messages`` are 404s); unknown request fields are ignored, while a few typed shapes (a
``developer`` message, content given as parts, ``content: null``, ``null`` sampling values, a
``json_schema`` response format) are refused with a **500**; ``max_completion_tokens`` and
``stream_options`` are ignored (a stream carries no usage); system messages anywhere are rendered
by this model's chat template, not refused; a streamed tool call repeats its id and name in every
delta. Every request asks for a few tokens only: prompt processing is slow on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.localmodel import (
    LocalModel,
    LocalModelFailed,
    LocalModelMissing,
    local_model_server,
)

SAY_HELLO: list[Any] = [{"role": "user", "content": "Say hello."}]
GET_TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time",
        "parameters": {"type": "object", "properties": {}},
    },
}
FORCED = {"type": "function", "function": {"name": "get_time"}}
CALLED = [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]


@pytest.fixture(scope="module")
def client(local_model: LocalModel) -> openai.OpenAI:
    return openai.OpenAI(api_key="local", base_url=local_model.base_url, max_retries=0, timeout=60)


def post(local_model: LocalModel, path: str, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(local_model.root + path, json=body, timeout=60)


def chat(local_model: LocalModel, **fields: Any) -> httpx2.Response:
    body = {"model": local_model.model, "messages": SAY_HELLO, "max_tokens": 1, "temperature": 0, **fields}
    return post(local_model, "/v1/chat/completions", body)


def sse_chunks(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON chunks of a Chat stream, up to its ``[DONE]``."""
    chunks: list[dict[str, Any]] = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line.removeprefix("data: ")))
    assert response.text.rstrip().endswith("data: [DONE]")
    return chunks


# -- what it serves ------------------------------------------------------------------------------------


def test_plain_chat_answers_text_with_usage(client: openai.OpenAI, local_model: LocalModel) -> None:
    completion = client.chat.completions.create(
        model=local_model.model, messages=SAY_HELLO, max_tokens=16, temperature=0
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == local_model.model
    choice = completion.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_any_model_name_is_served_and_echoed(local_model: LocalModel) -> None:
    """One model is loaded; the request's model name is not checked, only echoed back."""
    reply = chat(local_model, model="gpt-5.3-codex")
    assert reply.status_code == 200
    assert reply.json()["model"] == "gpt-5.3-codex"


def test_streamed_chat_through_the_sdk_helper(client: openai.OpenAI, local_model: LocalModel) -> None:
    # A stop sequence ends it with finish_reason "stop": the helper refuses a "length" ending.
    with client.chat.completions.stream(
        model=local_model.model, messages=SAY_HELLO, max_tokens=16, temperature=0, stop=[","]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in kinds and kinds[-1] == "content.done"
    choice = final.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert "," not in choice.message.content
    assert final.usage is None  # a stream of this server carries no usage (see below)


def test_a_stream_carries_no_usage_even_when_asked(local_model: LocalModel) -> None:
    """``stream_options.include_usage`` is accepted and ignored: no usage chunk before ``[DONE]``."""
    reply = chat(local_model, max_tokens=3, stream=True, stream_options={"include_usage": True})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(reply)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages"])
def test_only_chat_completions_is_served(local_model: LocalModel, path: str) -> None:
    reply = post(local_model, path, {"model": local_model.model, "input": "hi", "max_output_tokens": 16})
    assert reply.status_code == 404
    assert reply.json() == {"detail": "Not Found"}


def test_the_sdk_sees_responses_as_not_found(client: openai.OpenAI, local_model: LocalModel) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=local_model.model, input="hi", max_output_tokens=16)


# -- system messages: rendered where they stand ------------------------------------------------------

SYSTEM_CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    # (messages, the same with the system message in question as a user message)
    "two leading system messages": (
        [
            {"role": "system", "content": "You are brief."},
            {"role": "system", "content": "You are kind."},
            {"role": "user", "content": "Say hello."},
        ],
        [
            {"role": "system", "content": "You are brief."},
            {"role": "user", "content": "You are kind."},
            {"role": "user", "content": "Say hello."},
        ],
    ),
    "a system message after the user's": (
        [{"role": "user", "content": "Say hello."}, {"role": "system", "content": "Answer in French."}],
        [{"role": "user", "content": "Say hello."}, {"role": "user", "content": "Answer in French."}],
    ),
}


@pytest.mark.parametrize(("messages", "as_user"), SYSTEM_CASES.values(), ids=SYSTEM_CASES.keys())
def test_system_messages_anywhere_are_rendered_not_refused(
    local_model: LocalModel, messages: list[dict[str, str]], as_user: list[dict[str, str]]
) -> None:
    """SmolLM2's template renders every message as its own ``<|im_start|>ROLE`` block, whatever the
    role and wherever it stands (no ``raise_exception``): the system message costs exactly the
    tokens the same text costs as a user message, so it is in the prompt, in its place."""
    reply, same_as_user = chat(local_model, messages=messages), chat(local_model, messages=as_user)
    assert reply.status_code == 200 and same_as_user.status_code == 200
    assert reply.json()["usage"]["prompt_tokens"] == same_as_user.json()["usage"]["prompt_tokens"]


def test_no_leading_system_message_gets_the_templates_own(local_model: LocalModel) -> None:
    """Without a leading system message the template adds its default one ("You are a helpful AI
    assistant named SmolLM, trained by Hugging Face"): a short system prompt costs fewer tokens
    than none at all."""
    bare = chat(local_model, messages=SAY_HELLO).json()["usage"]["prompt_tokens"]
    short = chat(local_model, messages=[{"role": "system", "content": "Hi."}, *SAY_HELLO])
    assert short.json()["usage"]["prompt_tokens"] < bare


# -- request fields: ignored, or refused with a 500 -------------------------------------------------

ACCEPTED: dict[str, dict[str, Any]] = {
    "prompt_cache_key": {"prompt_cache_key": "session-1"},
    "reasoning_effort": {"reasoning_effort": "low"},
    "reasoning": {"reasoning": {"effort": "low"}},
    "stream_options without stream": {"stream_options": {"include_usage": True}},
    "parallel_tool_calls": {"parallel_tool_calls": False},
    "tools": {"tools": [GET_TIME]},
    "tool_choice auto": {"tools": [GET_TIME], "tool_choice": "auto"},
    "tool_choice none": {"tools": [GET_TIME], "tool_choice": "none"},
    "tool_choice required": {"tools": [GET_TIME], "tool_choice": "required"},
    "tool_choice named": {
        "tools": [GET_TIME],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    },
    "a strict tool": {"tools": [{"type": "function", "function": {**GET_TIME["function"], "strict": True}}]},
    "max_completion_tokens": {"max_completion_tokens": 1},
    "store": {"store": False},
    "metadata": {"metadata": {"session": "s1"}},
    "user": {"user": "u1"},
    "safety_identifier": {"safety_identifier": "u1"},
    "service_tier": {"service_tier": "auto"},
    "seed": {"seed": 7},
    "stop": {"stop": ["\n"]},
    "n": {"n": 1},
    "logprobs": {"logprobs": True, "top_logprobs": 2},
    "response_format json_object": {"response_format": {"type": "json_object"}},
    "response_format text": {"response_format": {"type": "text"}},
    "verbosity": {"verbosity": "low"},
    "modalities": {"modalities": ["text"]},
    "prediction": {"prediction": {"type": "content", "content": "Hello"}},
    "max_tokens null": {"max_tokens": None, "stop": [" "]},  # no limit: the stop ends it
    "a message name": {"messages": [{"role": "user", "content": "Say hello.", "name": "bob"}]},
    "an assistant prefix (ignored: no prefill)": {
        "messages": [*SAY_HELLO, {"role": "assistant", "content": "Hel", "prefix": True}]
    },
    "reasoning_content on an assistant message": {
        "messages": [
            *SAY_HELLO,
            {"role": "assistant", "content": "Hi.", "reasoning_content": "hm"},
            *SAY_HELLO,
        ]
    },
    "tool_calls with content '', then the tool's result": {
        "messages": [
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": "", "tool_calls": CALLED},
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        ]
    },
}

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    # fields, a fragment of the 500's error message
    "response_format json_schema": (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True},
            }
        },
        "Input should be 'text' or 'json_object'",
    ),
    "temperature null": ({"temperature": None}, "'loc': ('body', 'temperature')"),
    "top_p null": ({"top_p": None}, "'loc': ('body', 'top_p')"),
    "a developer message": (
        {"messages": [{"role": "developer", "content": "Be brief."}, *SAY_HELLO]},
        "'input': 'developer'",
    ),
    "user content as parts": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]},
        'can only concatenate str (not "list") to str',
    ),
    "an image part": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is it?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ]
        },
        'can only concatenate str (not "list") to str',
    ),
    "system content as parts": (
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *SAY_HELLO]},
        "ChatCompletionRequestSystemMessage', 'content'), 'msg': 'Input should be a valid string'",
    ),
    "assistant content as parts": (
        {
            "messages": [
                *SAY_HELLO,
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                *SAY_HELLO,
            ]
        },
        "ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid string'",
    ),
    "tool_calls with content null": (
        {
            "messages": [
                {"role": "user", "content": "What time is it?"},
                {"role": "assistant", "content": None, "tool_calls": CALLED},
                {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
            ]
        },
        "ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid string'",
    ),
    "tool_calls without content": (
        {
            "messages": [
                {"role": "user", "content": "What time is it?"},
                {"role": "assistant", "tool_calls": CALLED},
                {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
            ]
        },
        "'dict object' has no attribute 'content'",
    ),
    "a tool result as parts": (
        {
            "messages": [
                {"role": "user", "content": "What time is it?"},
                {"role": "assistant", "content": "", "tool_calls": CALLED},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "12:00"}]},
            ]
        },
        "ChatCompletionRequestToolMessage', 'content'), 'msg': 'Input should be a valid string'",
    ),
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(local_model: LocalModel, fields: dict[str, Any]) -> None:
    reply = chat(local_model, **fields)
    assert reply.status_code == 200, reply.text
    assert reply.json()["object"] == "chat.completion"


@pytest.mark.parametrize(("fields", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_with_a_500(local_model: LocalModel, fields: dict[str, Any], message: str) -> None:
    """A shape its request types or the chat template cannot take is a 500 (not a 400 or 422):
    to a gateway it reads as a server error worth retrying, so the encoder must never send it."""
    reply = chat(local_model, **fields)
    assert reply.status_code == 500, reply.text
    error = reply.json()["error"]
    assert error["type"] == "internal_server_error"
    assert message in error["message"]


def test_max_completion_tokens_is_ignored(local_model: LocalModel) -> None:
    """Only ``max_tokens`` limits the answer: ``max_completion_tokens`` alone leaves it unlimited
    (here the stop sequence ends it)."""
    body = {"model": local_model.model, "messages": SAY_HELLO, "temperature": 0, "stop": ["!"]}
    reply = post(local_model, "/v1/chat/completions", {**body, "max_completion_tokens": 2})
    assert reply.status_code == 200
    assert reply.json()["usage"]["completion_tokens"] > 2
    assert reply.json()["choices"][0]["finish_reason"] == "stop"


def test_a_streamed_tool_call_repeats_its_id_and_name(local_model: LocalModel) -> None:
    """A named ``tool_choice`` forces a call (``auto`` and ``required`` answer text with this
    template). Streamed, every delta of the call repeats its ``id`` and ``function.name``: only the
    arguments are to be concatenated (the openai SDK's accumulator concatenates all three)."""
    forced = {"type": "function", "function": {"name": "get_time"}}
    messages = [{"role": "user", "content": "What time is it?"}]
    reply = chat(
        local_model, messages=messages, max_tokens=8, tools=[GET_TIME], tool_choice=forced, stream=True
    )
    assert reply.status_code == 200
    chunks = sse_chunks(reply)
    deltas = [call for c in chunks for call in (c["choices"][0]["delta"].get("tool_calls") or [])]
    assert len(deltas) > 1
    assert {(d["index"], d["id"], d["function"]["name"]) for d in deltas} == {
        (0, deltas[0]["id"], "get_time")
    }
    assert deltas[0]["id"].startswith("call_")
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_plain_tool_call(local_model: LocalModel) -> None:
    messages = [{"role": "user", "content": "What time is it?"}]
    reply = chat(local_model, messages=messages, max_tokens=8, tools=[GET_TIME], tool_choice=FORCED)
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {"name": "get_time", "arguments": "{}"}


# -- the harness -------------------------------------------------------------------------------------


def start(model_file: Path | None = None, start_timeout: float = 120.0) -> None:
    """Start and stop a server (or fail to)."""
    kwargs = {} if model_file is None else {"model_file": model_file}
    with local_model_server(**kwargs, start_timeout=start_timeout):
        pass


def test_a_missing_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LocalModelMissing, match=r"is missing: run \.ci/run"):
        start(tmp_path / "m.gguf")


def test_a_truncated_model_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(LocalModelMissing, match=r"has 4 bytes, not 98362432: delete it and run \.ci/run"):
        start(tmp_path / "m.gguf")


def test_a_server_that_does_not_answer_in_time_is_stopped() -> None:
    with pytest.raises(LocalModelFailed, match=r"did not answer GET .*/v1/models within 0\.01 s:\n"):
        start(start_timeout=0.01)
