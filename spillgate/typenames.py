"""How validation errors name the type of a bad value."""

from __future__ import annotations


def type_name(value: object, show_value: bool = False) -> str:
    """``a mapping``, ``a list``, ``a string``, ``int``... With ``show_value`` the value is
    quoted too (never for fields that may hold a secret)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {value!r}" if show_value and len(value) <= 40 else "a string"
    return f"{type(value).__name__} {value!r}" if show_value else type(value).__name__
