"""A classification rule, what makes one valid, and the operator rules read from config.

A :class:`Rule`'s fields are also the keys an operator writes under ``error_rules``: the allowed
keys (and their spelling, ``class`` for ``error_class``...) come from the dataclass fields. How a
rule matches is described in :mod:`spillgate.resilience.classify`, which holds the built-in table.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Literal

from spillgate.resilience.scoping import DEFAULT_SCOPE
from spillgate.resilience.types import ErrorClass, Phase, Scope, Transport, Verdict
from spillgate.validation import (
    ValidationError,
    check_keys,
    file_keys,
    key,
    listed,
    require_bool,
    require_choice,
    require_enum,
    require_int,
    require_list,
    require_mapping,
    require_str,
    required_keys,
)

KeywordMode = Literal["any", "all"]
MatchMode = Literal["all", "any"]
_MODES: tuple[KeywordMode, ...] = ("any", "all")

BUILTIN_PREFIX = "builtin."
"""Built-in rule names start with this; operator rule names may not."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the classification table (see :mod:`spillgate.resilience.classify` for how it
    matches). Each field is a key of an operator rule, spelled as its metadata says."""

    name: str
    error_class: ErrorClass = field(metadata=key("class"))
    scope: Scope | None = None
    """``None``: the default scope of the class (:data:`DEFAULT_SCOPE`)."""
    statuses: frozenset[int] = field(default=frozenset(), metadata=key("status"))
    error_types: frozenset[str] = field(default=frozenset(), metadata=key("type"))
    error_codes: frozenset[str] = field(default=frozenset(), metadata=key("code"))
    keywords: tuple[str, ...] = ()
    keyword_mode: KeywordMode = "any"
    match: MatchMode = "all"
    transports: frozenset[Transport] = field(default=frozenset(), metadata=key("transport"))
    phases: frozenset[Phase] = field(default=frozenset(), metadata=key("phase"))
    in_stream: bool | None = None
    priority: int = 100
    rewrite_status: int | None = None
    """What the client is told instead of the upstream status (operator rewrite)."""
    rewrite_message: str | None = None
    count: bool = True
    """``False``: failures matching this rule do not count toward health."""

    @property
    def has_condition(self) -> bool:
        return bool(
            self.statuses
            or self.error_types
            or self.error_codes
            or self.keywords
            or self.transports
            or self.phases
            or self.in_stream is not None
        )

    @property
    def verdict(self) -> Verdict:
        """The verdict this rule gives when it matches."""
        return Verdict(
            error_class=self.error_class,
            scope=DEFAULT_SCOPE[self.error_class] if self.scope is None else self.scope,
            rule=self.name,
            count=self.count,
            client_status=self.rewrite_status,
            client_message=self.rewrite_message,
            widen=self.scope is None,
        )


def rule_problem(rule: Rule, taken: Container[str]) -> tuple[str, str] | None:
    """What is wrong with an operator rule as ``(key, description)``, or ``None``."""
    if not rule.name.strip():
        return "name", "a rule needs a name"
    if rule.name.startswith(BUILTIN_PREFIX):
        return "name", f"names starting with {BUILTIN_PREFIX!r} are reserved for built-in rules"
    if rule.name in taken:
        return "name", f"duplicate rule name {rule.name!r}"
    if not rule.has_condition:
        return (
            "",
            "a rule needs at least one condition (status, type, code, keywords, transport, phase, in_stream)",
        )
    if any(not keyword.strip() for keyword in rule.keywords):
        return "keywords", "an empty keyword would match every message"
    if rule.rewrite_status is not None and not 400 <= rule.rewrite_status <= 599:
        return "rewrite_status", f"expected a 4xx or 5xx status, got {rule.rewrite_status}"
    return None


# -- operator rules from config -----------------------------------------------------------------

_KEYS = file_keys(Rule)
_REQUIRED = required_keys(Rule)


def parse_rules(raw: object, path: str = "error_rules") -> list[Rule]:
    """Operator rules from a YAML-loaded list of mappings.

    Keys: ``name`` and ``class`` (required); ``scope``; ``status`` (an int, ``"5xx"``, or a list of
    them); ``type``, ``code`` (a string or a list); ``keywords`` (a list); ``keyword_mode`` and ``match``
    (``any`` / ``all``); ``transport``, ``phase`` (a value or a list); ``in_stream``; ``priority``;
    ``rewrite_status``; ``rewrite_message``; ``count``.

    Raises :class:`~spillgate.validation.ValidationError` (a :class:`ValueError`) whose message
    starts with the key path, e.g.
    ``error_rules[1].class: unknown error class 'overload' (one of: capacity, overloaded, ...)``.
    """
    items = require_list(raw, path, what="a list of rules", show_value=True)
    rules: list[Rule] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        here = f"{path}[{index}]"
        rule = _parse_rule(item, here)
        problem = rule_problem(rule, names)
        if problem is not None:
            name, description = problem
            raise ValidationError(f"{here}.{name}: {description}" if name else f"{here}: {description}")
        names.add(rule.name)
        rules.append(rule)
    return rules


def _parse_rule(item: object, path: str) -> Rule:
    m: dict[str, Any] = require_mapping(item, path, show_value=True, none_ok=False)
    check_keys(m, path, _KEYS, _REQUIRED)
    rewrite_status = m.get("rewrite_status")
    rewrite_message = m.get("rewrite_message")
    in_stream = m.get("in_stream")
    return Rule(
        name=require_str(m["name"], f"{path}.name", show_value=True),
        error_class=require_enum(ErrorClass, m["class"], f"{path}.class", "error class"),
        scope=None if m.get("scope") is None else require_enum(Scope, m["scope"], f"{path}.scope", "scope"),
        statuses=frozenset(_statuses(m.get("status"), f"{path}.status")),
        error_types=frozenset(_strings(m.get("type"), f"{path}.type", numbers=False)),
        error_codes=frozenset(_strings(m.get("code"), f"{path}.code", numbers=True)),
        keywords=tuple(_strings(m.get("keywords"), f"{path}.keywords", numbers=False)),
        keyword_mode=require_choice(m.get("keyword_mode", "any"), f"{path}.keyword_mode", _MODES),
        match=require_choice(m.get("match", "all"), f"{path}.match", _MODES),
        transports=frozenset(
            require_enum(Transport, v, f"{path}.transport", "transport") for v in listed(m.get("transport"))
        ),
        phases=frozenset(require_enum(Phase, v, f"{path}.phase", "phase") for v in listed(m.get("phase"))),
        in_stream=None
        if in_stream is None
        else require_bool(in_stream, f"{path}.in_stream", show_value=True),
        priority=require_int(m.get("priority", 100), f"{path}.priority", show_value=True),
        rewrite_status=None
        if rewrite_status is None
        else require_int(rewrite_status, f"{path}.rewrite_status", show_value=True),
        rewrite_message=None
        if rewrite_message is None
        else require_str(rewrite_message, f"{path}.rewrite_message", show_value=True),
        count=require_bool(m.get("count", True), f"{path}.count", show_value=True),
    )


def _statuses(value: object, path: str) -> set[int]:
    """HTTP statuses: ``503``, a class such as ``"5xx"``, or a list of them."""
    statuses: set[int] = set()
    for item in listed(value):
        if isinstance(item, str) and len(item) == 3 and item[0] in "12345" and item[1:].lower() == "xx":
            base = int(item[0]) * 100
            statuses.update(range(base, base + 100))
        elif isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            statuses.add(item)
        else:
            raise ValidationError(
                f"{path}: expected an HTTP status (100-599) or a class such as 5xx, got {item!r}"
            )
    return statuses


def _strings(value: object, path: str, *, numbers: bool) -> list[str]:
    """Non-empty strings, given alone or as a list; with ``numbers``, integers as text (codes)."""
    return [
        str(item)
        if numbers and isinstance(item, int) and not isinstance(item, bool)
        else require_str(item, path, show_value=True)
        for item in listed(value)
    ]
