"""Typed checks of YAML/JSON-loaded values, shared by every file format the project reads.

The config loader, the operator classification rules and the fake upstream's behaviours all take
an untyped tree and need the same answers: is this a mapping, an integer of at least 1, a
duration, one of these words? Each helper takes the value and its *path* (``accounts[1].provider``)
and either returns the value typed or raises :class:`ValidationError` whose message starts with
the path. Each reader's own error (``ConfigError``, ``FaultConfigError``) subclasses it, and its
public entry point turns a bare :class:`ValidationError` into its own.

Values are not quoted in messages unless ``show_value`` is set: a config string may be a secret.

This module also holds the one duration grammar and the field metadata (:func:`key`) with which
a dataclass describes the keys a file may set for it, so that the set of allowed keys is derived
from the dataclass rather than typed out again.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, TypeVar

from spillgate.typenames import type_name

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)


class ValidationError(ValueError):
    """A value that does not fit; the message starts with its path, e.g. ``limits.max_headers:``."""


def _shown(value: object, show_value: bool) -> str:
    return type_name(value, show_value=show_value)


# -- containers and keys ----------------------------------------------------------------------------


def require_mapping(
    value: object, path: str, *, show_value: bool = False, what: str = "a mapping", none_ok: bool = True
) -> dict[str, Any]:
    """A mapping with string keys; ``None`` (an empty YAML section) is an empty one if ``none_ok``."""
    if value is None and none_ok:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{path}: expected {what}, got {_shown(value, show_value)}")
    for item in value:
        if not isinstance(item, str):
            raise ValidationError(f"{path}: keys must be strings, got {item!r}")
    return value


def require_list(
    value: object, path: str, *, show_value: bool = False, what: str = "a list", none_ok: bool = True
) -> list[Any]:
    """A list; ``None`` is an empty one if ``none_ok``."""
    if value is None and none_ok:
        return []
    if not isinstance(value, list):
        raise ValidationError(f"{path}: expected {what}, got {_shown(value, show_value)}")
    return value


def listed(value: object) -> list[object]:
    """A value that may be given alone or as a list, as a list (``None``: empty)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def check_keys(
    m: Mapping[str, object], path: str, allowed: Collection[str], required: Iterable[str] = ()
) -> None:
    """Refuse a key not in ``allowed`` (naming the allowed ones, and the likely one meant) and
    a missing ``required`` one."""
    for item in m:
        if item not in allowed:
            names = sorted(allowed)
            message = f"{path}.{item}: unknown key (allowed here: {', '.join(names)})"
            close = difflib.get_close_matches(str(item), names, n=1)
            raise ValidationError(message + (f"; did you mean {close[0]!r}?" if close else ""))
    for item in sorted(required):
        if item not in m:
            raise ValidationError(f"{path}.{item}: required key is missing")


# -- scalars ------------------------------------------------------------------------------------


def require_str(value: object, path: str, *, empty_ok: bool = False, show_value: bool = False) -> str:
    """A string; a blank one only with ``empty_ok``."""
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        what = "a string" if empty_ok else "a non-empty string"
        raise ValidationError(f"{path}: expected {what}, got {_shown(value, show_value)}")
    return value


def require_scalar(value: object, path: str, *, show_value: bool = False) -> str:
    """A string, or a number written without quotes (a header value such as ``3``), as text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"{path}: expected a string, got {_shown(value, show_value)}")
    return str(value)


def require_bool(value: object, path: str, *, show_value: bool = False) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{path}: expected true or false, got {_shown(value, show_value)}")
    return value


def require_switch(value: object, path: str) -> bool:
    """``on`` / ``off`` (YAML 1.1 reads them as booleans; quoted, they are strings)."""
    if value in (True, "on"):
        return True
    if value in (False, "off"):
        return False
    raise ValidationError(f"{path}: expected on or off, got {value!r}")


def require_int(
    value: object,
    path: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    show_value: bool = False,
) -> int:
    """An integer (never a bool) within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{path}: expected an integer, got {_shown(value, show_value)}")
    if maximum is not None and minimum is not None and not minimum <= value <= maximum:
        raise ValidationError(f"{path}: must be between {minimum} and {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{path}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{path}: must be at most {maximum}, got {value}")
    return value


