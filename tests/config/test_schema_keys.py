"""The config file's keys are the schema's fields: every field is accepted (and read) where its
dataclass sits in the file, and any other key is refused there. Derived from the schema, so a new
field is covered the moment it is added (a ``custom`` one asks for an entry in ``CUSTOM`` below)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from spillgate.config import ConfigError, parse_settings, schema
from spillgate.config.keys import reader
from spillgate.config.schema import (
    Account,
    Breaker,
    Capabilities,
    ClientKey,
    Cooldowns,
    KeyLimits,
    Limits,
    ModelAlias,
    Price,
    Pricing,
    Provider,
    Resilience,
    Route,
    Secret,
    Settings,
    SharedState,
    Timeouts,
)
from spillgate.protocols.apis import Api
from spillgate.validation import file_fields, file_keys, flattened, key_of, yaml_name

BASE: dict[str, Any] = {
    "providers": {"p": {"protocol": "openai", "base_url": "https://up.example/v1", "timeouts": {}}},
    "accounts": [{"id": "a", "provider": "p", "api_key": "k"}],
    "models": {"m": {"routes": [{"accounts": ["a"], "model": "*", "capabilities": {}}]}},
    "client_keys": [{"name": "team", "hash": "sha256:" + "0" * 64}],
    "limits": {},
    "state": {},
    "pricing": {"models": {"m": {"input": 1, "output": 2}}},
    "resilience": {"cooldowns": {}, "breaker": {}, "retry_budget": {}, "backoff": {}},
}

Where = tuple[str | int, ...]

# Where each schema dataclass's mapping sits in the file, what its error paths call it, and how
# to find the parsed object.
LOCATIONS: dict[type[Any], tuple[Where, str, Callable[[Settings], Any]]] = {
    Settings: ((), "config", lambda s: s),
    Limits: (("limits",), "limits", lambda s: s.limits),
    SharedState: (("state",), "state", lambda s: s.state),
    Pricing: (("pricing",), "pricing", lambda s: s.pricing),
    Price: (("pricing", "models", "m"), "pricing.models.m", lambda s: s.pricing.models["m"]),
    Resilience: (("resilience",), "resilience", lambda s: s.resilience),
    Cooldowns: (("resilience", "cooldowns"), "resilience.cooldowns", lambda s: s.resilience.cooldowns),
    Breaker: (("resilience", "breaker"), "resilience.breaker", lambda s: s.resilience.breaker),
    Provider: (("providers", "p"), "providers.p", lambda s: s.providers["p"]),
    Timeouts: (("providers", "p", "timeouts"), "providers.p.timeouts", lambda s: s.providers["p"].timeouts),
    Account: (("accounts", 0), "accounts[0]", lambda s: s.accounts["a"]),
    ModelAlias: (("models", "m"), "models.m", lambda s: s.models["m"]),
    Route: (("models", "m", "routes", 0), "models.m.routes[0]", lambda s: s.models["m"].routes[0]),
    ClientKey: (("client_keys", 0), "client_keys[0]", lambda s: s.client_keys[0]),
    Capabilities: (
        ("models", "m", "routes", 0, "capabilities"),
        "models.m.routes[0].capabilities",
        lambda s: s.models["m"].routes[0].capabilities,
    ),
}
FLATTENED = {KeyLimits: ClientKey}
"""Dataclasses whose keys sit in another's mapping."""

_KEEP = object()
"""The base tree already sets the key."""

