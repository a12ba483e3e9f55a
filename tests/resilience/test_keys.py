"""Health keys are built in one module; the dispatcher's and the admin API's are the same strings."""

from __future__ import annotations

import pytest

from spillgate.resilience.keys import owner_key, scope_key
from spillgate.resilience.types import Scope


@pytest.mark.parametrize(
    ("scope", "account", "expected"),
    [
        (Scope.ACCOUNT, "oa-1", "account:oa-1"),
        (Scope.ACCOUNT_MODEL, "oa-1", "account:oa-1|gpt-5"),
        (Scope.PROVIDER_MODEL, "oa-1", "provider_model:openai|gpt-5"),
        (Scope.PROVIDER, "oa-1", "provider:openai"),
        (Scope.REQUEST, "oa-1", ""),
        (Scope.ACCOUNT, None, "provider-key:openai"),
        (Scope.ACCOUNT_MODEL, None, "provider-key:openai|gpt-5"),
    ],
)
def test_scope_keys(scope: Scope, account: str | None, expected: str) -> None:
    assert scope_key(scope, owner_key(account, "openai"), "openai", "gpt-5") == expected
