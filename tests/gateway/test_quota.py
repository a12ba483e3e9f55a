"""Which clients get the in-stream refusal of a spent budget (Codex streaming on Responses), and its shape."""

from __future__ import annotations

import orjson
import pytest

from spillgate.gateway.quota import codex_refusal, is_codex
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import ErrorKind, GatewayError

ERROR = GatewayError(
    429, ErrorKind.QUOTA, "this API key has used its spend budget", code="insufficient_quota"
)


@pytest.mark.parametrize(
    ("headers", "codex"),
    [
        ({"originator": "codex_exec"}, True),
        ({"originator": "codex_cli_rs", "user-agent": "x"}, True),
        ({"user-agent": "codex_exec/0.169.0 (Linux)"}, True),
        ({"user-agent": "OpenAI/Python 1.50.0"}, False),
        ({"originator": "my-app"}, False),
        ({}, False),
    ],
)
def test_is_codex(headers: dict[str, str], codex: bool) -> None:
    assert is_codex(headers) is codex


@pytest.mark.parametrize(
    ("api", "stream", "headers", "in_stream"),
    [
        (Api.OPENAI_RESPONSES, True, {"originator": "codex_exec"}, True),
        (Api.OPENAI_RESPONSES, False, {"originator": "codex_exec"}, False),  # a plain answer: the 429
        (Api.OPENAI_CHAT, True, {"originator": "codex_exec"}, False),
        (Api.ANTHROPIC_MESSAGES, True, {"originator": "codex_exec"}, False),
        (Api.OPENAI_RESPONSES, True, {"user-agent": "OpenAI/Python"}, False),  # the SDK stops on the 429
    ],
)
def test_only_codex_streams_get_the_in_stream_refusal(
    api: Api, stream: bool, headers: dict[str, str], in_stream: bool
) -> None:
    assert (codex_refusal(api, stream, "m", headers, ERROR) is not None) is in_stream


def test_the_in_stream_refusal_is_created_then_failed_with_insufficient_quota() -> None:
    made = codex_refusal(Api.OPENAI_RESPONSES, True, "gpt-x", {"originator": "codex_exec"}, ERROR)
    assert made is not None
    headers, body = made
    assert ("content-type", "text/event-stream") in headers and ("x-should-retry", "false") in headers
    frames = [f for f in body.decode().split("\n\n") if f]
    names = [f.split("\n")[0] for f in frames]
    assert names == ["event: response.created", "event: response.failed"]
    failed = orjson.loads(frames[1].split("data: ", 1)[1])
    assert failed["response"]["status"] == "failed" and failed["response"]["model"] == "gpt-x"
    assert failed["response"]["error"] == {"code": "insufficient_quota", "message": ERROR.message}
