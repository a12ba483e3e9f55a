"""The config file's keys, and how each value is read, derived from the schema dataclasses.

A section's allowed keys are its dataclass's ``init`` fields (spelled and grouped as their
``key(...)`` metadata says; see :mod:`spillgate.validation`); its required keys are the fields
without a default. A field's type says how its value is read:

==========================  ==================================================================
``bool``                    ``true`` / ``false`` (``unit="switch"``: ``on`` / ``off`` too)
``int``                     an integer, at least ``minimum`` (1 unless given); ``unit="size"``:
                            ``32MiB``, ``64kb`` or bytes (at least 1 KiB, 0 with ``zero``)
``float``                   a duration (``5s``, ``250ms``; positive, 0 with ``zero``);
                            ``unit="ratio"``: 0 to 1, ``unit="number"``: any finite number,
                            ``unit="usd"``: a positive amount of money
``str``                     a non-empty string
``Literal[...]``            one of its values
``frozenset[str]`` / tuple  a list of non-empty strings
``Secret``                  a credential (``${ENV}`` expanded)
a schema dataclass          its own section, under the field's key (or, ``flatten``, beside it)
``X | None``                ``X``, or ``null`` for ``None``
==========================  ==================================================================

Anything else must be ``key(custom=True)`` and read by :mod:`spillgate.config.sections`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast

from spillgate.config.env import secret
from spillgate.config.schema import Secret
from spillgate.validation import (
    Key,
    check_keys,
    file_fields,
    file_keys,
    flattened,
    key_of,
    require_bool,
    require_choice,
    require_duration,
    require_float,
    require_int,
    require_list,
    require_mapping,
    require_ratio,
    require_size,
    require_str,
    require_switch,
    require_usd,
    required_keys,
    yaml_name,
)

_D = TypeVar("_D")

Reader = Callable[[object, str, Mapping[str, str]], Any]
"""``(value, path, env) -> the field's value``."""


def join(path: str, name: str) -> str:
    """``limits`` + ``max_headers``; the root's keys have no prefix."""
    return f"{path}.{name}" if path else name


def groups(cls: type[Any]) -> frozenset[str]:
    """The sub-mappings of ``cls``'s section (``retry_budget``, ``backoff``)."""
    return frozenset(g for f in file_fields(cls) if (g := key_of(f).group) is not None)


def section(cls: type[Any], value: object, path: str) -> dict[str, Any]:
    """The mapping at ``path``, its keys (and its groups' keys) checked against ``cls``."""
    m = require_mapping(value, path)
    check_keys(m, path, file_keys(cls), required_keys(cls))
    for group in sorted(groups(cls)):
        where = join(path, group)
        check_keys(require_mapping(m.get(group), where), where, file_keys(cls, group))
    return m


def read_fields(cls: type[Any], m: Mapping[str, Any], path: str, env: Mapping[str, str]) -> dict[str, Any]:
    """``{field: value}`` for the keys of ``m`` that ``cls``'s plain (not ``custom``) fields read;
    absent keys are left out, so that the dataclass default (or a base's value) applies."""
    values: dict[str, Any] = {}
    for f in file_fields(cls):
        spec = key_of(f)
        if spec.custom:
            continue
        if spec.flatten:
            inner = flattened(cls, f)
            values[f.name] = inner(**read_fields(inner, m, path, env))
            continue
        holder, where = m, path
        if spec.group is not None:
            where = join(path, spec.group)
            holder = require_mapping(m.get(spec.group), where)
        name = yaml_name(f)
        if name in holder:
            values[f.name] = reader(cls, f.name)(holder[name], join(where, name), env)
    return values


def read_section(
    cls: type[_D], value: object, path: str, env: Mapping[str, str], base: _D | None = None
) -> _D:
    """A whole section whose fields are all plain: ``base`` (default: ``cls()``) with the keys set."""
    if any(key_of(f).custom for f in file_fields(cls)):
        raise TypeError(f"{cls.__name__} has custom fields: read it in spillgate.config.sections")
    values = read_fields(cls, section(cls, value, path), path, env)
    if base is None:
        return cls(**values)
    replaced: _D = dataclasses.replace(cast(Any, base), **values)
    return replaced


_READERS: dict[tuple[type[Any], str], Reader] = {}


def reader(cls: type[Any], name: str) -> Reader:
    """How the plain field ``name`` of ``cls`` is read (:class:`TypeError` for a type the table in
    this module's docstring does not cover: make the field ``custom``)."""
    found = _READERS.get((cls, name))
    if found is None:
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        hint = typing.get_type_hints(cls)[name]
        found = _READERS[cls, name] = _reader_for(hint, key_of(f), _default_of(f), f"{cls.__name__}.{name}")
    return found


def _default_of(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _reader_for(hint: Any, spec: Key, default: object, where: str) -> Reader:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        (inner_hint,) = (a for a in args if a is not type(None))
        inner = _reader_for(inner_hint, spec, None, where)
        return lambda value, path, env: None if value is None else inner(value, path, env)
    if origin is Literal:
        return lambda value, path, env: require_choice(value, path, args)
    scalar = _scalar(hint, spec)
    if scalar is not None:
        return lambda value, path, env: scalar(value, path)
    if hint is Secret:
        return secret
    if origin in (frozenset, tuple) and args in ((str,), (str, ...)):
        build: Callable[[Any], Any] = frozenset if origin is frozenset else tuple
        return lambda value, path, env: build(
            require_str(item, f"{path}[{i}]") for i, item in enumerate(require_list(value, path))
        )
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        base = default if isinstance(default, hint) else None
        return lambda value, path, env: read_section(hint, value, path, env, base)
    raise TypeError(f"{where}: the config loader cannot read {hint!r}; mark it key(custom=True)")


def _scalar(hint: Any, spec: Key) -> Callable[[object, str], Any] | None:
    if hint is bool:
        return require_switch if spec.unit == "switch" else require_bool
    if hint is int and spec.unit == "size":
        return functools.partial(require_size, zero=spec.zero)
    if hint is int:
        return functools.partial(require_int, minimum=1 if spec.minimum is None else spec.minimum)
    if hint is float and spec.unit == "ratio":
        return require_ratio
    if hint is float and spec.unit == "number":
        return require_float
    if hint is float and spec.unit == "usd":
        return require_usd
    if hint is float:
        return functools.partial(require_duration, zero=spec.zero)
    if hint is str:
        return require_str
    return None
