"""Which scope a failure marks: the narrowest its evidence supports, widened only on more evidence.

The usual remedy for "Selected model is at capacity" is another model on the same key, so one
model's failure must never block the credential's other models. The table below (data, like the
classifier's) says, per error class:

- ``scope``: what one failure marks (``account_model``: this model on this credential);
- ``over_models``: the same class on :data:`WIDEN_AT` or more distinct models of one credential
  within the window, with no request on that credential answered since, marks the credential
  (``account``) as well;
- ``over_accounts``: the same class on :data:`WIDEN_AT` or more credentials of one provider within
  the window, with no request on that provider answered since, marks the provider as well;
- ``account_wide``: a failure whose body or headers say the limit is the credential's own (an
  account-wide limit, a spent usage window) marks the credential at once.

An auth refusal (401 / 403) disables a credential only on proof (:meth:`ScopeEvidence.auth_refused`):
refusals on requests of two client keys, or two in a row for one, so that nothing one client
sends can take a shared account away from everyone.

A success is counter-evidence: any request answered on a credential (or provider) forgets the
failures counted against it, so a healthy fallback model on the same key keeps the key open.

An operator rule that names a scope is taken as it is (``Verdict.widen`` is false).

Pure logic on an injected clock; memory bounded by :data:`MAX_KEYS` credentials / providers and
:data:`MAX_NAMES` models / credentials each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from spillgate.resilience.types import ErrorClass, Scope, Signal, Verdict
from spillgate.textutil import plural

WIDEN_AT = 2
"""Distinct models (or credentials) failing the same way that widen the scope."""
MAX_KEYS = 4096
"""Credentials (and providers) with failure evidence kept at once; the oldest go first."""
MAX_NAMES = 16
"""Models per credential (credentials per provider) kept per class; the oldest go first."""


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """One row of the scope table."""

    error_class: ErrorClass
    scope: Scope
    over_models: bool = False
    """Widen to the credential when several of its models fail this way."""
    over_accounts: bool = False
    """Widen to the provider when several of its credentials fail this way."""
    account_wide: bool = False
    """The credential at once when the failure says the limit is the credential's."""


_C, _S = ErrorClass, Scope

