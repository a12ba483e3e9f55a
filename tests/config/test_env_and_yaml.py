"""Config mistakes about environment variables, listen addresses and YAML syntax name what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spillgate.config import ConfigError, load_settings, parse_settings
from spillgate.config.listen import parse_listen


def _tree(**overrides: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "providers": {
            "openai": {
                "protocol": "openai",
                "base_url": "https://api.openai.com/v1",
                "headers": {"x-team": "${TEAM}"},
            }
        },
        "accounts": [
            {"id": "oa-1", "provider": "openai", "api_key": "${KEY_ONE}"},
            {"id": "oa-2", "provider": "openai", "api_key": "${KEY_TWO}"},
        ],
        "models": {"m": {"routes": [{"accounts": ["oa-1", "oa-2"], "model": "gpt-x"}]}},
    }
    tree.update(overrides)
    return tree


ENV = {"KEY_ONE": "sk-one", "KEY_TWO": "sk-two", "TEAM": "core"}


def _error(tree: dict[str, Any], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_settings(tree, env=env)
    return str(info.value)


def test_one_missing_variable_keeps_the_usual_message() -> None:
    env = {k: v for k, v in ENV.items() if k != "KEY_TWO"}
    assert _error(_tree(), env) == "accounts[1].api_key: environment variable KEY_TWO is not set"


def test_every_missing_variable_is_named_in_one_error() -> None:
    tree = _tree(admin_token="${ADMIN}", listen="${HOST:-127.0.0.1}:8080")
    message = _error(tree, {"KEY_ONE": "sk-one"})
    assert message.startswith("providers.openai.headers.x-team: environment variable TEAM is not set")
    assert "KEY_TWO (accounts[1].api_key)" in message and "ADMIN (admin_token)" in message
    assert "HOST" not in message  # it has a default
    assert "sk-one" not in message


def test_a_variable_missing_twice_is_named_once() -> None:
    tree = _tree()
    tree["accounts"][1]["api_key"] = "${KEY_ONE}"
    message = _error(tree, {"TEAM": "core"})
    assert message == "accounts[0].api_key: environment variable KEY_ONE is not set"


@pytest.mark.parametrize(
    ("api_key", "env", "reason"),
    [
        ("${KEY_ONE}", {"KEY_ONE": ""}, "(environment variable KEY_ONE is empty)"),
        ("${UNSET:-}", {}, "(environment variable UNSET is not set and its default is empty)"),
    ],
)
def test_an_empty_credential_names_its_variable(api_key: str, env: dict[str, str], reason: str) -> None:
    tree = _tree()
    tree["accounts"][0]["api_key"] = api_key
    message = _error(tree, {**ENV, **env})
    assert message == f"accounts[0].api_key: the credential is empty {reason}"


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("providers:\n  openai: {protocol: openai\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=ENV)
    message = str(info.value)
    assert message.startswith(f"{path} is not valid YAML:")
    assert f'in "{path}", line 2' in message
    assert "<unicode string>" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:65535", ("::1", 65535)),
        (":1", ("127.0.0.1", 1)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1:65536", "port must be between 0 and 65535"),
        ("127.0.0.1:99999", "got 99999"),
        ("8080", "expected HOST:PORT"),
        ("host:-1", "expected HOST:PORT"),
        ("host:", "expected HOST:PORT"),
    ],
)
def test_bad_listen_in_the_config_and_the_shared_parser(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_listen(text)
    message = _error(_tree(listen=text), ENV)
    assert message.startswith("listen: ") and fragment in message