# (class, field) -> (the value written, whether the parsed field is what it should be)
CUSTOM: dict[tuple[type[Any], str], tuple[object, Callable[[Any], bool]]] = {
    (Settings, "host"): ("0.0.0.0:9", lambda v: v == "0.0.0.0"),
    (Settings, "port"): ("0.0.0.0:9", lambda v: v == 9),
    (Settings, "client_keys"): (_KEEP, lambda v: [k.name for k in v] == ["team"]),
    (Settings, "providers"): (_KEEP, lambda v: list(v) == ["p"]),
    (Settings, "accounts"): (_KEEP, lambda v: list(v) == ["a"]),
    (Settings, "models"): (_KEEP, lambda v: list(v) == ["m"]),
    (Settings, "resilience"): ({"max_attempts": 9}, lambda v: v.max_attempts == 9),
    (Settings, "usage_dsn"): ({"dsn": "sqlite:x.db"}, lambda v: v == "sqlite:x.db"),
    (Settings, "state"): ("redis://h:1/0", lambda v: v.url == "redis://h:1/0"),
    (SharedState, "url"): ("redis://h:2/1", lambda v: v == "redis://h:2/1"),
    (Settings, "pricing"): ("off", lambda v: v.enabled is False),
    (Pricing, "models"): (_KEEP, lambda v: v["m"].input == 1),
    (Pricing, "providers"): ({"p": {"*": {"input": 0, "output": 0}}}, lambda v: v["p"]["*"].output == 0),
    (Settings, "error_rules"): (
        [{"name": "r", "class": "capacity", "status": 599}],
        lambda v: v[0].name == "r",
    ),
    (Provider, "base_url"): ("https://other.example/", lambda v: v == "https://other.example"),
    (Provider, "headers"): ({"x-team": 7}, lambda v: v == (("x-team", "7"),)),
    (Provider, "forward_headers"): (["X-Trace"], lambda v: v == {"x-trace"}),
    (Provider, "tls"): ({"verify": False}, lambda v: v.verify is False),
    (Provider, "proxy"): ("http://u:pw@proxy.example:3128", lambda v: v.host == "proxy.example"),
    (Provider, "apis"): (
        ["responses", "openai-chat"],
        lambda v: v == (Api.OPENAI_RESPONSES, Api.OPENAI_CHAT),
    ),
    (Account, "id"): (_KEEP, lambda v: v == "a"),
    (Account, "provider"): (_KEEP, lambda v: v == "p"),
    (Route, "provider"): ("p", lambda v: v == "p"),
    (Route, "accounts"): (_KEEP, lambda v: v == ("a",)),
    (Route, "timeouts"): ({"connect": "2s"}, lambda v: v.connect == 2.0),
    (ModelAlias, "routes"): (_KEEP, lambda v: len(v) == 1),
    (ClientKey, "name"): ("ops", lambda v: v == "ops"),
    (ClientKey, "sha256"): ("sha256:" + "a" * 64, lambda v: v == "a" * 64),
    (Resilience, "failover_reserve"): ("0", lambda v: v == 0.0),
}
EXTRA: dict[tuple[type[Any], str], dict[str, object]] = {
    (KeyLimits, "budget_period"): {"token_budget": 1000},
}
"""Other keys a field's value needs beside it."""


