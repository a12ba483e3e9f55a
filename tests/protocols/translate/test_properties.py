"""Properties of the translation between the three wire APIs, over generated inputs (Hypothesis,
bounded and derandomized: the same examples on every run).

* A canonical conversation carried A -> B -> A (each leg an encoded body decoded again) keeps its
  meaning (``conversations.meaning``: the documented normalisations only), and every body on the
  way pairs each tool result with its call.
* An upstream's event stream of any API, hostile junk mixed in and split anywhere, translated for a
  client of another API, is read by that client's real SDK stream helper, and its final object says
  what the upstream said: text, reasoning, tool calls, finish, usage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spillgate.protocols.apis import Api
from spillgate.protocols.translate.canonical import Request
from spillgate.protocols.translate.translator import decode_request, encode_request
from tests.protocols.translate.conversations import (
    CHAT,
    CLIENT_CALL_PREFIX,
    MESSAGES,
    RESPONSES,
    SDK_FINAL,
    SHORT,
    UPSTREAM_MODEL,
    UpPlan,
    UpReasoning,
    UpText,
    UpTool,
    UpUsage,
    client_call_id,
    client_context,
    conversations,
    final_text_and_calls,
    history,
    hostile_streams,
    meaning,
    translate_stream,
    unpaired,
    upstream_stream,
)

PAIRS = [(a, b) for a in (RESPONSES, CHAT, MESSAGES) for b in (RESPONSES, CHAT, MESSAGES) if a is not b]
PAIR_IDS = [f"{SHORT[a]}->{SHORT[b]}" for a, b in PAIRS]

BOUNDED = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def carried(request: Request, api: Api) -> tuple[dict[str, Any], Request]:
    """``request`` encoded as a body of ``api`` (as an upstream is sent it), and that body decoded
    as a client's body of ``api``."""
    body = orjson.loads(encode_request(request, api, UPSTREAM_MODEL).body)
    return body, decode_request(api, body)


# == a conversation there and back ========================================================================
def there_and_back(request: Request, a: Api, b: Api) -> None:
    expected = meaning(request)
    current = request
    for api in (a, b, a):
        body, current = carried(current, api)
        assert unpaired(api, body) == [], f"{SHORT[api]} body"
        assert meaning(current) == expected, f"after the {SHORT[api]} body"


def rich(a: Api, b: Api) -> bool:
    """Only Responses and Messages carry text after an assistant's tool calls and tool-result images."""
    return {a, b} == {RESPONSES, MESSAGES}


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
@BOUNDED
@given(data=st.data())
def test_a_conversation_keeps_its_meaning_there_and_back(a: Api, b: Api, data: st.DataObject) -> None:
    there_and_back(data.draw(conversations(rich(a, b))), a, b)


def flattened(api: Api, body: dict[str, Any]) -> list[Any]:
    """A body's history as the prompt cache sees it: Messages' content blocks one by one (consecutive
    user turns are one message there, so a turn's blocks may join the previous message)."""
    if api is not MESSAGES:
        return history(api, body)
    return [(m["role"], block) for m in history(api, body) for block in m["content"]]


@pytest.mark.parametrize("api", [RESPONSES, CHAT, MESSAGES], ids=SHORT.get)
@BOUNDED
@given(request=conversations(), cut=st.integers(0, 10))
def test_a_longer_conversation_keeps_the_cached_prefix(api: Api, request: Request, cut: int) -> None:
    """Prompt caching: the same request gives the same bytes, and the request one turn shorter (cut
    before one of its user messages) gives the same system, tools and leading history."""
    full = encode_request(request, api, UPSTREAM_MODEL).body
    assert encode_request(request, api, UPSTREAM_MODEL).body == full
    starts = [k for k, m in enumerate(request.messages) if m.role == "user" and k > 0]
    if not starts:
        return
    shorter = replace(request, messages=request.messages[: starts[cut % len(starts)]])
    before = orjson.loads(encode_request(shorter, api, UPSTREAM_MODEL).body)
    after = orjson.loads(full)
    old, new = flattened(api, before), flattened(api, after)
    if api is CHAT and old and old[-1]["role"] == "user" and len(new) >= len(old):
        # Chat joins consecutive user messages (templates that need alternating turns): a user
        # turn right after the shorter conversation's trailing user message joins it, so that
        # one message grows, the rest of the prefix stays byte for byte.
        assert new[: len(old) - 1] == old[:-1]
        tail, grown = old[-1], new[len(old) - 1]
        assert grown["role"] == "user" and str(grown["content"]).startswith(str(tail["content"]))
    else:
        assert new[: len(old)] == old
    key = "input" if api is RESPONSES else "messages"
    assert {k: v for k, v in before.items() if k != key} == {k: v for k, v in after.items() if k != key}


# == an upstream stream, translated, read by the client's SDK ==============================================
def _expected_reasoning(plan: UpPlan) -> str:
    return "".join("".join(b.pieces) for b in plan.blocks if isinstance(b, UpReasoning))


