"""What the OpenAI APIs (Chat Completions, Responses) share: credentials, base URLs, error shape."""

from __future__ import annotations

from collections.abc import Mapping

from spillgate.protocols.adapter import WireAdapter
from spillgate.protocols.apis import ProviderProtocol


class OpenAIFamily(WireAdapter):
    """An API served by providers of protocol ``openai``."""

    family: ProviderProtocol = "openai"
    provider_base_path = "/v1"
    models_suffix = "/models"
    capacity_status = 503

    def auth_headers(self, secret: str | None, client_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        return [] if secret is None else [("authorization", "Bearer " + secret)]
