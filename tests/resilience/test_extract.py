"""Error fields out of real upstream bodies and stream events, garbage included: a table."""

from __future__ import annotations

import time

import pytest

from spillgate.resilience.extract import ErrorFields, error_fields, event_error_fields
from spillgate.resilience.types import Phase, Signal

NOW = 1_700_000_000.0

F = ErrorFields

BODIES: list[tuple[str, bytes, ErrorFields]] = [
    # --- OpenAI ---------------------------------------------------------------------------------
    (
        "openai_rate_limit",
        b'{"error": {"message": "Rate limit reached for gpt-4o in organization org-x on tokens per min '
        b"(TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 1.5s. Visit "
        b'https://platform.openai.com/account/rate-limits to learn more.", "type": "tokens", '
        b'"param": null, "code": "rate_limit_exceeded"}}',
        F(
            "tokens",
            "rate_limit_exceeded",
            "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, "
            "Used 29000, Requested 2000. Please try again in 1.5s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            1.5,
        ),
    ),
    (
        "openai_quota",
        b'{"error": {"message": "You exceeded your current quota, please check your plan and billing '
        b'details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}',
        F(
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
    ),
    (
        "openai_context",
        b'{"error": {"message": "This model\'s maximum context length is 128000 tokens.", '
        b'"type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}',
        F(
            "invalid_request_error",
            "context_length_exceeded",
            "This model's maximum context length is 128000 tokens.",
        ),
    ),
    (
        "openai_null_code",
        b'{"error": {"message": "The server had an error", "type": "server_error", "param": null, '
        b'"code": null}}',
        F("server_error", None, "The server had an error"),
    ),
    (
        "openai_numeric_code",
        b'{"error": {"message": "Bad gateway.", "type": "cf_bad_gateway", "param": null, "code": 502}}',
        F("cf_bad_gateway", "502", "Bad gateway."),
    ),
    (
        "codex_capacity_503",
        b'{"error": {"message": "Selected model is at capacity. Please try a different model.", '
        b'"type": "server_error", "code": "server_is_overloaded"}}',
        F(
            "server_error",
            "server_is_overloaded",
            "Selected model is at capacity. Please try a different model.",
        ),
    ),
    (
        "chat_error_chunk",
        b'{"error": {"message": "upstream died", "type": "server_error", "code": "internal_error"}}',
        F("server_error", "internal_error", "upstream died"),
    ),
    # --- Anthropic --------------------------------------------------------------------------------
    (
        "anthropic_overloaded",
        b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
        F("overloaded_error", None, "Overloaded"),
    ),
    (
        "anthropic_rate_limit",
        b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has '
        b'exceeded your per-minute rate limit. Please retry after 30 seconds."},"request_id":"req_1"}',
        F(
            "rate_limit_error",
            None,
            "Number of request tokens has exceeded your per-minute rate limit. "
            "Please retry after 30 seconds.",
            30.0,
        ),
    ),
    # --- Responses stream failures -----------------------------------------------------------------
    (
        "responses_failed",
        b'{"type": "response.failed", "sequence_number": 7, "response": {"id": "resp_1", "status": '
        b'"failed", "error": {"code": "server_is_overloaded", "message": "Selected model is at capacity."}}}',
        F(None, "server_is_overloaded", "Selected model is at capacity."),
    ),
    (
        "responses_failed_rate_limit",
        b'{"type": "response.failed", "response": {"status": "failed", "error": {"code": '
        b'"rate_limit_exceeded", "message": "Rate limit reached. Please try again in 20ms."}}}',
        F(None, "rate_limit_exceeded", "Rate limit reached. Please try again in 20ms.", 0.02),
    ),
    (
        "responses_failed_without_error",
        b'{"type": "response.failed", "response": {"status": "failed", "error": null}}',
        F(),
    ),
    (
        "responses_error_event",
        b'{"type": "error", "code": "ERR_SOMETHING", "message": "Something went wrong", "param": null, '
        b'"sequence_number": 1}',
        F(None, "ERR_SOMETHING", "Something went wrong"),
    ),
    (
        "responses_error_event_nested",
        b'{"type": "error", "error": {"type": "invalid_request_error", "code": "context_length_exceeded", '
        b'"message": "Your input exceeds the context window of this model."}}',
        F(
            "invalid_request_error",
            "context_length_exceeded",
            "Your input exceeds the context window of this model.",
        ),
    ),
    # --- Codex usage limits (ChatGPT backend) --------------------------------------------------------
    (
        "codex_usage_limit_resets_in",
        b'{"error": {"type": "usage_limit_reached", "message": "You have hit your usage limit.", '
        b'"plan_type": "plus", "resets_in_seconds": 3600}}',
        F("usage_limit_reached", None, "You have hit your usage limit.", 3600.0),
    ),
    (
        "codex_usage_limit_resets_at",
        b'{"error": {"type": "usage_limit_reached", "message": "You have hit your usage limit.", '
        b'"resets_at": 1700000900}}',
        F("usage_limit_reached", None, "You have hit your usage limit.", 900.0),
    ),
    (
        "codex_usage_limit_resets_at_ms",
        b'{"error": {"type": "usage_limit_reached", "message": "limit", "resets_at": 1700000060000}}',
        F("usage_limit_reached", None, "limit", 60.0),
    ),
    (
        "codex_usage_limit_reset_in_past",
        b'{"error": {"type": "usage_limit_reached", "message": "limit", "resets_at": 1600000000}}',
        F("usage_limit_reached", None, "limit", 0.0),
    ),
    (
        "codex_usage_not_included",
        b'{"error": {"type": "usage_not_included", "message": "Upgrade to Plus to use Codex."}}',
        F("usage_not_included", None, "Upgrade to Plus to use Codex."),
    ),
    # --- FastAPI / vLLM / misc ----------------------------------------------------------------------
    ("fastapi_detail", b'{"detail": "Not Found"}', F(None, None, "Not Found")),
    (
        "fastapi_validation",
        b'{"detail": [{"loc": ["body", "model"], "msg": "field required", "type": "value_error.missing"}, '
        b'{"loc": ["body", "n"], "msg": "must be positive"}]}',
        F(None, None, "field required; must be positive"),
    ),
    (
        "vllm_error_response",
        b'{"object": "error", "message": "This model\'s maximum context length is 4096 tokens.", '
        b'"type": "BadRequestError", "param": null, "code": 400}',
        F("BadRequestError", "400", "This model's maximum context length is 4096 tokens."),
    ),
    (
        "message_and_code",
        b'{"message": "no capacity", "code": "NO_CAPACITY"}',
        F(None, "NO_CAPACITY", "no capacity"),
    ),
    (
        "plain_string_error",
        b'{"error": "model overloaded, try again in 2 minutes"}',
        F(None, None, "model overloaded, try again in 2 minutes", 120.0),
    ),
    (
        "gemini_list",
        b'[{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]',
        F("UNAVAILABLE", "503", "The model is overloaded."),
    ),
    (
        "message_not_a_string",
        b'{"error": {"message": {"nested": true}, "type": 7, "code": true}}',
        F(None, None, '{"nested":true}'),
    ),
    (
        "sse_frames_as_body",
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
        F("overloaded_error", None, "Overloaded"),
    ),
    # --- garbage ------------------------------------------------------------------------------------------
    ("empty", b"", F()),
    ("whitespace", b" \r\n\t ", F()),
    (
        "plain_text",
        b"upstream connect error or disconnect/reset before headers",
        F(None, None, "upstream connect error or disconnect/reset before headers"),
    ),
    (
        "nginx_html",
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
        b"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        F(None, None, "502 Bad Gateway 502 Bad Gateway nginx"),
    ),
    (
        "html_with_style",
        b"<!DOCTYPE html><html><head><style>body { color: red }</style><script>var x = 1;</script></head>"
        b"<body>Service   Unavailable</body></html>",
        F(None, None, "Service Unavailable"),
    ),
    ("long_text_truncated", b"x" * 1000, F(None, None, "x" * 300)),
    ("broken_json", b'{"error": {"message": "cut', F(None, None, '{"error": {"message": "cut')),
    (
        "json_without_error",
        b'{"id": "chatcmpl-1", "choices": []}',
        F(None, None, '{"id": "chatcmpl-1", "choices": []}'),
    ),
    ("json_scalar", b"null", F(None, None, "null")),
    ("json_list_of_numbers", b"[1, 2]", F(None, None, "[1, 2]")),
    ("invalid_utf8", b"\xff\xfe bad \xc3", F(None, None, "\ufffd\ufffd bad \ufffd")),
    ("text_with_hint", b"Too busy. Retry after 5s", F(None, None, "Too busy. Retry after 5s", 5.0)),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in BODIES], ids=[n for n, _, _ in BODIES])
