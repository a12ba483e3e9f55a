"""``${NAME}`` and ``${NAME:-default}`` in config strings, and the credentials they usually fill."""

from __future__ import annotations

import re
from collections.abc import Mapping

from spillgate.config.errors import ConfigError
from spillgate.config.schema import Secret
from spillgate.validation import require_str

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnvError(ConfigError):
    """``${NAME}`` without a default names a variable that is not set."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(f"{path}: environment variable {name} is not set")
        self.path = path
        self.name = name


def expand(text: str, path: str, env: Mapping[str, str]) -> str:
    """``text`` with its references replaced; :class:`MissingEnvError` for an unset one."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingEnvError(path, name)

    return _ENV_REF.sub(replace, text)


def expanded_str(value: object, path: str, env: Mapping[str, str]) -> str:
    """A non-empty string, expanded."""
    return expand(require_str(value, path), path, env)


def secret(value: object, path: str, env: Mapping[str, str]) -> Secret:
    """A credential: a non-empty string once expanded (its text never shows in a message)."""
    raw = require_str(value, path)
    text = expand(raw, path, env)
    if not text:
        raise ConfigError(f"{path}: the credential is empty{_empty_source(raw, env)}")
    return Secret(text)


def _empty_source(raw: str, env: Mapping[str, str]) -> str:
    """Why an expanded credential is empty: `` (environment variable KEY is empty)``."""
    reasons = [
        f"environment variable {m.group(1)} is empty"
        if m.group(1) in env
        else f"environment variable {m.group(1)} is not set and its default is empty"
        for m in _ENV_REF.finditer(raw)
    ]
    return f" ({'; '.join(reasons)})" if reasons else ""


def missing_env_message(raw: object, first: MissingEnvError, env: Mapping[str, str]) -> str:
    """``accounts[0].api_key: environment variable A is not set``, and with more than one
    variable, ``...; also not set: B (providers.x.api_key), C (admin_token)``."""
    paths: dict[str, str] = {}
    for path, name in [(first.path, first.name), *_unset_refs(raw, "", env)]:
        paths.setdefault(name, path)
    (name, path), *others = paths.items()
    message = f"{path}: environment variable {name} is not set"
    if others:
        message += "; also not set: " + ", ".join(f"{n} ({p})" for n, p in others)
    return message


def _unset_refs(value: object, path: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(path, name) of every ``${NAME}`` without a default, in any string of the tree, whose
    variable is not set; so that one error can name them all."""
    if isinstance(value, str):
        unset = (m.group(1) for m in _ENV_REF.finditer(value) if m.group(2) is None)
        return [(path, name) for name in unset if name not in env]
    if isinstance(value, dict):
        items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return []
    return [ref for sub, v in items for ref in _unset_refs(v, sub, env)]
