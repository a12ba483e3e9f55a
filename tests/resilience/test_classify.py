"""The classifier as a table: signals (many from real upstream bodies) to class, scope and rule."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import yaml

from spillgate.resilience.classify import (
    BUILTIN_NAMES,
    BUILTIN_RULES,
    DEFAULT_SCOPE,
    Classifier,
    Rule,
    parse_rules,
)
from spillgate.resilience.extract import error_fields, event_error_fields
from spillgate.resilience.types import ErrorClass, Phase, Scope, Signal, Transport, Verdict

C = ErrorClass
S = Scope
P = Phase
T = Transport


def http(status: int, body: bytes, phase: Phase = P.BEFORE_CONTENT) -> Signal:
    """An HTTP error response, as the dispatcher would build its signal."""
    return error_fields(body).signal(phase, status)


def stream(event_name: str | None, data: bytes, phase: Phase = P.AFTER_CONTENT) -> Signal:
    """An in-stream failure event inside a 200 stream."""
    fields = event_error_fields(event_name, data)
    assert fields is not None, data
    return fields.signal(phase, 200, in_stream=True)


def transport(kind: Transport, phase: Phase = P.BEFORE_HEADERS, message: str = "") -> Signal:
    return Signal(phase=phase, transport=kind, message=message)


def openai(message: str, type_: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic(type_: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def failed(code: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": code, "message": message}},
        }
    )


CAPACITY_TEXT = "Selected model is at capacity. Please try a different model."
NGINX_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
FREE_TIER_429 = openai(
    "Rate limit reached for gpt-4o-mini in organization org-x on requests per min (RPM): Limit 3, Used 3, "
    "Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/billing to add a "
    "payment method.",
    "requests",
    "rate_limit_exceeded",
)

# (id, signal, class, scope, rule)
CASES: list[tuple[str, Signal, ErrorClass, Scope, str]] = [
    # --- below HTTP ------------------------------------------------------------------------------------
    ("connect_refused", transport(T.CONNECT), C.CONNECT_FAILED, S.PROVIDER, "builtin.connect_failed"),
    ("connect_timeout", transport(T.CONNECT_TIMEOUT), C.CONNECT_FAILED, S.PROVIDER, "builtin.connect_failed"),
    ("reset_before_headers", transport(T.RESET), C.RESET, S.ACCOUNT_MODEL, "builtin.reset"),
    (
        "reset_before_content",
        transport(T.RESET, P.BEFORE_CONTENT),
        C.STREAM_CUT,
        S.ACCOUNT_MODEL,
        "builtin.stream_cut",
    ),
    (
        "reset_after_content",
        transport(T.RESET, P.AFTER_CONTENT),
        C.STREAM_CUT,
        S.ACCOUNT_MODEL,
        "builtin.stream_cut",
    ),
    ("first_byte_timeout", transport(T.FIRST_BYTE_TIMEOUT), C.TIMEOUT, S.ACCOUNT_MODEL, "builtin.timeout"),
    # Closed after seconds of silence with no byte: silence, not a reset (never retried on the route).
    ("silent_close", transport(T.SILENT_CLOSE), C.TIMEOUT, S.ACCOUNT_MODEL, "builtin.timeout"),
    # The gateway's own pool was full: go elsewhere; nothing about the upstream's health.
    ("pool_full", transport(T.POOL_FULL), C.CAPACITY, S.ACCOUNT_MODEL, "builtin.pool_full"),
    (
        "first_content_timeout",
        transport(T.FIRST_CONTENT_TIMEOUT, P.BEFORE_CONTENT),
        C.TIMEOUT,
        S.ACCOUNT_MODEL,
        "builtin.timeout",
    ),
    (
        "total_timeout",
        transport(T.TOTAL_TIMEOUT, P.AFTER_CONTENT),
        C.TIMEOUT,
        S.ACCOUNT_MODEL,
        "builtin.timeout",
    ),
    (
        "idle_timeout",
        transport(T.IDLE_TIMEOUT, P.AFTER_CONTENT),
        C.STREAM_STALL,
        S.ACCOUNT_MODEL,
        "builtin.stream_stall",
    ),
    (
        "malformed_event",
        transport(T.MALFORMED, P.AFTER_CONTENT),
        C.STREAM_MALFORMED,
        S.ACCOUNT_MODEL,
        "builtin.stream_malformed",
    ),
    (
        "trap_transport_beats_message",
        transport(T.RESET, message="server overloaded, context length"),
        C.RESET,
        S.ACCOUNT_MODEL,
        "builtin.reset",
    ),
    # --- context too long -------------------------------------------------------------------------------
    (
        "trap_openai_400_context_length",
        http(
            400,
            openai(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "130000 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
        ),
        C.CONTEXT_TOO_LONG,
        S.REQUEST,
        "builtin.context_too_long_code",
    ),
    (
        "anthropic_prompt_too_long",
        http(400, anthropic("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")),
        C.CONTEXT_TOO_LONG,
        S.REQUEST,
        "builtin.context_too_long_keyword",
    ),
    (
        "responses_failed_context_in_stream",
        stream(
            "response.failed", failed("context_length_exceeded", "Your input exceeds the context window.")
        ),
        C.CONTEXT_TOO_LONG,
        S.REQUEST,
        "builtin.context_too_long_code",
    ),
    (
        "string_above_max_length",
        http(
            400,
            openai("Invalid 'input': string too long.", "invalid_request_error", "string_above_max_length"),
        ),
        C.CONTEXT_TOO_LONG,
        S.REQUEST,
        "builtin.context_too_long_code",
    ),
    (
        "vllm_context_500",
        http(500, b'{"object":"error","message":"too many tokens in prompt","type":"BadRequestError"}'),
        C.CONTEXT_TOO_LONG,
        S.REQUEST,
        "builtin.context_too_long_keyword",
    ),
    # --- content policy ---------------------------------------------------------------------------------
    (
        "azure_content_filter",
        http(
            400,
            openai(
                "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                "policy.",
                None,
                "content_filter",
            ),
        ),
        C.CONTENT_POLICY,
        S.REQUEST,
        "builtin.content_policy_code",
    ),
    (
        "openai_safety_system",
        http(
            400,
            openai("Your request was rejected as a result of our safety system.", "invalid_request_error"),
        ),
        C.CONTENT_POLICY,
        S.REQUEST,
        "builtin.content_policy_keyword",
    ),
    # --- quota ------------------------------------------------------------------------------------------
    (
        "trap_429_insufficient_quota",
        http(
            429,
            openai(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        ),
        C.QUOTA_EXHAUSTED,
        S.ACCOUNT,
        "builtin.quota_code",
    ),
    (
        "codex_usage_limit_reached",
        http(
            429,
            b'{"error":{"type":"usage_limit_reached","message":"You have hit your usage limit.",'
            b'"plan_type":"plus","resets_in_seconds":3600}}',
        ),
        C.QUOTA_EXHAUSTED,
        S.ACCOUNT,
        "builtin.quota_code",
    ),
    (
        "codex_usage_not_included_in_stream",
        stream("response.failed", failed("usage_not_included", "Upgrade to use Codex."), P.BEFORE_CONTENT),
        C.QUOTA_EXHAUSTED,
        S.ACCOUNT,
        "builtin.quota_code",
    ),
    (
        "anthropic_credit_balance",
        http(
            400,
            anthropic(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing.",
            ),
        ),
        C.QUOTA_EXHAUSTED,
        S.ACCOUNT,
        "builtin.quota_keyword",
    ),
    # --- capacity ---------------------------------------------------------------------------------------
    (
        "trap_codex_503_server_is_overloaded",
        http(503, openai(CAPACITY_TEXT, "server_error", "server_is_overloaded")),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_code",
    ),
    (
        "codex_503_slow_down",
        http(503, openai("Slow down.", None, "slow_down")),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_code",
    ),
    (
        "trap_responses_failed_server_is_overloaded",
        stream("response.failed", failed("server_is_overloaded", "Our servers are currently overloaded.")),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_code",
    ),
    (
        "code_case_insensitive",
        http(503, openai("busy", None, "SERVER_IS_OVERLOADED")),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_code",
    ),
    (
        "capacity_message_on_500",
        http(500, openai(CAPACITY_TEXT, "server_error")),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_keyword",
    ),
    (
        "bare_503",
        http(503, b"<html><body>Service Unavailable</body></html>"),
        C.CAPACITY,
        S.ACCOUNT_MODEL,
        "builtin.capacity_503",
    ),
    # --- overloaded -------------------------------------------------------------------------------------
    (
        "trap_anthropic_529",
        http(529, anthropic("overloaded_error", "Overloaded")),
        C.OVERLOADED,
        S.PROVIDER_MODEL,
        "builtin.overloaded_status",
    ),
    (
        "anthropic_overloaded_event_in_stream",
        stream("error", anthropic("overloaded_error", "Overloaded")),
        C.OVERLOADED,
        S.PROVIDER_MODEL,
        "builtin.overloaded_type",
    ),
    (
        "trap_500_says_overloaded",
        http(500, openai("Our servers are currently overloaded. Please try again later.", "server_error")),
        C.OVERLOADED,
        S.PROVIDER_MODEL,
        "builtin.overloaded_keyword",
    ),
    (
        "overloaded_message_on_429",
        http(429, openai("That model is currently overloaded with other requests.", "server_error")),
        C.OVERLOADED,
        S.PROVIDER_MODEL,
        "builtin.overloaded_keyword",
    ),
    # --- rate limited -----------------------------------------------------------------------------------
    (
        "trap_429_rate_limit_with_retry_hint",
        http(
            429,
            openai(
                "Rate limit reached for gpt-4o on tokens per min (TPM). Please try again in 1.5s.",
                "tokens",
                "rate_limit_exceeded",
            ),
        ),
        C.RATE_LIMITED,
        S.ACCOUNT_MODEL,
        "builtin.rate_limited_status",
    ),
    (
        "trap_free_tier_429_links_to_billing",
        http(429, FREE_TIER_429),
        C.RATE_LIMITED,
        S.ACCOUNT_MODEL,
        "builtin.rate_limited_status",
    ),
    (
        "anthropic_429",
        http(429, anthropic("rate_limit_error", "Number of request tokens has exceeded your rate limit.")),
        C.RATE_LIMITED,
        S.ACCOUNT_MODEL,
        "builtin.rate_limited_status",
    ),
    (
        "responses_failed_rate_limit_in_stream",
        stream("response.failed", failed("rate_limit_exceeded", "Please try again in 1.5s.")),
        C.RATE_LIMITED,
        S.ACCOUNT_MODEL,
        "builtin.rate_limited_code",
    ),
    (
        "chat_chunk_rate_limit_message",
        stream(None, b'{"error":{"message":"You hit a Rate Limit, slow your roll"}}'),
        C.RATE_LIMITED,
        S.ACCOUNT_MODEL,
        "builtin.rate_limited_keyword",
    ),
    # --- auth -------------------------------------------------------------------------------------------
    (
        "openai_401",
        http(401, openai("Incorrect API key provided: sk-xx.", "invalid_request_error", "invalid_api_key")),
        C.AUTH,
        S.ACCOUNT,
        "builtin.auth_status",
    ),
    (
        "anthropic_403",
        http(
            403, anthropic("permission_error", "Your API key does not have permission to use this resource.")
        ),
        C.AUTH,
        S.ACCOUNT,
        "builtin.auth_status",
    ),
    (
        "auth_error_in_stream",
        stream("error", anthropic("authentication_error", "invalid x-api-key")),
        C.AUTH,
        S.ACCOUNT,
        "builtin.auth_code",
    ),
    # --- not found --------------------------------------------------------------------------------------
    (
        "openai_404_model",
        http(
            404,
            openai(
                "The model `gpt-9` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
        ),
        C.NOT_FOUND,
        S.ACCOUNT_MODEL,
        "builtin.not_found_status",
    ),
    (
        "model_not_found_in_stream",
        stream("response.failed", failed("model_not_found", "The model does not exist."), P.BEFORE_CONTENT),
        C.NOT_FOUND,
        S.ACCOUNT_MODEL,
        "builtin.not_found_code",
    ),
    # --- bare statuses ----------------------------------------------------------------------------------
    ("408", http(408, b"Request Timeout"), C.TIMEOUT, S.ACCOUNT_MODEL, "builtin.timeout_408"),
    (
        "openai_500",
        http(500, openai("The server had an error while processing your request.", "server_error")),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.upstream_5xx",
    ),
    ("nginx_502", http(502, NGINX_502), C.UPSTREAM_ERROR, S.ACCOUNT_MODEL, "builtin.upstream_5xx"),
    ("504_empty", http(504, b""), C.UPSTREAM_ERROR, S.ACCOUNT_MODEL, "builtin.upstream_5xx"),
    (
        "cloudflare_520",
        http(520, b"error code: 520"),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.upstream_5xx",
    ),
    # --- other in-stream failures -------------------------------------------------------------------------
    (
        "responses_failed_server_error",
        stream("response.failed", failed("server_error", "An error occurred while processing your request.")),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.stream_server_error",
    ),
    (
        "anthropic_api_error_event",
        stream("error", anthropic("api_error", "Internal server error")),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.stream_server_error",
    ),
    (
        "chat_error_chunk_internal",
        stream(None, b'{"error":{"message":"boom","type":"internal_error","code":null}}', P.BEFORE_CONTENT),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.stream_server_error",
    ),
    (
        "responses_failed_unknown_code",
        stream("response.failed", failed("invalid_prompt", "Invalid prompt.")),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.stream_error",
    ),
    (
        "responses_error_event_without_fields",
        stream("error", b"{}"),
        C.UPSTREAM_ERROR,
        S.ACCOUNT_MODEL,
        "builtin.stream_error",
    ),
    # --- other 4xx --------------------------------------------------------------------------------------
    (
        "openai_400",
        http(400, openai("Invalid value for 'temperature'.", "invalid_request_error")),
        C.BAD_REQUEST,
        S.REQUEST,
        "builtin.bad_request_4xx",
    ),
    ("409", http(409, b'{"detail": "conflict"}'), C.BAD_REQUEST, S.REQUEST, "builtin.bad_request_4xx"),
    (
        "anthropic_413",
        http(413, anthropic("request_too_large", "Request exceeds the maximum allowed number of bytes.")),
        C.BAD_REQUEST,
        S.REQUEST,
        "builtin.bad_request_4xx",
    ),
    (
        "fastapi_422",
        http(422, b'{"detail":[{"loc":["body","model"],"msg":"field required"}]}'),
        C.BAD_REQUEST,
        S.REQUEST,
        "builtin.bad_request_4xx",
    ),
    # --- fallback ---------------------------------------------------------------------------------------
    ("status_200_not_in_stream", http(200, b"weird"), C.UPSTREAM_ERROR, S.ACCOUNT_MODEL, "builtin.fallback"),
    ("nothing_at_all", Signal(phase=P.BEFORE_HEADERS), C.UPSTREAM_ERROR, S.ACCOUNT_MODEL, "builtin.fallback"),
    ("status_302", http(302, b""), C.UPSTREAM_ERROR, S.ACCOUNT_MODEL, "builtin.fallback"),
]


@pytest.mark.parametrize(
    ("signal", "error_class", "scope", "rule"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_builtin_table(signal: Signal, error_class: ErrorClass, scope: Scope, rule: str) -> None:
    verdict = Classifier().classify(signal)
    assert (verdict.error_class, verdict.scope, verdict.rule) == (error_class, scope, rule)
    assert verdict.count is (rule != "builtin.pool_full")  # the gateway's own pool is not the upstream
    assert verdict.client_status is None and verdict.client_message is None


def test_table_covers_every_class_phase_rule_and_kind() -> None:
    assert {case[2] for case in CASES} == set(ErrorClass)
    assert {case[1].phase for case in CASES} == set(Phase)
    assert {case[4] for case in CASES} == BUILTIN_NAMES
    assert {case[1].in_stream for case in CASES} == {True, False}
    assert {case[1].transport for case in CASES} == {*Transport, None}


def test_default_scope_covers_every_class_and_builtins_use_it() -> None:
    assert set(DEFAULT_SCOPE) == set(ErrorClass)
    assert all(rule.scope is None for rule in BUILTIN_RULES)


def test_builtin_order_and_names() -> None:
    names = [rule.name for rule in Classifier().rules]
    assert names == [rule.name for rule in BUILTIN_RULES]
    assert len(set(names)) == len(names)
    assert names[0] == "builtin.connect_failed" and names[-1] == "builtin.fallback"
    # The precedence the traps rely on.
    for earlier, later in [
        ("builtin.quota_code", "builtin.rate_limited_status"),
        ("builtin.quota_keyword", "builtin.rate_limited_status"),
        ("builtin.capacity_code", "builtin.overloaded_keyword"),
        ("builtin.capacity_code", "builtin.capacity_503"),
        ("builtin.context_too_long_code", "builtin.bad_request_4xx"),
        ("builtin.overloaded_keyword", "builtin.upstream_5xx"),
        ("builtin.upstream_5xx", "builtin.stream_server_error"),
        ("builtin.stream_error", "builtin.bad_request_4xx"),
    ]:
        assert names.index(earlier) < names.index(later), (earlier, later)


# --- operator rules -----------------------------------------------------------------------------------


def sig(status: int | None = 500, code: str | None = None, message: str = "", **kw: Any) -> Signal:
    return Signal(
        phase=kw.pop("phase", P.BEFORE_CONTENT), status=status, error_code=code, message=message, **kw
    )


def test_operator_rules_come_first_in_priority_order_ties_in_given_order() -> None:
    rules = [
        Rule("late", C.BAD_REQUEST, statuses=frozenset({503}), priority=50),
        Rule("first_of_tie", C.TIMEOUT, statuses=frozenset({503}), priority=10),
        Rule("second_of_tie", C.RESET, statuses=frozenset({503}), priority=10),
    ]
    classifier = Classifier(rules)
    assert [r.name for r in classifier.rules[:3]] == ["first_of_tie", "second_of_tie", "late"]
    assert classifier.rules[3:] == BUILTIN_RULES
    assert classifier.classify(sig(503)).rule == "first_of_tie"
    # An operator rule beats even the most specific built-in signal.
    capacity = sig(503, code="server_is_overloaded")
    assert classifier.classify(capacity).error_class is C.TIMEOUT


MATCHING: list[tuple[str, dict[str, Any], Signal, bool]] = [
    # match: all (default) needs every given condition.
    ("all_both", {"code": "boom", "keywords": ["cosmic"]}, sig(code="boom", message="Cosmic ray"), True),
    ("all_code_only", {"code": "boom", "keywords": ["cosmic"]}, sig(code="boom"), False),
    ("all_keyword_only", {"code": "boom", "keywords": ["cosmic"]}, sig(message="cosmic"), False),
    # match: any needs one.
    ("any_code", {"code": "boom", "keywords": ["cosmic"], "match": "any"}, sig(code="BOOM"), True),
    ("any_keyword", {"code": "boom", "keywords": ["cosmic"], "match": "any"}, sig(message="COSMIC"), True),
    ("any_none", {"code": "boom", "keywords": ["cosmic"], "match": "any"}, sig(message="x"), False),
    ("any_status", {"status": [418, 500], "type": "teapot", "match": "any"}, sig(500), True),
    # keyword_mode
    ("kw_any", {"keywords": ["alpha", "beta"]}, sig(message="only beta here"), True),
    ("kw_all_missing", {"keywords": ["alpha", "beta"], "keyword_mode": "all"}, sig(message="beta"), False),
    ("kw_all", {"keywords": ["alpha", "beta"], "keyword_mode": "all"}, sig(message="Beta, Alpha"), True),
    # Filters (phase, in_stream) hold under match: any too.
    (
        "any_phase_filter_blocks",
        {"status": 500, "keywords": ["x"], "match": "any", "phase": "after_content"},
        sig(500),
        False,
    ),
    (
        "any_phase_filter_passes",
        {"status": 500, "keywords": ["x"], "match": "any", "phase": ["after_content", "before_content"]},
        sig(500),
        True,
    ),
    ("in_stream_only_filter", {"in_stream": True}, sig(200, in_stream=True), True),
    ("in_stream_only_filter_http", {"in_stream": True}, sig(500), False),
    ("not_in_stream", {"in_stream": False, "status": 500}, sig(500), True),
    ("status_class", {"status": "5xx"}, sig(599), True),
    ("status_class_miss", {"status": "5xx"}, sig(499), False),
    ("type_case_insensitive", {"type": "Overloaded_Error"}, sig(error_type="overloaded_error"), True),
    ("numeric_code", {"code": 1234}, sig(code="1234"), True),
    (
        "transport",
        {"transport": ["idle_timeout"], "phase": "after_content"},
        Signal(phase=P.AFTER_CONTENT, transport=T.IDLE_TIMEOUT),
        True,
    ),
    ("transport_miss", {"transport": "reset"}, Signal(phase=P.BEFORE_HEADERS, transport=T.CONNECT), False),
]


@pytest.mark.parametrize(
    ("spec", "signal", "matches"),
    [case[1:] for case in MATCHING],
    ids=[case[0] for case in MATCHING],
)
def test_operator_rule_matching(spec: dict[str, Any], signal: Signal, matches: bool) -> None:
    classifier = Classifier(parse_rules([{"name": "mine", "class": "bad_request", **spec}]))
    assert (classifier.classify(signal).rule == "mine") is matches


def test_rewrite_scope_and_count_are_carried_into_the_verdict() -> None:
    rules = parse_rules(
        yaml.safe_load(
            """
            - name: hide-capacity
              class: capacity
              scope: provider_model
              code: [server_is_overloaded, slow_down]
              rewrite_status: 529
              rewrite_message: "Busy, retrying elsewhere"
              count: false
            """
        )
    )
    verdict = Classifier(rules).classify(sig(503, code="slow_down"))
    assert verdict == Verdict(
        error_class=C.CAPACITY,
        scope=S.PROVIDER_MODEL,
        rule="hide-capacity",
        count=False,
        client_status=529,
        client_message="Busy, retrying elsewhere",
        widen=False,  # the operator named the scope: no evidence widens it
    )


def test_default_scope_for_operator_rule_without_scope() -> None:
    classifier = Classifier([Rule("ovl", C.OVERLOADED, keywords=("busy",))])
    assert classifier.classify(sig(message="busy")).scope is S.PROVIDER_MODEL


def test_hit_counters_for_builtin_and_operator_rules() -> None:
    classifier = Classifier([Rule("rewrite-503", C.CAPACITY, statuses=frozenset({503}), rewrite_status=429)])
    assert set(classifier.hits) == {"rewrite-503", *BUILTIN_NAMES}
    assert not any(classifier.hits.values())
    for _ in range(3):
        classifier.classify(sig(503))
    classifier.classify(sig(529))
    classifier.classify(transport(T.CONNECT))
    assert classifier.hits["rewrite-503"] == 3
    assert classifier.hits["builtin.overloaded_status"] == 1
    assert classifier.hits["builtin.connect_failed"] == 1
    assert classifier.hits["builtin.capacity_503"] == 0
    assert sum(classifier.hits.values()) == 5
    with pytest.raises(TypeError):
        classifier.hits["builtin.fallback"] = 9  # type: ignore[index]


def test_classifiers_do_not_share_counters() -> None:
    one, two = Classifier(), Classifier()
    one.classify(sig(500))
    assert one.hits["builtin.upstream_5xx"] == 1 and two.hits["builtin.upstream_5xx"] == 0


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([Rule("empty", C.CAPACITY)], "rule 'empty': a rule needs at least one condition"),
        (
            [Rule("builtin.capacity_503", C.CAPACITY, statuses=frozenset({503}))],
            "rule 'builtin.capacity_503': ",
        ),
        (
            [Rule("builtin.mine", C.CAPACITY, statuses=frozenset({503}))],
            "rule 'builtin.mine': names starting with 'builtin.' are reserved",
        ),
        (
            [
                Rule("a", C.CAPACITY, statuses=frozenset({503})),
                Rule("a", C.TIMEOUT, statuses=frozenset({504})),
            ],
            "rule 'a': duplicate rule name 'a'",
        ),
        (
            [Rule("blank", C.CAPACITY, keywords=(" ",))],
            "rule 'blank': an empty keyword would match every message",
        ),
        ([Rule("r", C.CAPACITY, statuses=frozenset({503}), rewrite_status=200)], "rule 'r': expected a 4xx"),
    ],
)
def test_classifier_rejects_bad_rules(rules: list[Rule], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        Classifier(rules)


# --- parsing ----------------------------------------------------------------------------------------------


def test_parse_rules_full_example() -> None:
    raw = yaml.safe_load(
        """
        - name: sub2api-style
          class: capacity
          code: [server_is_overloaded, 1234]
          keywords: [no healthy upstream]
          match: any
        - name: only-late-stalls
          class: stream_stall
          scope: account
          transport: idle_timeout
          phase: [after_content]
          in_stream: false
          priority: 5
          count: false
        - name: four-two-two
          class: context_too_long
          status: [422, 413]
          type: Validation_Error
          keywords: [tokens, limit]
          keyword_mode: all
          rewrite_status: 400
          rewrite_message: too long
        """
    )
    first, second, third = parse_rules(raw)
    assert first == Rule(
        "sub2api-style",
        C.CAPACITY,
        error_codes=frozenset({"server_is_overloaded", "1234"}),
        keywords=("no healthy upstream",),
        match="any",
    )
    assert second == Rule(
        "only-late-stalls",
        C.STREAM_STALL,
        scope=S.ACCOUNT,
        transports=frozenset({T.IDLE_TIMEOUT}),
        phases=frozenset({P.AFTER_CONTENT}),
        in_stream=False,
        priority=5,
        count=False,
    )
    assert third == Rule(
        "four-two-two",
        C.CONTEXT_TOO_LONG,
        statuses=frozenset({422, 413}),
        error_types=frozenset({"Validation_Error"}),
        keywords=("tokens", "limit"),
        keyword_mode="all",
        rewrite_status=400,
        rewrite_message="too long",
    )
    assert [r.name for r in Classifier([first, second, third]).rules[:3]] == [
        "only-late-stalls",
        "sub2api-style",
        "four-two-two",
    ]


def test_parse_rules_empty() -> None:
    assert parse_rules(None) == []
    assert parse_rules([]) == []


OK = {"name": "r", "class": "capacity", "status": 503}

BAD: list[tuple[str, object, str]] = [
    ("not_a_list", {"name": "r"}, "error_rules: expected a list of rules, got a mapping"),
    ("item_not_mapping", ["capacity"], "error_rules[0]: expected a mapping, got a string 'capacity'"),
    ("unknown_key", [{**OK, "stauts": 1}], "error_rules[0].stauts: unknown key (allowed here: class, code, "),
    ("missing_name", [{"class": "capacity", "status": 503}], "error_rules[0].name: required key is missing"),
    ("missing_class", [{"name": "r", "status": 503}], "error_rules[0].class: required key is missing"),
    ("blank_name", [{**OK, "name": " "}], "error_rules[0].name: expected a non-empty string, got a string"),
    ("name_not_str", [{**OK, "name": 5}], "error_rules[0].name: expected a non-empty string, got int 5"),
    (
        "unknown_class",
        [OK, {**OK, "name": "s", "class": "overload"}],
        "error_rules[1].class: unknown error class 'overload' (one of: capacity, overloaded, rate_limited, ",
    ),
    (
        "unknown_scope",
        [{**OK, "scope": "global"}],
        "error_rules[0].scope: unknown scope 'global' (one of: request, ",
    ),
    (
        "status_text",
        [{**OK, "status": "five hundred"}],
        "error_rules[0].status: expected an HTTP status (100-599)",
    ),
    (
        "status_range",
        [{**OK, "status": [500, 700]}],
        "error_rules[0].status: expected an HTTP status (100-599) or a",
    ),
    ("status_bool", [{**OK, "status": True}], "error_rules[0].status: expected an HTTP status"),
    ("type_number", [{**OK, "type": 5}], "error_rules[0].type: expected a non-empty string, got int 5"),
    (
        "code_blank",
        [{**OK, "code": [""]}],
        "error_rules[0].code: expected a non-empty string, got a string ''",
    ),
    (
        "keywords_mapping",
        [{**OK, "keywords": [{"a": 1}]}],
        "error_rules[0].keywords: expected a non-empty string",
    ),
    (
        "keyword_mode",
        [{**OK, "keyword_mode": "some"}],
        "error_rules[0].keyword_mode: expected 'any' or 'all', got",
    ),
    ("match", [{**OK, "match": "or"}], "error_rules[0].match: expected 'any' or 'all', got 'or'"),
    (
        "phase",
        [{**OK, "phase": "during"}],
        "error_rules[0].phase: unknown phase 'during' (one of: before_headers, ",
    ),
    (
        "transport",
        [{**OK, "transport": "eof"}],
        "error_rules[0].transport: unknown transport 'eof' (one of: connect,",
    ),
    (
        "in_stream",
        [{**OK, "in_stream": "yes"}],
        "error_rules[0].in_stream: expected true or false, got a string",
    ),
    ("priority", [{**OK, "priority": 1.5}], "error_rules[0].priority: expected an integer, got float 1.5"),
    (
        "rewrite_status_type",
        [{**OK, "rewrite_status": "529"}],
        "error_rules[0].rewrite_status: expected an integer",
    ),
    (
        "rewrite_status_range",
        [{**OK, "rewrite_status": 200}],
        "error_rules[0].rewrite_status: expected a 4xx or 5xx",
    ),
    (
        "rewrite_message",
        [{**OK, "rewrite_message": 5}],
        "error_rules[0].rewrite_message: expected a non-empty string",
    ),
    ("count", [{**OK, "count": "no"}], "error_rules[0].count: expected true or false, got a string 'no'"),
    (
        "no_condition",
        [{"name": "r", "class": "capacity", "rewrite_status": 503}],
        "error_rules[0]: a rule needs at least one condition",
    ),
    ("duplicate_name", [OK, {**OK, "status": 502}], "error_rules[1].name: duplicate rule name 'r'"),
    (
        "builtin_name",
        [{**OK, "name": "builtin.capacity_503"}],
        "error_rules[0].name: names starting with 'builtin.' are",
    ),
    (
        "blank_keyword",
        [{**OK, "keywords": ["ok", " "]}],
        "error_rules[0].keywords: expected a non-empty string",
    ),
]


@pytest.mark.parametrize(("raw", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_parse_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rules(raw)
    assert str(info.value).startswith(message)


def test_parse_errors_use_the_given_path() -> None:
    with pytest.raises(ValueError, match=r"^resilience\.rules\[0\]\.class: "):
        parse_rules([{"name": "r", "class": "nope", "status": 500}], path="resilience.rules")
