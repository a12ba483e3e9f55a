"""The client-facing APIs and how each maps onto an upstream provider.

What each API is on the wire lives in its adapter (``protocols/adapter.py`` and one module per
API); the properties here read it from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from spillgate.protocols.adapter import WireAdapter

ProviderProtocol = Literal["openai", "anthropic"]
"""The wire protocol a provider speaks (``providers.<name>.protocol``)."""

DEFAULT_FAMILY: ProviderProtocol = "openai"
"""The error shape of a path no API claims."""


class Api(Enum):
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC_MESSAGES = "anthropic-messages"

    @property
    def adapter(self) -> WireAdapter:
        """Everything this API is on the wire (see ``protocols/adapter.py``)."""
        found = _ADAPTERS.get(self)
        if found is None:
            from spillgate.protocols.adapter import adapter_for  # the adapters import this module

            found = _ADAPTERS[self] = adapter_for(self)
        return found

    @property
    def family(self) -> ProviderProtocol:
        """The provider protocol that serves this API (and the shape of its errors)."""
        return self.adapter.family

    @property
    def upstream_suffix(self) -> str:
        """Appended to a provider's base URL (OpenAI base URLs end in /v1, Anthropic's do not)."""
        return self.adapter.upstream_suffix

    @property
    def title(self) -> str:
        return self.adapter.title


def api_names() -> tuple[Api, ...]:
    """Every API, in the order a provider's defaults list them."""
    return tuple(Api)


def config_name(api: Api) -> str:
    """The API's word in the config, the doctor's advice and the metrics: ``chat``,
    ``responses``, ``messages``."""
    return api.adapter.short_name


def api_named(word: str) -> Api | None:
    """The API a config word names: ``chat`` or the code's own ``openai-chat``, any case."""
    text = word.strip().lower()
    for api in Api:
        if text in (api.value, api.adapter.short_name):
            return api
    return None


_ADAPTERS: dict[Api, WireAdapter] = {}
"""Each API's adapter once looked up (``Api.adapter`` is on the request path)."""


class _Routes(Mapping[str, Api]):
    """Client path -> API, gathered from the adapters' ``client_paths`` on first use."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[str, Api] | None = None

    def _routes(self) -> dict[str, Api]:
        table = self._table
        if table is None:
            from spillgate.protocols.adapter import adapters

            table = {path: a.api for a in adapters() for path in a.client_paths}
            self._table = table
        return table

    def __getitem__(self, path: str) -> Api:
        return self._routes()[path]

    def get(self, path: str, default: Api | None = None) -> Api | None:  # type: ignore[override]
        return self._routes().get(path, default)

    def __contains__(self, path: object) -> bool:
        return path in self._routes()

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes())

    def __len__(self) -> int:
        return len(self._routes())

    def __repr__(self) -> str:
        return f"ROUTES({self._routes()!r})"


ROUTES: Mapping[str, Api] = _Routes()
"""``/v1/chat/completions`` -> Api.OPENAI_CHAT, … (also without ``/v1`` where a client's base URL
lacks it)."""


def family_for_path(path: str) -> ProviderProtocol:
    """The error shape to use for a request to ``path`` (Anthropic only under /v1/messages)."""
    for prefix, api in ROUTES.items():
        if path.startswith(prefix):
            return api.family
    return DEFAULT_FAMILY