SCOPE_RULES: tuple[ScopeRule, ...] = (
    ScopeRule(_C.CAPACITY, _S.ACCOUNT_MODEL),
    ScopeRule(_C.OVERLOADED, _S.PROVIDER_MODEL),
    ScopeRule(_C.RATE_LIMITED, _S.ACCOUNT_MODEL, over_models=True, account_wide=True),
    ScopeRule(_C.QUOTA_EXHAUSTED, _S.ACCOUNT),
    ScopeRule(_C.AUTH, _S.ACCOUNT),
    ScopeRule(_C.CONTEXT_TOO_LONG, _S.REQUEST),
    ScopeRule(_C.CONTENT_POLICY, _S.REQUEST),
    ScopeRule(_C.BAD_REQUEST, _S.REQUEST),
    ScopeRule(_C.NOT_FOUND, _S.ACCOUNT_MODEL),
    ScopeRule(_C.UPSTREAM_ERROR, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
    ScopeRule(_C.CONNECT_FAILED, _S.PROVIDER),
    ScopeRule(_C.RESET, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
    ScopeRule(_C.TIMEOUT, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
    ScopeRule(_C.STREAM_CUT, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
    ScopeRule(_C.STREAM_STALL, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
    ScopeRule(_C.STREAM_MALFORMED, _S.ACCOUNT_MODEL, over_models=True, over_accounts=True),
)
"""The scope table: one row per error class."""

RULES: Mapping[ErrorClass, ScopeRule] = MappingProxyType({rule.error_class: rule for rule in SCOPE_RULES})
DEFAULT_SCOPE: Mapping[ErrorClass, Scope] = MappingProxyType(
    {rule.error_class: rule.scope for rule in SCOPE_RULES}
)
"""What one failure of each class marks when its rule names no scope."""

ACCOUNT_WIDE_KEYWORDS: tuple[str, ...] = (
    "account-wide",
    "account wide",
    "account-level",
    "per account",
    "per-account",
    "across all models",
    "for all models",
    "all of your models",
    "usage cap",
)
"""Wording (lower case) that puts a limit on the whole credential rather than on one model.
OpenAI's per-model 429 ("Rate limit reached for gpt-… in organization …") matches none of it."""

ACCOUNT_WIDE_HEADERS: tuple[str, ...] = ("x-codex-primary-used-percent", "x-codex-secondary-used-percent")
"""Usage-window headers of the Codex backend: at 100 or more the credential's window is spent,
for every model."""


def account_wide(signal: Signal) -> bool:
    """Whether a failure's message or headers say the limit is the whole credential's."""
    message = signal.message.lower()
    if any(keyword in message for keyword in ACCOUNT_WIDE_KEYWORDS):
        return True
    for name in ACCOUNT_WIDE_HEADERS:
        value = signal.headers.get(name)
        if value is None:
            continue
        try:
            used = float(value.strip())
        except ValueError:
            continue
        if math.isfinite(used) and used >= 100:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Marking:
    """What one failure marks: ``scopes`` narrowest first; the last is the widest."""

    scopes: tuple[Scope, ...]
    why: str = ""
    """Why it was widened beyond the table's scope ("" when it was not)."""

    @property
    def scope(self) -> Scope:
        return self.scopes[-1]


_Evidence = dict[str, dict[ErrorClass, dict[str, float]]]
"""owner (or provider) -> class -> model (or owner) -> when it last failed."""


class ScopeEvidence:
    """Failures counted per credential and provider, to widen a scope only on more evidence."""

    __slots__ = ("_auth", "_clock", "_owners", "_providers", "window")

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not window > 0:
            raise ValueError(f"scope evidence window must be positive, got {window!r}")
        self.window = window
        self._clock = clock
        self._owners: _Evidence = {}
        self._providers: _Evidence = {}
        self._auth: dict[str, list[tuple[str, str, float]]] = {}
        """owner -> its refusals since it last answered: (client key, request id, when)."""

    def __len__(self) -> int:
        """Credentials and providers holding evidence."""
        return len(self._owners) + len(self._providers)

    def mark(self, verdict: Verdict, signal: Signal, *, owner: str, provider: str, model: str) -> Marking:
        """The scopes one failure of ``model`` on credential ``owner`` of ``provider`` marks."""
        base = verdict.scope
        rule = RULES.get(verdict.error_class)
        if not verdict.widen or rule is None or base is Scope.REQUEST:
            return Marking((base,))
        if rule.account_wide and base is Scope.ACCOUNT_MODEL and account_wide(signal):
            return Marking((Scope.ACCOUNT,), "the upstream says the limit is the credential's")
        scopes = [base]
        why = ""
        now = self._clock()
        cls = verdict.error_class.value
        if rule.over_models and base is Scope.ACCOUNT_MODEL:
            models = self._note(self._owners, owner, verdict.error_class, model, now)
            if models >= WIDEN_AT:
                scopes.append(Scope.ACCOUNT)
                why = f"{cls} on {plural(models, 'model')} of this credential within {self.window:g}s"
        if rule.over_accounts and base in (Scope.ACCOUNT_MODEL, Scope.ACCOUNT):
            owners = self._note(self._providers, provider, verdict.error_class, owner, now)
            if owners >= WIDEN_AT:
                scopes.append(Scope.PROVIDER)
                why = f"{cls} on {plural(owners, 'credential')} of this provider within {self.window:g}s"
        return Marking(tuple(scopes), why)

    def record_success(self, owner: str, provider: str) -> None:
        """A request on ``owner`` (of ``provider``) was answered: forget the failures counted
        against both. Free when nothing is counted (the usual case)."""
        if self._owners:
            self._owners.pop(owner, None)
        if self._providers:
            self._providers.pop(provider, None)
        if self._auth:
            self._auth.pop(owner, None)

    def auth_refused(self, owner: str, client: str, request_id: str) -> str | None:
        """The upstream refused ``owner``'s credential on a request of ``client`` (a client key's
        name, "" without keys). Whether that proves the credential bad — then the evidence, to
        disable it — or may be the client's doing (one client, once): ``None``, the request goes
        elsewhere and nothing is marked. Proof: refusals for two client keys, or two in a row for
        one, within the window and with nothing answered on the credential in between."""
        now = self._clock()
        refusals = [r for r in self._auth.pop(owner, []) if r[2] >= now - self.window]
        refusals.append((client, request_id, now))
        while len(self._auth) >= MAX_KEYS:
            del self._auth[next(iter(self._auth))]
        self._auth[owner] = refusals[-MAX_NAMES:]
        clients = list(dict.fromkeys(c for c, _, _ in refusals))
        if len(clients) < 2 and len(refusals) < 2:
            return None
        who = ", ".join(c or "(no client key)" for c in clients)
        requests = ", ".join(r for _, r, _ in refusals[-4:])
        return f"refused for client keys {who} (requests {requests})"

    def _note(self, table: _Evidence, key: str, cls: ErrorClass, name: str, now: float) -> int:
        """Record that ``name`` failed with ``cls`` under ``key``; how many distinct names did
        within the window."""
        classes = table.pop(key, None)
        if classes is None:
            classes = {}
            while len(table) >= MAX_KEYS:
                del table[next(iter(table))]
        table[key] = classes  # most recently failed last
        names = classes.setdefault(cls, {})
        names.pop(name, None)
        names[name] = now
        horizon = now - self.window
        for old in [n for n, t in names.items() if t < horizon]:
            del names[old]
        while len(names) > MAX_NAMES:
            del names[next(iter(names))]
        return len(names)
