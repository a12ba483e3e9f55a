"""Load a YAML config into :class:`Settings`, naming the key and the problem on any error.

Which keys a section allows, and how each plain value is read, come from the schema dataclasses
(:mod:`spillgate.config.keys`); the sections with references, ``${ENV}`` expansion or
cross-checks are in :mod:`spillgate.config.sections`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from spillgate.config import sections
from spillgate.config.env import MissingEnvError, missing_env_message
from spillgate.config.errors import ConfigError
from spillgate.config.keys import read_fields
from spillgate.config.schema import Pricing, Settings, SharedState
from spillgate.validation import ValidationError, check_keys, file_keys, require_mapping

__all__ = ["DEFAULT_USAGE_DSN", "ConfigError", "load_settings", "parse_settings"]

DEFAULT_USAGE_DSN = "sqlite:spillgate-usage.db"


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {_yaml_error_in(exc, str(p))}") from None
    return parse_settings(raw if raw is not None else {}, env=env, source=str(p))


def _yaml_error_in(exc: yaml.YAMLError, name: str) -> yaml.YAMLError:
    """``exc`` with its positions naming ``name`` rather than ``"<unicode string>"``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        for mark in (exc.context_mark, exc.problem_mark):
            if mark is not None:
                mark.name = name
    return exc


def parse_settings(raw: object, env: Mapping[str, str] | None = None, source: str = "config") -> Settings:
    """Validate an already-parsed config tree; :class:`ConfigError` naming the key on any problem."""
    env = os.environ if env is None else env
    try:
        return _parse_settings(raw, env, source)
    except MissingEnvError as exc:
        raise ConfigError(missing_env_message(raw, exc, env)) from None
    except ConfigError:
        raise
    except ValidationError as exc:  # a shared check (spillgate.validation) failed
        raise ConfigError(str(exc)) from None


def _parse_settings(raw: object, env: Mapping[str, str], source: str) -> Settings:
    root = require_mapping(raw, "config")
    check_keys(root, "config", file_keys(Settings))
    host, port = sections.listen(root.get("listen", "127.0.0.1:8080"), env)
    providers = sections.providers(root.get("providers"), env)
    accounts = sections.accounts(root.get("accounts"), providers, env)
    models, deprecated = sections.models(root.get("models"), providers, accounts, env)
    return Settings(
        host=host,
        port=port,
        client_keys=sections.client_keys(root.get("client_keys"), env),
        providers=providers,
        accounts=accounts,
        models=models,
        deprecated=deprecated,
        resilience=sections.resilience(root.get("resilience"), env),
        error_rules=sections.error_rules(root.get("error_rules")),
        state=sections.state(root["state"], env) if "state" in root else SharedState(),
        pricing=sections.pricing(root["pricing"], providers, env) if "pricing" in root else Pricing(),
        usage_dsn=sections.usage(root["usage"], env) if "usage" in root else None,
        source=source,
        **read_fields(Settings, root, "", env),
    )
