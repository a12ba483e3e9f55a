"""The one classifier: a first-match table of rules mapping a failure :class:`Signal` to a :class:`Verdict`.

Operator rules (from config) are tried first, in ``priority`` order (lower first, ties in the order
given), then the built-in table. Every rule, built-in or operator, has a hit counter, so an operator
rewrite never hides a real outage from the people watching.

How a rule matches a signal:

- the *filters* ``phases`` and ``in_stream`` must always hold when given;
- the *conditions* ``statuses``, ``error_types``, ``error_codes``, ``keywords`` and ``transports``, when
  given, combine by ``match``: ``"all"`` (every given one holds) or ``"any"`` (at least one does);
- ``keywords`` are case-insensitive substrings of the message, combined by ``keyword_mode``;
- types and codes compare exactly, case-insensitively.

A rule with filters but no conditions matches every signal that passes its filters; a rule with neither
is invalid (only the built-in fallback has none). :mod:`spillgate.resilience.rules` holds the
:class:`Rule` itself and reads operator rules from config (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from spillgate.resilience.rules import BUILTIN_PREFIX, KeywordMode, MatchMode, Rule, parse_rules, rule_problem
from spillgate.resilience.scoping import DEFAULT_SCOPE
from spillgate.resilience.types import ErrorClass, Phase, Signal, Transport, Verdict

__all__ = [
    "BUILTIN_NAMES",
    "BUILTIN_PREFIX",
    "BUILTIN_RULES",
    "DEFAULT_SCOPE",
    "Classifier",
    "KeywordMode",
    "MatchMode",
    "Rule",
    "parse_rules",
]

# -- the built-in table ---------------------------------------------------------------------


def _builtin(
    name: str,
    error_class: ErrorClass,
    *,
    statuses: Iterable[int] = (),
    types: Iterable[str] = (),
    codes: Iterable[str] = (),
    keywords: tuple[str, ...] = (),
    transports: Iterable[Transport] = (),
    phases: Iterable[Phase] = (),
    in_stream: bool | None = None,
) -> Rule:
    return Rule(
        name=BUILTIN_PREFIX + name,
        error_class=error_class,
        statuses=frozenset(statuses),
        error_types=frozenset(types),
        error_codes=frozenset(codes),
        keywords=keywords,
        match="any",
        transports=frozenset(transports),
        phases=frozenset(phases),
        in_stream=in_stream,
    )


_C = ErrorClass
_T = Transport
_SERVER_ERRORS = ("server_error", "api_error", "internal_error")

BUILTIN_RULES: tuple[Rule, ...] = (
    # Below HTTP: the upstream client says what happened.
    _builtin("connect_failed", _C.CONNECT_FAILED, transports=(_T.CONNECT, _T.CONNECT_TIMEOUT)),
    # The gateway's own pool to the upstream was full: go elsewhere, but it says nothing about
    # the upstream's health (count: false).
    Rule(
        name=BUILTIN_PREFIX + "pool_full",
        error_class=_C.CAPACITY,
        transports=frozenset({_T.POOL_FULL}),
        match="any",
        count=False,
    ),
    _builtin("reset", _C.RESET, transports=(_T.RESET,), phases=(Phase.BEFORE_HEADERS,)),
    _builtin(
        "stream_cut",
        _C.STREAM_CUT,
        transports=(_T.RESET,),
        phases=(Phase.BEFORE_CONTENT, Phase.AFTER_CONTENT),
    ),
    _builtin(
        "timeout",
        _C.TIMEOUT,
        transports=(_T.FIRST_BYTE_TIMEOUT, _T.FIRST_CONTENT_TIMEOUT, _T.TOTAL_TIMEOUT, _T.SILENT_CLOSE),
    ),
    _builtin("stream_stall", _C.STREAM_STALL, transports=(_T.IDLE_TIMEOUT,)),
    _builtin("stream_malformed", _C.STREAM_MALFORMED, transports=(_T.MALFORMED,)),
    # Request-scoped problems first: whatever the status, a request that cannot fit is not an outage.
    _builtin(
        "context_too_long_code",
        _C.CONTEXT_TOO_LONG,
        codes=("context_length_exceeded", "string_above_max_length"),
    ),
    _builtin(
        "context_too_long_keyword",
        _C.CONTEXT_TOO_LONG,
        keywords=(
            "maximum context length",
            "context length",
            "context window",
            "prompt is too long",
            "too many tokens",
        ),
    ),
    _builtin(
        "content_policy_code",
        _C.CONTENT_POLICY,
        codes=("content_filter", "content_policy_violation", "responsibleaipolicyviolation"),
    ),
    _builtin(
        "content_policy_keyword",
        _C.CONTENT_POLICY,
        keywords=("content management policy", "content filtering policy", "content policy", "safety system"),
    ),
    # Quota before rate limits: a 429 insufficient_quota will not clear by waiting seconds.
    _builtin(
        "quota_code",
        _C.QUOTA_EXHAUSTED,
        codes=(
            "insufficient_quota",
            "usage_limit_reached",
            "usage_not_included",
            "billing_hard_limit_reached",
            "billing_not_active",
        ),
        # Codex's backend sends usage_limit_reached / usage_not_included as error.type.
        types=("insufficient_quota", "usage_limit_reached", "usage_not_included"),
    ),
    _builtin(
        "quota_keyword",
        _C.QUOTA_EXHAUSTED,
        # Not a bare "billing": OpenAI's free-tier 429 rate-limit message links to .../account/billing.
        keywords=(
            "exceeded your current quota",
            "usage limit",
            "credit balance is too low",
            "billing details",
            "billing hard limit",
        ),
    ),
    # Capacity before overloaded and 503: server_is_overloaded is Codex's "model at capacity".
    _builtin(
        "capacity_code",
        _C.CAPACITY,
        codes=("server_is_overloaded", "slow_down", "model_at_capacity", "engine_overloaded"),
    ),
    _builtin(
        "capacity_keyword", _C.CAPACITY, keywords=("at capacity", "try a different model", "no capacity")
    ),
    _builtin("overloaded_status", _C.OVERLOADED, statuses=(529,)),
    _builtin("overloaded_type", _C.OVERLOADED, types=("overloaded_error",)),
    _builtin("overloaded_keyword", _C.OVERLOADED, keywords=("overloaded",)),
    _builtin("rate_limited_status", _C.RATE_LIMITED, statuses=(429,)),
    _builtin(
        "rate_limited_code",
        _C.RATE_LIMITED,
        types=("rate_limit_error", "rate_limit_exceeded"),
        codes=("rate_limit_exceeded", "rate_limited"),
    ),
    _builtin("rate_limited_keyword", _C.RATE_LIMITED, keywords=("rate limit",)),
    _builtin("auth_status", _C.AUTH, statuses=(401, 403)),
    _builtin(
        "auth_code",
        _C.AUTH,
        types=("authentication_error", "permission_error"),
        codes=("invalid_api_key", "account_deactivated"),
    ),
    _builtin("not_found_status", _C.NOT_FOUND, statuses=(404,)),
    _builtin("not_found_code", _C.NOT_FOUND, types=("not_found_error",), codes=("model_not_found",)),
    # Bare statuses, once nothing more specific was said.
    _builtin("capacity_503", _C.CAPACITY, statuses=(503,)),
    _builtin("timeout_408", _C.TIMEOUT, statuses=(408,)),
    _builtin("upstream_5xx", _C.UPSTREAM_ERROR, statuses=range(500, 600)),
    _builtin(
        "stream_server_error", _C.UPSTREAM_ERROR, types=_SERVER_ERRORS, codes=_SERVER_ERRORS, in_stream=True
    ),
    _builtin("stream_error", _C.UPSTREAM_ERROR, in_stream=True),
    _builtin("bad_request_4xx", _C.BAD_REQUEST, statuses=range(400, 500)),
    Rule(name=BUILTIN_PREFIX + "fallback", error_class=_C.UPSTREAM_ERROR),
)
"""The built-in table, tried after the operator rules; the last one matches anything."""

BUILTIN_NAMES: frozenset[str] = frozenset(rule.name for rule in BUILTIN_RULES)


# -- matching -------------------------------------------------------------------------------


class _Matcher:
    """A rule compiled for matching: lower-cased sets, ``None`` for what the rule does not specify."""

    __slots__ = (
        "any_keyword",
        "codes",
        "has_conditions",
        "in_stream",
        "keywords",
        "match_any",
        "phases",
        "statuses",
        "transports",
        "types",
        "verdict",
    )

    def __init__(self, rule: Rule) -> None:
        self.verdict = rule.verdict
        self.phases = rule.phases or None
        self.in_stream = rule.in_stream
        self.transports = rule.transports or None
        self.statuses = rule.statuses or None
        self.types = frozenset(t.lower() for t in rule.error_types) or None
        self.codes = frozenset(c.lower() for c in rule.error_codes) or None
        self.keywords = tuple(k.lower() for k in rule.keywords) or None
        self.any_keyword = rule.keyword_mode == "any"
        self.match_any = rule.match == "any"
        self.has_conditions = bool(
            self.transports or self.statuses or self.types or self.codes or self.keywords
        )

    def matches(self, signal: Signal, error_type: str, error_code: str, message: str) -> bool:
        """Whether the rule matches; type, code and message come lower-cased."""
        if self.phases is not None and signal.phase not in self.phases:
            return False
        if self.in_stream is not None and signal.in_stream is not self.in_stream:
            return False
        # Each condition decides at once when it equals ``match_any``: a hit under "any", a miss under "all".
        decisive = self.match_any
        if self.transports is not None and (signal.transport in self.transports) is decisive:
            return decisive
        if self.statuses is not None and (signal.status in self.statuses) is decisive:
            return decisive
        if self.types is not None and (error_type in self.types) is decisive:
            return decisive
        if self.codes is not None and (error_code in self.codes) is decisive:
            return decisive
        if self.keywords is not None:
            if self.any_keyword:
                found = any(k in message for k in self.keywords)
            else:
                found = all(k in message for k in self.keywords)
            if found is decisive:
                return decisive
        # "all": nothing failed. "any": nothing held, which passes only when no condition was given.
        return not decisive or not self.has_conditions


class Classifier:
    """Operator rules then built-in rules, first match wins; a hit counter for every rule."""

    __slots__ = ("_hits", "_matchers", "hits", "rules")

    def __init__(self, operator_rules: Sequence[Rule] = ()) -> None:
        seen: set[str] = set()
        for rule in operator_rules:
            problem = rule_problem(rule, seen)
            if problem is not None:
                raise ValueError(f"rule {rule.name!r}: {problem[1]}")
            seen.add(rule.name)
        ordered = sorted(operator_rules, key=lambda rule: rule.priority)  # stable: ties keep their order
        self.rules: tuple[Rule, ...] = (*ordered, *BUILTIN_RULES)
        """Every rule in the order it is tried."""
        self._matchers = tuple(_Matcher(rule) for rule in self.rules)
        self._hits: dict[str, int] = dict.fromkeys((rule.name for rule in self.rules), 0)
        self.hits: Mapping[str, int] = MappingProxyType(self._hits)
        """Matches per rule name, for every rule (a read-only live view)."""

    def carry_hits(self, previous: Classifier) -> None:
        """Continue the counts of a classifier this one replaces (a reload), rule by rule name."""
        for name, n in previous.hits.items():
            if name in self._hits:
                self._hits[name] += n

    def classify(self, signal: Signal) -> Verdict:
        """What this failure is, what it marks unhealthy and what the client should be told."""
        error_type = signal.error_type.lower() if signal.error_type else ""
        error_code = signal.error_code.lower() if signal.error_code else ""
        message = signal.message.lower()
        for matcher in self._matchers:
            if matcher.matches(signal, error_type, error_code, message):
                verdict = matcher.verdict
                self._hits[verdict.rule] += 1
                return verdict
        raise AssertionError("the built-in fallback rule matches every signal")  # pragma: no cover
