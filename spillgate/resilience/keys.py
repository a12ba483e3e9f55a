"""Health keys: the names of the scopes on the health board, built here and nowhere else.

``account:<id>`` (an account's credential), ``provider-key:<provider>`` (a provider's own
credential, for routes without accounts), ``<owner>|<upstream model>`` (a model on a
credential), ``provider_model:<provider>|<upstream model>`` and ``provider:<provider>``.
"""

from __future__ import annotations

from spillgate.resilience.types import Scope


def account_key(account_id: str) -> str:
    return f"account:{account_id}"


def provider_key(provider: str) -> str:
    """The scope of a provider's own credential (routes without accounts)."""
    return f"provider-key:{provider}"


def owner_key(account_id: str | None, provider: str) -> str:
    """Whose credential: the account's, else the provider's own."""
    return account_key(account_id) if account_id is not None else provider_key(provider)


def owner_model_key(owner: str, model: str) -> str:
    """A model on one credential (``account:oa-1|gpt-5``)."""
    return f"{owner}|{model}"


def provider_model_key(provider: str, model: str) -> str:
    return f"provider_model:{provider}|{model}"


def provider_scope_key(provider: str) -> str:
    return f"provider:{provider}"


def scope_key(scope: Scope, owner: str, provider: str, model: str) -> str:
    """The key ``scope`` marks for an attempt of ``model`` at ``provider`` on ``owner``'s
    credential ("" for the request scope, which marks nothing)."""
    if scope is Scope.ACCOUNT:
        return owner
    if scope is Scope.ACCOUNT_MODEL:
        return owner_model_key(owner, model)
    if scope is Scope.PROVIDER_MODEL:
        return provider_model_key(provider, model)
    if scope is Scope.PROVIDER:
        return provider_scope_key(provider)
    return ""
