"""The official openai and anthropic SDKs, unmodified, through the gateway."""

from __future__ import annotations

import anthropic
import openai

from spillgate.fake import DEFAULT_TEXT

from ..harness import CLIENT_KEY, Harness


async def test_openai_sdk_chat_and_responses(gw: Harness) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    chat = await client.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == DEFAULT_TEXT and chat.model == "up-coder"
    stream = await client.chat.completions.create(
        model="coder",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == DEFAULT_TEXT and usage is not None and usage.completion_tokens > 0
    response = await client.responses.create(model="coder", input="hi")
    assert response.output_text == DEFAULT_TEXT
    async with client.responses.stream(model="coder", input="hi") as events:
        final = await events.get_final_response()
    assert final.output_text == DEFAULT_TEXT and final.usage is not None
    await client.close()


async def test_openai_sdk_sees_protocol_errors(gw: Harness) -> None:
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0)
    try:
        await client.chat.completions.create(model="coder", messages=[])
    except openai.AuthenticationError as err:
        assert "invalid API key" in str(err)
    else:
        raise AssertionError("expected a 401")
    good = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    try:
        await good.chat.completions.create(model="nope", messages=[])
    except openai.NotFoundError as err:
        assert err.code == "model_not_found"
    else:
        raise AssertionError("expected a 404")
    await client.close()
    await good.close()


async def test_anthropic_sdk_messages(gw: Harness) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0)
    message = await client.messages.create(
        model="coder", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == DEFAULT_TEXT
    async with client.messages.stream(
        model="coder", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = await stream.get_final_text()
        final = await stream.get_final_message()
    assert text == DEFAULT_TEXT and final.usage.output_tokens > 0
    try:
        await client.messages.create(model="nope", max_tokens=5, messages=[])
    except anthropic.NotFoundError as err:
        assert "not served by this gateway" in str(err)
    else:
        raise AssertionError("expected a 404")
    await client.close()
