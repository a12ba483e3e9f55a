"""Configuration: the typed schema, the YAML loader and the embedded defaults."""

from spillgate.config.loader import ConfigError, load_settings, parse_settings
from spillgate.config.schema import (
    Account,
    ClientKey,
    ModelAlias,
    Provider,
    Route,
    Secret,
    Settings,
    Timeouts,
)

__all__ = [
    "Account",
    "ClientKey",
    "ConfigError",
    "ModelAlias",
    "Provider",
    "Route",
    "Secret",
    "Settings",
    "Timeouts",
    "load_settings",
    "parse_settings",
]
