"""One try of a request, and the health scopes it touches."""

from __future__ import annotations

from dataclasses import dataclass, field

from spillgate.config.schema import Account, Provider, Route, Timeouts
from spillgate.protocols.apis import Api
from spillgate.resilience.keys import owner_key, scope_key
from spillgate.resilience.types import Scope


@dataclass(frozen=True, slots=True)
class Attempt:
    """A route, the account it uses (if a pool), the upstream model and the API it speaks."""

    route: Route
    provider: Provider
    account: Account | None
    upstream_model: str
    api: Api
    """The upstream API (the client's own, or the one its request is translated to)."""
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(
            self.key(s) for s in (Scope.PROVIDER, Scope.PROVIDER_MODEL, Scope.ACCOUNT, Scope.ACCOUNT_MODEL)
        )
        object.__setattr__(self, "_keys", keys)

    @property
    def timeouts(self) -> Timeouts:
        return self.route.timeouts or self.provider.timeouts

    @property
    def owner(self) -> str:
        """Whose credential this attempt uses."""
        return owner_key(self.account.id if self.account else None, self.provider.name)

    @property
    def identity(self) -> tuple[str, str]:
        return (self.route.label, self.owner)

    def key(self, scope: Scope) -> str:
        """The health key of ``scope`` for this attempt."""
        return scope_key(scope, self.owner, self.provider.name, self.upstream_model)

    def health_keys(self) -> tuple[str, ...]:
        """Every health key that must be healthy for this attempt to be tried."""
        return self._keys

    def describe(self) -> str:
        via = f"account {self.account.id}" if self.account else f"provider {self.provider.name}"
        return f"route {self.route.label} ({via}, upstream model {self.upstream_model})"