def test_error_fields(body: bytes, expected: ErrorFields) -> None:
    assert error_fields(body, now=NOW) == expected


HINTS: list[tuple[str, float | None]] = [
    ("Please try again in 1.5s.", 1.5),
    ("Please try again in 20ms.", 0.02),
    ("Please try again in 6m0s.", 360.0),
    ("Please try again in 1h2m3.5s", 3723.5),
    ("Please try again in 7m12.345s.", 432.345),
    ("Please retry after 30 seconds", 30.0),
    ("please RETRY AFTER 1 minute", 60.0),
    ("try again in 500 milliseconds", 0.5),
    ("try again in 2 hours", 7200.0),
    ("Retry in 10 secs", 10.0),
    ("try again later", None),
    ("try again in a moment", None),
    ("retry after 30", None),
    ("the 5s limit", None),
    ("", None),
]


@pytest.mark.parametrize(("message", "seconds"), HINTS, ids=[m or "empty" for m, _ in HINTS])
def test_retry_hint_from_message(message: str, seconds: float | None) -> None:
    hint = error_fields(b'{"error": {"message": "%s"}}' % message.encode()).retry_hint
    assert hint == pytest.approx(seconds) if seconds is not None else hint is None


def test_resets_at_uses_the_clock_by_default() -> None:
    body = b'{"error": {"type": "usage_limit_reached", "resets_at": %d}}' % int(time.time() + 100)
    hint = error_fields(body).retry_hint
    assert hint is not None and 95 < hint <= 100


