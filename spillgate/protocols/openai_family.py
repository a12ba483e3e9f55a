"""What the OpenAI APIs (Chat Completions, Responses) share: credentials, base URLs, error shape."""

from __future__ import annotations

from collections.abc import Mapping

from spillgate.protocols.adapter import WireAdapter
from spillgate.protocols.apis import ProviderProtocol

REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
"""OpenAI reasoning models (a case-insensitive prefix of the name, after any ``vendor/``): they take
``max_completion_tokens`` and a reasoning effort, and refuse sampling knobs."""


def is_openai_reasoning_model(model: str) -> bool:
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(REASONING_PREFIXES) or "codex" in name


class OpenAIFamily(WireAdapter):
    """An API served by providers of protocol ``openai``."""

    family: ProviderProtocol = "openai"
    provider_base_path = "/v1"
    models_suffix = "/models"
    capacity_status = 503

    def auth_headers(self, secret: str | None, client_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        return [] if secret is None else [("authorization", "Bearer " + secret)]