def require_float(
    value: object, path: str, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A finite number (an integer is one too, a bool is not) within the bounds given."""
    if minimum is not None and maximum is not None:
        wanted = f"a number between {minimum:g} and {maximum:g}"
    elif minimum is not None:
        wanted = f"a number >= {minimum:g}"
    elif maximum is not None:
        wanted = f"a number <= {maximum:g}"
    else:
        wanted = "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ValidationError(f"{path}: expected {wanted}, got {value!r}")
    return float(value)


def require_ratio(value: object, path: str) -> float:
    """A fraction from 0 to 1."""
    return require_float(value, path, minimum=0, maximum=1)


def require_usd(value: object, path: str) -> float:
    """A positive amount of money in USD (a number: ``50``, ``12.5``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValidationError(
            f"{path}: expected a positive amount in USD (a number such as 50), got {value!r}"
        )
    return float(value)


def require_choice(value: object, path: str, choices: Sequence[_T]) -> _T:
    """One of ``choices``: ``expected 'day', 'month' or 'total', got 'week'``."""
    for choice in choices:
        if value == choice and type(value) is type(choice):
            return choice
    quoted = [repr(choice) for choice in choices]
    listing = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    raise ValidationError(f"{path}: expected {listing}, got {value!r}")


def require_enum(kind: type[_E], value: object, path: str, what: str) -> _E:
    """The member of ``kind`` whose value is ``value``: ``unknown scope 'x' (one of: a, b)``."""
    for member in kind:
        if member.value == value:
            return member
    choices = ", ".join(str(member.value) for member in kind)
    raise ValidationError(f"{path}: unknown {what} {value!r} (one of: {choices})")


# -- durations and sizes ------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration_seconds(text: str) -> float | None:
    """The one duration grammar (config values, admin query parameters, fake behaviours):
    ``250ms``, ``5s``, ``2m``, ``1h``, ``7d``, ``1w`` or a bare number of seconds; ``None`` if
    ``text`` is not one."""
    m = _DURATION.match(text)
    if m is None:
        return None
    unit = m.group(2)
    return float(m.group(1)) * (_UNIT[unit.lower()] if unit else 1.0)


def _duration(value: object, zero: bool) -> float | str:
    """Seconds, or what is wrong with ``value`` as a duration."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds: float | None = float(value)
    elif isinstance(value, str):
        seconds = duration_seconds(value)
    else:
        seconds = None
    if seconds is None:
        return f"expected a duration like 5s, 250ms or 2m, got {value!r}"
    if seconds < 0 or (seconds == 0 and not zero):
        return f"a duration must be {'0 or ' if zero else ''}positive, got {value!r}"
    return seconds


def parse_duration(value: object) -> float:
    """Positive seconds from a number or a duration text; :class:`ValueError` saying what is
    accepted (without a path: :func:`require_duration` adds one)."""
    seconds = _duration(value, zero=False)
    if isinstance(seconds, str):
        raise ValueError(seconds)
    return seconds


def require_duration(value: object, path: str, *, zero: bool = False) -> float:
    """Seconds from ``5s``, ``250ms``, ``2m``... or a number; positive, or also 0 with ``zero``."""
    seconds = _duration(value, zero)
    if isinstance(seconds, str):
        raise ValidationError(f"{path}: {seconds}")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}
MIN_SIZE = 1024


def require_size(value: object, path: str, *, zero: bool = False) -> int:
    """Bytes from ``32MiB``, ``64kb``... or a number; at least 1 KiB, or 0 with ``zero``."""
    if zero and value in (0, "0") and not isinstance(value, bool):
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNIT[(m.group(2) or "").lower()]
    else:
        raise ValidationError(f"{path}: expected a size such as 32MiB or a number of bytes, got {value!r}")
    if size < MIN_SIZE:
        floor = "0 or " if zero else ""
        raise ValidationError(f"{path}: must be {floor}at least {MIN_SIZE} bytes, got {size}")
    return size


# -- keys described by dataclass fields ---------------------------------------------------------

Unit = Literal["duration", "size", "ratio", "number", "switch", "usd"]

METADATA = "spillgate.key"
"""The ``field(metadata=...)`` entry that holds a field's :class:`Key`."""


@dataclass(frozen=True, slots=True)
class Key:
    """How a file spells and bounds one dataclass field (all optional; see :func:`key`)."""

    name: str | None = None
    """The file's key when it differs from the field name (``hash`` for ``sha256``)."""
    group: str | None = None
    """The sub-mapping the key sits in (``retry_budget`` for ``retry_budget.ratio``)."""
    unit: Unit | None = None
    """How a number is read: a float is a ``duration`` unless this says otherwise."""
    minimum: int | None = None
    """An integer's lower bound (1 unless given)."""
    zero: bool = False
    """A duration or size also accepts 0 (off)."""
    read: bool = True
    """``False``: not in the file (set by the reader, or derived from other keys)."""
    flatten: bool = False
    """A nested dataclass whose keys sit in the parent's mapping, not under its own key."""
    custom: bool = False
    """Read by the section's own code (references, environment variables, cross-checks)."""
    required: bool | None = None
    """Overrides "required when the field has no default"."""


def key(
    name: str | None = None,
    *,
    group: str | None = None,
    unit: Unit | None = None,
    minimum: int | None = None,
    zero: bool = False,
    read: bool = True,
    flatten: bool = False,
    custom: bool = False,
    required: bool | None = None,
) -> dict[str, Key]:
    """``field(metadata=key(...))``: how a file spells and bounds the field."""
    spec = Key(name, group, unit, minimum, zero, read, flatten, custom, required)
    return {METADATA: spec}


def key_of(f: dataclasses.Field[Any]) -> Key:
    """The field's :class:`Key` (the defaults when it declares none)."""
    spec = f.metadata.get(METADATA)
    return spec if isinstance(spec, Key) else Key()


def yaml_name(f: dataclasses.Field[Any]) -> str:
    """The key a file writes for ``f``."""
    return key_of(f).name or f.name


def has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def file_fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    """The init fields of ``cls`` that a file sets (``read`` ones)."""
    return tuple(f for f in dataclasses.fields(cls) if f.init and key_of(f).read)


def flattened(cls: type[Any], f: dataclasses.Field[Any]) -> type[Any]:
    """The dataclass a ``flatten`` field of ``cls`` holds."""
    hint = typing.get_type_hints(cls)[f.name]
    if not dataclasses.is_dataclass(hint) or not isinstance(hint, type):
        raise TypeError(f"{cls.__name__}.{f.name}: only a dataclass field can be flattened")
    return hint


def file_keys(cls: type[Any], group: str | None = None) -> frozenset[str]:
    """The keys a file may write for ``cls`` at the top of its mapping (``group=None``) or in
    one of its sub-mappings; a group itself is a key of the top, a flattened field's keys too."""
    keys: set[str] = set()
    for f in file_fields(cls):
        spec = key_of(f)
        if group is None and spec.flatten:
            keys.update(file_keys(flattened(cls, f)))
        elif group is None and spec.group is not None:
            keys.add(spec.group)
        elif spec.group == group:
            keys.add(yaml_name(f))
    return frozenset(keys)


def required_keys(cls: type[Any]) -> frozenset[str]:
    """The top-level keys a file must write for ``cls``."""
    return frozenset(
        yaml_name(f)
        for f in file_fields(cls)
        if key_of(f).group is None
        and (key_of(f).required if key_of(f).required is not None else not has_default(f))
    )
