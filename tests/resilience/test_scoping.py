"""The scope table and its widening, as tables of failure sequences on a hand-driven clock."""

from __future__ import annotations

from typing import Any

import pytest

from spillgate.resilience.classify import Classifier
from spillgate.resilience.scoping import (
    DEFAULT_SCOPE,
    MAX_KEYS,
    MAX_NAMES,
    SCOPE_RULES,
    ScopeEvidence,
    account_wide,
)
from spillgate.resilience.types import ErrorClass, Phase, Scope, Signal, Verdict
from tests.clock import FakeClock

C, S = ErrorClass, Scope


def verdict(cls: ErrorClass, *, widen: bool = True, scope: Scope | None = None) -> Verdict:
    return Verdict(cls, DEFAULT_SCOPE[cls] if scope is None else scope, "test", widen=widen)


NO_SIGNAL = Signal(phase=Phase.BEFORE_CONTENT, status=500)


def test_the_table_has_one_row_per_class() -> None:
    assert [rule.error_class for rule in SCOPE_RULES] == list(
        dict.fromkeys(r.error_class for r in SCOPE_RULES)
    )
    assert set(DEFAULT_SCOPE) == set(ErrorClass)


# What one failure marks, as the issue states it.
ONE_FAILURE = [
    (C.RATE_LIMITED, S.ACCOUNT_MODEL),
    (C.CAPACITY, S.ACCOUNT_MODEL),
    (C.OVERLOADED, S.PROVIDER_MODEL),
    (C.RESET, S.ACCOUNT_MODEL),
    (C.TIMEOUT, S.ACCOUNT_MODEL),
    (C.STREAM_CUT, S.ACCOUNT_MODEL),
    (C.STREAM_STALL, S.ACCOUNT_MODEL),
    (C.STREAM_MALFORMED, S.ACCOUNT_MODEL),
    (C.UPSTREAM_ERROR, S.ACCOUNT_MODEL),
    (C.NOT_FOUND, S.ACCOUNT_MODEL),
    (C.CONNECT_FAILED, S.PROVIDER),
    (C.AUTH, S.ACCOUNT),
    (C.QUOTA_EXHAUSTED, S.ACCOUNT),
    (C.CONTENT_POLICY, S.REQUEST),
    (C.CONTEXT_TOO_LONG, S.REQUEST),
    (C.BAD_REQUEST, S.REQUEST),
]


@pytest.mark.parametrize(("cls", "scope"), ONE_FAILURE, ids=[c.value for c, _ in ONE_FAILURE])
def test_one_failure_marks_the_tables_scope(cls: ErrorClass, scope: Scope) -> None:
    assert {c for c, _ in ONE_FAILURE} == set(ErrorClass)
    marking = ScopeEvidence(clock=FakeClock()).mark(
        verdict(cls), NO_SIGNAL, owner="k", provider="p", model="m"
    )
    assert marking.scopes == (scope,)
    assert marking.why == ""


