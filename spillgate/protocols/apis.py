"""The three client-facing APIs and how each maps onto an upstream provider."""

from __future__ import annotations

from enum import Enum
from typing import Literal

ProviderProtocol = Literal["openai", "anthropic"]
"""The wire protocol a provider speaks (``providers.<name>.protocol``)."""


class Api(Enum):
    OPENAI_CHAT = "openai-chat"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC_MESSAGES = "anthropic-messages"

    @property
    def family(self) -> ProviderProtocol:
        """The provider protocol that serves this API (and the shape of its errors)."""
        return "anthropic" if self is Api.ANTHROPIC_MESSAGES else "openai"

    @property
    def upstream_suffix(self) -> str:
        """Appended to a provider's base URL (OpenAI base URLs end in /v1, Anthropic's do not)."""
        return _SUFFIX[self]

    @property
    def title(self) -> str:
        return _TITLE[self]


_SUFFIX = {
    Api.OPENAI_CHAT: "/chat/completions",
    Api.OPENAI_RESPONSES: "/responses",
    Api.ANTHROPIC_MESSAGES: "/v1/messages",
}
_TITLE = {
    Api.OPENAI_CHAT: "OpenAI Chat Completions",
    Api.OPENAI_RESPONSES: "OpenAI Responses",
    Api.ANTHROPIC_MESSAGES: "Anthropic Messages",
}

ROUTES: dict[str, Api] = {
    "/v1/chat/completions": Api.OPENAI_CHAT,
    "/v1/responses": Api.OPENAI_RESPONSES,
    "/v1/messages": Api.ANTHROPIC_MESSAGES,
    # Clients configured with a base URL that lacks /v1.
    "/chat/completions": Api.OPENAI_CHAT,
    "/responses": Api.OPENAI_RESPONSES,
}


def family_for_path(path: str) -> ProviderProtocol:
    """The error shape to use for a request to ``path`` (Anthropic only under /v1/messages)."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"
