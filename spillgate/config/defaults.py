"""The embedded defaults: what ``spillgate serve`` runs with no config file."""

from __future__ import annotations

from collections.abc import Mapping

from spillgate.config.loader import DEFAULT_USAGE_DSN, parse_settings
from spillgate.config.schema import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"

DEMO_MODEL = "demo"
DEMO_AT_CAPACITY = "demo-at-capacity"
DEMO_HEALTHY = "demo-healthy"


def credential_defaults(env: Mapping[str, str]) -> Settings | None:
    """Official OpenAI / Anthropic providers from OPENAI_API_KEY / ANTHROPIC_API_KEY.

    Any model name passes through to the provider that speaks the endpoint's protocol.
    ``None`` when neither key is set (the caller then starts the demo).
    """
    providers: dict[str, object] = {}
    routes: list[dict[str, object]] = []
    if env.get("OPENAI_API_KEY"):
        providers["openai"] = {
            "protocol": "openai",
            "base_url": OPENAI_BASE_URL,
            "api_key": "${OPENAI_API_KEY}",
        }
        routes.append({"provider": "openai", "model": "*"})
    if env.get("ANTHROPIC_API_KEY"):
        providers["anthropic"] = {
            "protocol": "anthropic",
            "base_url": ANTHROPIC_BASE_URL,
            "api_key": "${ANTHROPIC_API_KEY}",
        }
        routes.append({"provider": "anthropic", "model": "*"})
    if not providers:
        return None
    raw = {
        "listen": "127.0.0.1:8080",
        "providers": providers,
        "models": {"*": {"routes": routes}},
        "usage": {"dsn": DEFAULT_USAGE_DSN},
    }
    return parse_settings(raw, env=env, source="defaults")


def demo_settings(openai_base_url: str, anthropic_base_url: str) -> Settings:
    """Model ``demo`` over the built-in fake upstream: the first route is at capacity."""
    raw = {
        "listen": "127.0.0.1:8080",
        "usage": {"dsn": DEFAULT_USAGE_DSN},
        "providers": {
            "demo-openai": {"protocol": "openai", "base_url": openai_base_url},
            "demo-anthropic": {"protocol": "anthropic", "base_url": anthropic_base_url},
        },
        "models": {
            DEMO_MODEL: {
                "routes": [
                    {"provider": "demo-openai", "model": DEMO_AT_CAPACITY},
                    {"provider": "demo-openai", "model": DEMO_HEALTHY},
                    {"provider": "demo-anthropic", "model": DEMO_AT_CAPACITY},
                    {"provider": "demo-anthropic", "model": DEMO_HEALTHY},
                ]
            }
        },
    }
    return parse_settings(raw, env={}, source="demo")