# A sequence of (time, class, owner, model, expected scopes) or (time, "ok", owner).
# Owners k1, k2 belong to provider p.
Step = tuple[Any, ...]
SEQUENCES: list[tuple[str, list[Step]]] = [
    (
        "rate limited on two models of one key within the window: the key",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (10, C.RATE_LIMITED, "k1", "fallback", (S.ACCOUNT_MODEL, S.ACCOUNT)),
        ],
    ),
    (
        "the same model twice is one model",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (2, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "two models further apart than the window: no widening",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (61, C.RATE_LIMITED, "k1", "fallback", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "a success on the key in between is counter-evidence: no widening",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, "ok", "k1"),
            (2, C.RATE_LIMITED, "k1", "other", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "a success on another key of the provider does not clear this key's count",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, "ok", "k2"),
            (2, C.RATE_LIMITED, "k1", "other", (S.ACCOUNT_MODEL, S.ACCOUNT)),
        ],
    ),
    (
        "different classes on two models are not the same failure",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, C.RESET, "k1", "fallback", (S.ACCOUNT_MODEL,)),
            (2, C.TIMEOUT, "k1", "third", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "resets on two models of one key: the key",
        [
            (0, C.RESET, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (5, C.RESET, "k1", "fallback", (S.ACCOUNT_MODEL, S.ACCOUNT)),
        ],
    ),
    (
        "silence on two keys of one provider: the provider",
        [
            (0, C.TIMEOUT, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (5, C.TIMEOUT, "k2", "primary", (S.ACCOUNT_MODEL, S.PROVIDER)),
        ],
    ),
    (
        "5xx on two models and two keys: the key and the provider",
        [
            (0, C.UPSTREAM_ERROR, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, C.UPSTREAM_ERROR, "k2", "primary", (S.ACCOUNT_MODEL, S.PROVIDER)),
            (2, C.UPSTREAM_ERROR, "k2", "fallback", (S.ACCOUNT_MODEL, S.ACCOUNT, S.PROVIDER)),
        ],
    ),
    (
        "a success on the provider clears the provider's count",
        [
            (0, C.STREAM_CUT, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, "ok", "k2"),
            (2, C.STREAM_CUT, "k2", "primary", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "rate limits never widen to the provider",
        [
            (0, C.RATE_LIMITED, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, C.RATE_LIMITED, "k2", "primary", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "capacity never widens: another model on the same key is the remedy",
        [
            (0, C.CAPACITY, "k1", "primary", (S.ACCOUNT_MODEL,)),
            (1, C.CAPACITY, "k1", "fallback", (S.ACCOUNT_MODEL,)),
            (2, C.CAPACITY, "k2", "primary", (S.ACCOUNT_MODEL,)),
        ],
    ),
    (
        "overload stays on the provider's model",
        [
            (0, C.OVERLOADED, "k1", "primary", (S.PROVIDER_MODEL,)),
            (1, C.OVERLOADED, "k1", "fallback", (S.PROVIDER_MODEL,)),
        ],
    ),
    (
        "connect failures are the provider's at once",
        [(0, C.CONNECT_FAILED, "k1", "primary", (S.PROVIDER,))],
    ),
]


@pytest.mark.parametrize("steps", [s for _, s in SEQUENCES], ids=[name for name, _ in SEQUENCES])
def test_widening_sequences(steps: list[Step]) -> None:
    clock = FakeClock()
    evidence = ScopeEvidence(window=60.0, clock=clock)
    for i, (at, what, owner, *rest) in enumerate(steps):
        clock.now = float(at)
        if what == "ok":
            evidence.record_success(owner, "p")
            continue
        model, expected = rest
        marking = evidence.mark(verdict(what), NO_SIGNAL, owner=owner, provider="p", model=model)
        assert marking.scopes == expected, f"step {i}: {steps[i]}"
        assert (marking.why != "") == (len(expected) > 1), f"step {i}: {marking.why!r}"


def test_a_widening_says_why() -> None:
    clock = FakeClock()
    evidence = ScopeEvidence(window=60.0, clock=clock)
    evidence.mark(verdict(C.RATE_LIMITED), NO_SIGNAL, owner="k1", provider="p", model="a")
    marking = evidence.mark(verdict(C.RATE_LIMITED), NO_SIGNAL, owner="k1", provider="p", model="b")
    assert marking.scope is S.ACCOUNT
    assert marking.why == "rate_limited on 2 models of this credential within 60s"


OPENAI_PER_MODEL_429 = (
    "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, "
    "Used 29000, Requested 2000. Please try again in 2s."
)

# (message, headers) -> account-wide?
ACCOUNT_WIDE = [
    ("per-model OpenAI text names the model", OPENAI_PER_MODEL_429, {}, False),
    ("Anthropic org limit", "This request would exceed your organization's rate limit.", {}, False),
    ("account-wide wording", "Account-wide rate limit exceeded", {}, True),
    ("across all models", "You have exceeded the request limit across all models.", {}, True),
    ("usage cap", "Your usage cap for this period has been reached", {}, True),
    ("codex usage window spent", "Too many requests", {"x-codex-primary-used-percent": "100"}, True),
    ("codex weekly window spent", "", {"x-codex-secondary-used-percent": "100.0"}, True),
    ("codex window not spent", "", {"x-codex-primary-used-percent": "87.5"}, False),
    ("garbage header", "", {"x-codex-primary-used-percent": "lots"}, False),
    ("nan header", "", {"x-codex-primary-used-percent": "nan"}, False),
]


@pytest.mark.parametrize(
    ("message", "headers", "wide"), [c[1:] for c in ACCOUNT_WIDE], ids=[c[0] for c in ACCOUNT_WIDE]
)
def test_account_wide_evidence(message: str, headers: dict[str, str], wide: bool) -> None:
    signal = Signal(phase=Phase.BEFORE_CONTENT, status=429, message=message, headers=headers)
    assert account_wide(signal) is wide
    marking = ScopeEvidence(clock=FakeClock()).mark(
        Classifier().classify(signal), signal, owner="k", provider="p", model="m"
    )
    assert marking.scopes == ((S.ACCOUNT,) if wide else (S.ACCOUNT_MODEL,))


def test_account_wide_evidence_only_for_rate_limits() -> None:
    signal = Signal(phase=Phase.BEFORE_CONTENT, status=500, message="account-wide outage")
    marking = ScopeEvidence(clock=FakeClock()).mark(
        verdict(C.UPSTREAM_ERROR), signal, owner="k", provider="p", model="m"
    )
    assert marking.scopes == (S.ACCOUNT_MODEL,)


def test_an_operator_scope_is_taken_as_it_is() -> None:
    evidence = ScopeEvidence(clock=FakeClock())
    for model in ("a", "b", "c"):
        marking = evidence.mark(
            verdict(C.RESET, widen=False), NO_SIGNAL, owner="k", provider="p", model=model
        )
        assert marking.scopes == (S.ACCOUNT_MODEL,)
    signal = Signal(phase=Phase.BEFORE_CONTENT, status=429, message="account-wide")
    marking = evidence.mark(
        verdict(C.RATE_LIMITED, widen=False, scope=S.PROVIDER_MODEL),
        signal,
        owner="k",
        provider="p",
        model="m",
    )
    assert marking.scopes == (S.PROVIDER_MODEL,)


def test_successes_cost_nothing_and_memory_is_bounded() -> None:
    clock = FakeClock()
    evidence = ScopeEvidence(clock=clock)
    evidence.record_success("k", "p")
    assert len(evidence) == 0
    for i in range(MAX_KEYS + 100):
        evidence.mark(verdict(C.RESET), NO_SIGNAL, owner=f"k{i}", provider=f"p{i}", model="m")
    assert len(evidence) == 2 * MAX_KEYS
    for i in range(MAX_NAMES * 4):  # wildcard routes forward any name: still bounded per key
        marking = evidence.mark(verdict(C.RESET), NO_SIGNAL, owner="one", provider="p", model=f"m{i}")
    assert marking.scope is S.ACCOUNT
    assert marking.why.startswith(f"reset on {MAX_NAMES} models")


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScopeEvidence(window=0)


# (time, client key, or "ok") -> whether the refusal proves the credential bad
AUTH_SEQUENCES = [
    ("one client once: maybe its own doing", [(0, "team-a", False)]),
    ("two client keys", [(0, "team-a", False), (1, "team-b", True)]),
    ("one client twice in a row", [(0, "team-a", False), (1, "team-a", True)]),
    ("an answer in between clears it", [(0, "team-a", False), (1, "ok", None), (2, "team-a", False)]),
    ("too far apart", [(0, "team-a", False), (61, "team-b", False)]),
    ("the open gateway: two in a row", [(0, "", False), (1, "", True)]),
]


@pytest.mark.parametrize("steps", [s for _, s in AUTH_SEQUENCES], ids=[n for n, _ in AUTH_SEQUENCES])
def test_a_credential_is_disabled_only_on_proof(steps: list[tuple[float, str, bool | None]]) -> None:
    clock = FakeClock()
    evidence = ScopeEvidence(window=60.0, clock=clock)
    for i, (at, client, proves) in enumerate(steps):
        clock.now = at
        if client == "ok":
            evidence.record_success("account:shared", "p")
            continue
        proof = evidence.auth_refused("account:shared", client, f"req-{i}")
        assert (proof is not None) is proves, f"step {i}: {proof!r}"
        if proof is not None:
            assert f"req-{i}" in proof and "refused for client keys" in proof
