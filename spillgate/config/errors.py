"""The config loader's error."""

from __future__ import annotations

from spillgate.validation import ValidationError


class ConfigError(ValidationError):
    """A config problem; the message starts with the key path, e.g. ``accounts[1].provider``."""
