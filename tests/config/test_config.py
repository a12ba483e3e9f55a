"""The config loader: the documented shape loads; every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from spillgate.admin.params import duration as admin_duration
from spillgate.config import ConfigError, load_settings, parse_settings
from spillgate.config.durations import parse_duration

EXAMPLE = """
listen: 127.0.0.1:8080
client_keys:
  - {name: team, hash: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
providers:
  openai:   {protocol: openai,    base_url: https://api.openai.com/v1,
             timeouts: {connect: 5s, first_token: 20s, stream_idle: 60s}}
  claude:   {protocol: anthropic, base_url: https://api.anthropic.com}
  local:    {protocol: openai,    base_url: http://127.0.0.1:11434/v1}
accounts:
  - {id: oa-1, provider: openai, api_key: "${OPENAI_KEY_1}", max_concurrency: 4}
  - {id: oa-2, provider: openai, api_key: "${OPENAI_KEY_2}"}
models:
  gpt-5.3-codex:
    routes:
      - {accounts: [oa-1, oa-2], model: gpt-5.3-codex}
      - {provider: local, model: qwen2.5-coder, context_window: 32768}
  gpt-5-codex: {alias_of: gpt-5.3-codex}
"""

ENV = {"OPENAI_KEY_1": "sk-one-secret", "OPENAI_KEY_2": "sk-two-secret"}


def test_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "spillgate.yaml"
    path.write_text(EXAMPLE)
    s = load_settings(path, env=ENV)
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.client_keys[0].name == "team"
    openai = s.providers["openai"]
    assert (openai.timeouts.connect, openai.timeouts.first_token, openai.timeouts.stream_idle) == (5, 20, 60)
    assert s.providers["claude"].protocol == "anthropic"
    assert s.accounts["oa-1"].api_key.reveal() == "sk-one-secret"
    assert s.accounts["oa-1"].max_concurrency == 4
    assert s.accounts["oa-2"].max_concurrency is None
    routes = s.models["gpt-5.3-codex"].routes
    assert routes[0].accounts == ("oa-1", "oa-2") and routes[0].provider == "openai"
    assert routes[1].provider == "local" and routes[1].context_window == 32768
    assert [r.label for r in routes] == ["gpt-5.3-codex[0]", "gpt-5.3-codex[1]"]
    alias, replacement = s.resolve("gpt-5-codex")
    assert alias is s.models["gpt-5.3-codex"] and replacement == "gpt-5.3-codex"
    assert s.models["gpt-5.3-codex"].deprecated_names == ("gpt-5-codex",)


def test_secrets_never_print() -> None:
    s = parse_settings(yaml.safe_load(EXAMPLE), env=ENV)
    text = repr(s) + str(s.accounts)
    assert "sk-one-secret" not in text and "sk-two-secret" not in text
    assert "***" in text


def _base() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE)  # type: ignore[no-any-return]


def _set(tree: dict[str, Any], dotted: list[Any], value: Any) -> dict[str, Any]:
    node: Any = tree
    for key in dotted[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[dotted[-1]]
    else:
        node[dotted[-1]] = value
    return tree


_DELETE = object()

# (where, new value, expected start of the message, expected fragment)
BAD_CONFIGS = [
    (["listen"], "8080", "listen:", "HOST:PORT"),
    (["surprise"], 1, "config.surprise: unknown key", "allowed here"),
    (["providers", "openai", "protocol"], "grpc", "providers.openai.protocol:", "'openai' or 'anthropic'"),
    (["providers", "openai", "base_url"], "api.openai.com", "providers.openai.base_url:", "http"),
    (["providers", "openai", "timeouts", "connect"], "soon", "providers.openai.timeouts.connect:", "5s"),
    (["providers", "openai", "timeouts", "connect"], "0s", "providers.openai.timeouts.connect:", "positive"),
    (["providers", "openai", "timeout"], {}, "providers.openai.timeout: unknown key", "timeouts"),
    (["providers", "openai", "base_url"], _DELETE, "providers.openai.base_url: required", ""),
    (["accounts", 0, "provider"], "azure", "accounts[0].provider: unknown provider 'azure'", "known: claude"),
    (["accounts", 1, "id"], "oa-1", "accounts[1].id: duplicate account id", ""),
    (["accounts", 0, "max_concurrency"], 0, "accounts[0].max_concurrency: must be at least 1", ""),
    (["accounts", 0, "max_concurrency"], "4", "accounts[0].max_concurrency: expected an integer", ""),
    (
        ["accounts", 0, "api_key"],
        "${NOT_SET_ANYWHERE}",
        "accounts[0].api_key:",
        "NOT_SET_ANYWHERE is not set",
    ),
    (
        ["models", "gpt-5.3-codex", "routes", 0, "accounts", 1],
        "oa-9",
        "models.gpt-5.3-codex.routes[0].accounts[1]: unknown account 'oa-9'",
        "known: oa-1, oa-2",
    ),
    (
        ["models", "gpt-5.3-codex", "routes", 1, "provider"],
        "nowhere",
        "models.gpt-5.3-codex.routes[1].provider: unknown provider",
        "",
    ),
    (
        ["models", "gpt-5.3-codex", "routes", 1, "provider"],
        _DELETE,
        "models.gpt-5.3-codex.routes[1]: a route names either 'accounts'",
        "",
    ),
    (["models", "gpt-5.3-codex", "routes"], [], "models.gpt-5.3-codex.routes:", "at least one route"),
    (["models", "gpt-5.3-codex", "routes", 0, "weight"], 0, "models.gpt-5.3-codex.routes[0].weight:", ""),
    (
        ["models", "gpt-5-codex", "alias_of"],
        "gpt-9",
        "models.gpt-5-codex.alias_of: unknown model 'gpt-9'",
        "",
    ),
    (["client_keys", 0, "hash"], "plaintext", "client_keys[0].hash:", "spillgate keys hash"),
    (
        ["models", "gpt-5.3-codex", "routes", 0, "provider"],
        "local",
        "models.gpt-5.3-codex.routes[0].provider: 'local' but the pool's accounts belong to 'openai'",
        "",
    ),
]


@pytest.mark.parametrize(("where", "value", "starts", "fragment"), BAD_CONFIGS)
def test_bad_config_names_key_and_problem(where: list[Any], value: Any, starts: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(_set(_base(), where, value), env=ENV)
    message = str(info.value)
    assert message.startswith(starts), message
    assert fragment in message
    assert "sk-one-secret" not in message


def test_pool_must_serve_the_route_model() -> None:
    tree = _set(_base(), ["accounts", 0, "models"], ["gpt-4o"])
    _set(tree, ["accounts", 1, "models"], ["gpt-4o"])
    with pytest.raises(
        ConfigError, match=r"routes\[0\]\.model: no account in the pool lists 'gpt-5.3-codex'"
    ):
        parse_settings(tree, env=ENV)


def test_env_default_and_unreadable_file(tmp_path: Path) -> None:
    tree = _set(_base(), ["accounts", 0, "api_key"], "${MISSING_KEY:-fallback-key}")
    assert parse_settings(tree, env=ENV).accounts["oa-1"].api_key.reveal() == "fallback-key"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(bad)


def test_priority_and_route_timeouts_override() -> None:
    tree = _base()
    routes = tree["models"]["gpt-5.3-codex"]["routes"]
    routes[0]["priority"] = 5
    routes[1]["timeouts"] = {"first_token": "5m"}
    s = parse_settings(tree, env=ENV)
    ordered = s.models["gpt-5.3-codex"].routes
    assert [r.provider for r in ordered] == ["local", "openai"]
    assert ordered[0].timeouts is not None and ordered[0].timeouts.first_token == 300
    assert ordered[0].timeouts.connect == s.providers["local"].timeouts.connect


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        (3, 3.0),
        ("1.5s", 1.5),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("10S", 10.0),
        (" 90 s ", 90.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    """One grammar for config values and the admin API's query parameters."""
    assert parse_duration(text) == seconds
    if isinstance(text, str):
        assert admin_duration(text, "window") == seconds


@pytest.mark.parametrize("text", ["", "fast", "-1s", True, "5 parsecs"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_wildcard_model_passes_the_requested_name() -> None:
    tree = {
        "providers": {
            "openai": {"protocol": "openai", "base_url": "https://api.openai.com/v1", "api_key": "k"}
        },
        "models": {"*": {"routes": [{"provider": "openai", "model": "*"}]}},
    }
    s = parse_settings(tree, env={})
    alias, replacement = s.resolve("gpt-anything")
    assert alias is not None and replacement is None
    assert alias.routes[0].upstream_model("gpt-anything") == "gpt-anything"