def _sdk_reasoning(client: Api, final: Any) -> str:
    if client is RESPONSES:
        return "".join(s.text for item in final.output if item.type == "reasoning" for s in item.summary)
    if client is CHAT:
        return getattr(final.choices[0].message, "reasoning_content", None) or ""
    return "".join(block.thinking for block in final.content if block.type == "thinking")


def _finish(client: Api, final: Any) -> str:
    if client is RESPONSES:
        return str(final.status)
    if client is CHAT:
        return str(final.choices[0].finish_reason)
    return str(final.stop_reason)


def _expected_finish(client: Api, plan: UpPlan) -> str:
    tools = any(isinstance(b, UpTool) for b in plan.blocks)
    if client is RESPONSES:
        return "incomplete" if plan.finish == "length" else "completed"
    if client is CHAT:
        return "length" if plan.finish == "length" else "tool_calls" if tools else "stop"
    return "max_tokens" if plan.finish == "length" else "tool_use" if tools else "end_turn"


def _usage(client: Api, final: Any) -> tuple[int, int, int, int]:
    """(input, cached, output, reasoning) as the client reads them."""
    usage = final.usage
    if client is RESPONSES:
        return (
            usage.input_tokens,
            usage.input_tokens_details.cached_tokens,
            usage.output_tokens,
            usage.output_tokens_details.reasoning_tokens,
        )
    if client is CHAT:
        return (
            usage.prompt_tokens,
            usage.prompt_tokens_details.cached_tokens,
            usage.completion_tokens,
            usage.completion_tokens_details.reasoning_tokens,
        )
    return (usage.input_tokens, usage.cache_read_input_tokens or 0, usage.output_tokens, 0)


ESTIMATE = 321
"""The input estimate a Messages client hears before the upstream counted its input."""


def _expected_usage(client: Api, upstream: Api, plan: UpPlan) -> tuple[int, int, int, int]:
    usage = plan.usage
    if usage is None:
        return (ESTIMATE if client is MESSAGES else 0, 0, 0, 0)
    reasoning = usage.reasoning if client is not MESSAGES and upstream is not MESSAGES else 0
    if client is MESSAGES:  # Anthropic's input_tokens leaves the cache reads out
        return (usage.input - usage.cached, usage.cached, usage.output, 0)
    return (usage.input, usage.cached, usage.output, reasoning)


def read_back(upstream: Api, client: Api, plan: UpPlan, body: bytes, piece: int) -> None:
    ctx = client_context(include_usage=True, estimated_input_tokens=ESTIMATE)
    final = SDK_FINAL[client](translate_stream(upstream, client, body, ctx=ctx, piece=piece))
    text, calls = final_text_and_calls(client, final)
    assert text == "".join("".join(b.pieces) for b in plan.blocks if isinstance(b, UpText))
    prefix = CLIENT_CALL_PREFIX[client]
    expected_calls = [
        (client_call_id(prefix, b.call_id), b.name, orjson.loads("".join(b.pieces) or "{}"))
        for b in plan.blocks
        if isinstance(b, UpTool)
    ]
    assert [(i, n, orjson.loads(a)) for i, n, a in calls] == expected_calls
    assert _sdk_reasoning(client, final) == _expected_reasoning(plan)
    assert _finish(client, final) == _expected_finish(client, plan)
    assert _usage(client, final) == _expected_usage(client, upstream, plan)


@pytest.mark.parametrize(("upstream", "client"), PAIRS, ids=[f"{SHORT[c]}<-{SHORT[u]}" for u, c in PAIRS])
@BOUNDED
@given(stream=st.data(), piece=st.sampled_from((0, 1, 7, 64)))
def test_an_upstream_stream_reads_back_in_the_client_sdk(
    upstream: Api, client: Api, stream: st.DataObject, piece: int
) -> None:
    plan, body = stream.draw(hostile_streams(upstream))
    read_back(upstream, client, plan, body, piece)


_REGRESSIONS = [
    (
        "anthropic_call_without_arguments",
        MESSAGES,
        UpPlan((UpTool("toolu_n", "list_files", ("",)),), "tool_calls", UpUsage(10, 5)),
    ),
    (
        "whole_empty_input_in_block_start",
        MESSAGES,
        UpPlan((UpTool("toolu_n", "list_files", ("{}",)),), "tool_calls", None, quirk=1),
    ),
    (
        "chat_call_without_arguments_or_done",
        CHAT,
        UpPlan((UpTool("call_n", "list_files", ("",)),), "stop", None, quirk=2),
    ),
]
"""Streams that once broke a client (found by the property above: a call without arguments reached
an OpenAI client with ``arguments: ""``)."""
REGRESSIONS = [
    pytest.param(upstream, client, plan, id=f"{SHORT[client]}<-{SHORT[upstream]}:{name}")
    for name, upstream, plan in _REGRESSIONS
    for client in (RESPONSES, CHAT, MESSAGES)
    if client is not upstream
]


@pytest.mark.parametrize(("upstream", "client", "plan"), REGRESSIONS)
def test_streams_that_once_broke_a_client(upstream: Api, client: Api, plan: UpPlan) -> None:
    read_back(upstream, client, plan, upstream_stream(upstream, plan), 0)
