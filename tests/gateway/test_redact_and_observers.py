"""The redactor's table, and which observers a gateway subscribes (metrics off, token limits)."""

from __future__ import annotations

import pytest

from spillgate.config.loader import parse_settings
from spillgate.config.schema import ClientKey, KeyLimits
from spillgate.gateway.core import Gateway
from spillgate.gateway.redact import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nothing here", "nothing here"),
        ("Incorrect API key provided: sk-live-123456789", f"Incorrect API key provided: {MASK}"),
        ("sk-live-123456789 and sk-live-123456789", f"{MASK} and {MASK}"),
        ("sk-live-123456789-extended", MASK),  # the longer secret is masked whole
        ("short x stays", "short x stays"),  # values under 8 characters are not searched for
    ],
)
def test_redactor(text: str, expected: str) -> None:
    redact = Redactor(["sk-live-123456789", "sk-live-123456789-extended", "x"])
    assert redact.text(text) == expected
    assert redact.body(text.encode()) == expected.encode()


def test_redactor_knows_every_configured_credential() -> None:
    settings = parse_settings(
        {
            "admin_token": "admin-token-abcdef",
            "providers": {
                "p": {
                    "protocol": "openai",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "provider-key-abcdef",
                    "headers": {"x-custom-token": "header-token-abcdef", "anthropic-version": "2023-06-01"},
                }
            },
            "accounts": [{"id": "a", "provider": "p", "api_key": "account-key-abcdef"}],
            "models": {"m": {"routes": [{"provider": "p", "model": "x"}]}},
        },
        env={},
    )
    redact = Redactor.for_settings(settings)
    text = "admin-token-abcdef provider-key-abcdef header-token-abcdef account-key-abcdef 2023-06-01"
    assert redact.text(text) == f"{MASK} {MASK} {MASK} {MASK} 2023-06-01"


def _settings(**extra: object) -> object:
    return parse_settings(
        {
            "providers": {"p": {"protocol": "openai", "base_url": "http://127.0.0.1:9"}},
            "models": {"m": {"routes": [{"provider": "p", "model": "x"}]}},
            **extra,
        },
        env={},
    )


def test_metrics_off_builds_no_events_unless_a_key_counts_tokens() -> None:
    gateway = Gateway(_settings(metrics="off"))  # type: ignore[arg-type]
    assert not gateway.events.active  # nothing listens: request events are not even built
    gateway.set_stored_keys((ClientKey("k", "0" * 64, KeyLimits(rpm=5)),), any_made=True)
    assert not gateway.events.active  # requests per minute need no events
    gateway.set_stored_keys((ClientKey("k", "0" * 64, KeyLimits(tpm=500)),), any_made=True)
    assert gateway.events.active  # tokens per minute do
    gateway.set_stored_keys((), any_made=True)
    assert not gateway.events.active
    assert Gateway(_settings()).events.active  # type: ignore[arg-type]  # metrics on by default


def test_metrics_setting_is_on_or_off() -> None:
    from spillgate.config.loader import ConfigError

    with pytest.raises(ConfigError, match="metrics: expected on or off"):
        _settings(metrics="maybe")