def _sample(hint: Any, f: dataclasses.Field[Any], default: object) -> tuple[object, object]:
    """A value to write for a plain field, and what the loader should make of it (not the default)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    spec = key_of(f)
    if origin in (typing.Union, types.UnionType):
        (inner,) = (a for a in args if a is not type(None))
        return _sample(inner, f, default)
    if origin is Literal:
        choice = next(a for a in args if a != default)
        return choice, choice
    if hint is bool:
        if spec.unit == "switch":
            return ("off", False) if default else ("on", True)
        return not default, not default
    if hint is int and spec.unit == "size":
        return "3KiB", 3072
    if hint is int:
        value = 43 if default == 42 else 42
        return value, value
    if hint is float and spec.unit == "ratio":
        return 0.37, 0.37
    if hint is float and spec.unit == "number":
        return 2.5, 2.5
    if hint is float and spec.unit == "usd":
        return 12.5, 12.5
    if hint is float:
        return "1234ms", 1.234
    if hint is str:
        return "sample-text", "sample-text"
    if hint is Secret:
        return "sample-secret", Secret("sample-secret")
    if origin is frozenset:
        return ["x1", "x2"], frozenset({"x1", "x2"})
    if origin is tuple:
        return ["x1"], ("x1",)
    if dataclasses.is_dataclass(hint):
        return {}, default  # its own keys are checked where it sits
    raise AssertionError(f"{f.name}: no sample for {hint!r}; teach this test the type")


def _default(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _cases() -> Iterator[tuple[type[Any], type[Any], dataclasses.Field[Any]]]:
    """(the dataclass whose mapping holds the key, the dataclass declaring it, the field)."""
    for cls in LOCATIONS:
        for f in file_fields(cls):
            if key_of(f).flatten:
                inner = flattened(cls, f)
                yield from ((cls, inner, g) for g in file_fields(inner))
            else:
                yield cls, cls, f


CASES = list(_cases())


def _set(tree: dict[str, Any], where: Where, value: object) -> None:
    """Write ``value`` at ``where``, making the mappings on the way that are missing."""
    node: Any = tree
    for step in where[:-1]:
        node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
    node[where[-1]] = value


def test_every_schema_dataclass_has_a_place_in_the_file() -> None:
    declared = {
        obj
        for _, obj in inspect.getmembers(schema, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == schema.__name__
    }
    assert declared == set(LOCATIONS) | set(FLATTENED)


def test_every_custom_field_has_a_sample() -> None:
    custom = {(holder, f.name) for holder, cls, f in CASES if key_of(f).custom}
    assert custom == set(CUSTOM)


@pytest.mark.parametrize(
    ("holder", "cls", "f"), CASES, ids=[f"{cls.__name__}.{f.name}" for _, cls, f in CASES]
)
def test_every_field_is_accepted_and_read(
    holder: type[Any], cls: type[Any], f: dataclasses.Field[Any]
) -> None:
    where, _, parsed = LOCATIONS[holder]
    spec = key_of(f)
    tree = copy.deepcopy(BASE)
    if spec.custom:
        value, good = CUSTOM[holder, f.name]
    else:
        reader(cls, f.name)  # a plain field's type has a reader (TypeError otherwise)
        value, expected = _sample(typing.get_type_hints(cls)[f.name], f, _default(f))
        good = expected.__eq__
        assert dataclasses.is_dataclass(expected) or expected != _default(f), "the sample must differ"
    for name, extra in EXTRA.get((cls, f.name), {}).items():
        _set(tree, (*where, name), extra)
    if value is not _KEEP:
        group = () if spec.group is None else (spec.group,)
        _set(tree, (*where, *group, yaml_name(f)), value)
    settings = parse_settings(tree, env={})
    target = parsed(settings)
    if cls is not holder:
        target = next(getattr(target, g.name) for g in file_fields(holder) if key_of(g).flatten)
    assert good(getattr(target, f.name)), getattr(target, f.name)


SECTIONS = [
    *((where, path, file_keys(cls)) for cls, (where, path, _) in LOCATIONS.items()),
    (("resilience", "retry_budget"), "resilience.retry_budget", file_keys(Resilience, "retry_budget")),
    (("resilience", "backoff"), "resilience.backoff", file_keys(Resilience, "backoff")),
    (("models", "m", "routes", 0, "timeouts"), "models.m.routes[0].timeouts", file_keys(Timeouts)),
]


@pytest.mark.parametrize(("where", "path", "allowed"), SECTIONS, ids=[s[1] for s in SECTIONS])
def test_an_unknown_key_is_refused_everywhere(where: Where, path: str, allowed: frozenset[str]) -> None:
    tree = copy.deepcopy(BASE)
    _set(tree, (*where, "no_such_key"), 1)
    with pytest.raises(ConfigError) as info:
        parse_settings(tree, env={})
    assert str(info.value).startswith(
        f"{path}.no_such_key: unknown key (allowed here: {', '.join(sorted(allowed))})"
    )


def test_a_near_miss_suggests_the_key_meant() -> None:
    tree = copy.deepcopy(BASE)
    tree["limits"]["max_header"] = 100
    with pytest.raises(
        ConfigError, match=r"^limits\.max_header: unknown key .*; did you mean 'max_headers'\?$"
    ):
        parse_settings(tree, env={})


def test_the_base_tree_loads() -> None:
    settings = parse_settings(copy.deepcopy(BASE), env={})
    assert settings.models["m"].routes[0].provider == "p"