def test_message_hint_wins_over_reset_fields() -> None:
    body = b'{"error": {"message": "try again in 2s", "resets_in_seconds": 60}}'
    assert error_fields(body).retry_hint == 2.0


def test_long_json_message_is_capped() -> None:
    fields = error_fields(b'{"error": {"message": "%s"}}' % (b"y" * 5000))
    assert fields.message == "y" * 2000


EVENTS: list[tuple[str, str | None, bytes, ErrorFields | None]] = [
    (
        "responses_failed",
        "response.failed",
        b'{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error",'
        b'"message":"boom"}}}',
        F(None, "server_error", "boom"),
    ),
    (
        "responses_failed_unnamed",
        None,
        b'{"type":"response.failed","response":{"status":"failed","error":{"code":"slow_down",'
        b'"message":"slow"}}}',
        F(None, "slow_down", "slow"),
    ),
    (
        "responses_error_event",
        "error",
        b'{"type":"error","code":"rate_limit_exceeded","message":"Please try again in 1.5s."}',
        F(None, "rate_limit_exceeded", "Please try again in 1.5s.", 1.5),
    ),
    (
        "anthropic_error_event",
        "error",
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        F("overloaded_error", None, "Overloaded"),
    ),
    ("error_event_with_text_data", "error", b"upstream gone", F(None, None, "upstream gone")),
    (
        "chat_error_chunk",
        None,
        b' {"error":{"message":"The server had an error","type":"server_error","code":null}}',
        F("server_error", None, "The server had an error"),
    ),
    ("chat_error_chunk_string", None, b'{"error":"boom"}', F(None, None, "boom")),
    ("chat_delta", None, b'{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}', None),
    (
        "chat_delta_mentioning_error",
        None,
        b'{"choices":[{"delta":{"content":"the \\"error\\" key"}}]}',
        None,
    ),
    ("chat_done", None, b"[DONE]", None),
    (
        "responses_completed_with_null_error",
        "response.completed",
        b'{"type":"response.completed","response":{"id":"r1","status":"completed","error":null}}',
        None,
    ),
    (
        "responses_created",
        "response.created",
        b'{"type":"response.created","response":{"id":"r1","status":"in_progress","error":null}}',
        None,
    ),
    ("chat_null_error", None, b'{"choices":[],"error":null}', None),
    (
        "anthropic_delta",
        "content_block_delta",
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"error"}}',
        None,
    ),
    ("anthropic_ping", "ping", b'{"type": "ping"}', None),
    ("garbage", None, b'{"error": nope', None),
    ("empty", None, b"", None),
]


@pytest.mark.parametrize(
    ("event_name", "data", "expected"),
    [(n, d, e) for _, n, d, e in EVENTS],
    ids=[i for i, _, _, _ in EVENTS],
)
def test_event_error_fields(event_name: str | None, data: bytes, expected: ErrorFields | None) -> None:
    assert event_error_fields(event_name, data, now=NOW) == expected


def test_fields_make_a_signal() -> None:
    fields = F("overloaded_error", None, "Overloaded")
    assert fields.signal(Phase.AFTER_CONTENT, 200, in_stream=True, headers={"x": "1"}) == Signal(
        phase=Phase.AFTER_CONTENT,
        status=200,
        error_type="overloaded_error",
        message="Overloaded",
        in_stream=True,
        headers={"x": "1"},
    )
    assert fields.signal(Phase.BEFORE_CONTENT).headers == {}
