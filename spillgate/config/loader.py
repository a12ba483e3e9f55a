"""Load a YAML config into :class:`Settings`, naming the key and the problem on any error."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import yaml

from spillgate.config.dsn import parse_dsn
from spillgate.config.durations import parse_duration
from spillgate.config.listen import parse_listen
from spillgate.config.schema import (
    WILDCARD,
    Account,
    Breaker,
    ClientKey,
    Cooldowns,
    KeyLimits,
    Limits,
    ModelAlias,
    Provider,
    ProviderProtocol,
    Resilience,
    Route,
    Secret,
    Settings,
    Timeouts,
)
from spillgate.typenames import type_name


class ConfigError(ValueError):
    """A config problem; the message starts with the key path, e.g. ``accounts[1].provider``."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@*-]*$")


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
    """Validate an already-parsed config tree."""
    env = os.environ if env is None else env
    try:
        return _parse_settings(raw, env, source)
    except _MissingEnvError as exc:
        raise ConfigError(_missing_env_message([(exc.path, exc.name), *_unset_refs(raw, "", env)])) from None


def _parse_settings(raw: object, env: Mapping[str, str], source: str) -> Settings:
    root = _mapping(raw, "config")
    _only(
        root,
        "config",
        {
            "listen",
            "client_keys",
            "providers",
            "accounts",
            "models",
            "limits",
            "resilience",
            "error_rules",
            "admin_token",
            "usage",
            "metrics",
        },
    )
    host, port = _listen(root.get("listen", "127.0.0.1:8080"), env)
    providers = _providers(root.get("providers", {}), env)
    accounts = _accounts(root.get("accounts", []), providers, env)
    models, deprecated = _models(root.get("models", {}), providers, accounts)
    return Settings(
        host=host,
        port=port,
        client_keys=_client_keys(root.get("client_keys", []), env),
        providers=providers,
        accounts=accounts,
        models=models,
        deprecated=deprecated,
        limits=_limits(root.get("limits", {})),
        resilience=_resilience(root.get("resilience", {})),
        error_rules=_error_rules(root.get("error_rules", [])),
        admin_token=_secret(root["admin_token"], "admin_token", env) if "admin_token" in root else None,
        usage_dsn=_usage(root["usage"], env) if "usage" in root else None,
        metrics=_on_off(root.get("metrics", True), "metrics"),
        source=source,
    )


# -- sections ---------------------------------------------------------------------------


def _listen(value: object, env: Mapping[str, str]) -> tuple[str, int]:
    text = _expand(_str(value, "listen"), "listen", env)
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise ConfigError(f"listen: {exc}") from None


def _client_keys(value: object, env: Mapping[str, str]) -> tuple[ClientKey, ...]:
    keys: list[ClientKey] = []
    names: set[str] = set()
    for i, item in enumerate(_list(value, "client_keys")):
        path = f"client_keys[{i}]"
        m = _mapping(item, path)
        _only(m, path, {"name", "hash", *_LIMIT_KEYS}, required={"name", "hash"})
        name = _name(m["name"], f"{path}.name")
        if name in names:
            raise ConfigError(f"{path}.name: duplicate client key name {name!r}")
        names.add(name)
        digest = _expand(_str(m["hash"], f"{path}.hash"), f"{path}.hash", env).strip().lower()
        match = _HASH.match(digest)
        if match is None:
            raise ConfigError(
                f"{path}.hash: expected 'sha256:' followed by 64 hex digits "
                "(run `spillgate keys hash` to make one)"
            )
        keys.append(ClientKey(name=name, sha256=match.group(1), limits=_key_limits(m, path)))
    return tuple(keys)


_LIMIT_KEYS = {"models", "rpm", "tpm", "max_concurrent", "token_budget", "budget_period"}


def _key_limits(m: Mapping[str, object], path: str) -> KeyLimits:
    models = m.get("models")
    period = m.get("budget_period", "month")
    if period not in ("day", "month", "total"):
        raise ConfigError(f"{path}.budget_period: expected day, month or total, got {period!r}")
    if "budget_period" in m and m.get("token_budget") is None:
        raise ConfigError(f"{path}.budget_period: only meaningful with token_budget")
    return KeyLimits(
        models=None
        if models is None
        else frozenset(_str(v, f"{path}.models[{i}]") for i, v in enumerate(_list(models, f"{path}.models"))),
        rpm=_optional_int(m.get("rpm"), f"{path}.rpm"),
        tpm=_optional_int(m.get("tpm"), f"{path}.tpm"),
        max_concurrent=_optional_int(m.get("max_concurrent"), f"{path}.max_concurrent"),
        token_budget=_optional_int(m.get("token_budget"), f"{path}.token_budget"),
        budget_period=period,
    )


def _providers(value: object, env: Mapping[str, str]) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for name, item in _mapping(value, "providers").items():
        path = f"providers.{name}"
        _name(name, path)
        m = _mapping(item, path)
        _only(
            m,
            path,
            {"protocol", "base_url", "timeouts", "headers", "api_key", "max_connections", "forward_headers"},
            required={"protocol", "base_url"},
        )
        protocol = _str(m["protocol"], f"{path}.protocol")
        if protocol not in ("openai", "anthropic"):
            raise ConfigError(f"{path}.protocol: expected 'openai' or 'anthropic', got {protocol!r}")
        base_url = _expand(_str(m["base_url"], f"{path}.base_url"), f"{path}.base_url", env).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.base_url: expected an http:// or https:// URL, got {base_url!r}")
        headers = tuple(
            (
                _str(k, f"{path}.headers"),
                _expand(_scalar_str(v, f"{path}.headers.{k}"), f"{path}.headers.{k}", env),
            )
            for k, v in _mapping(m.get("headers", {}), f"{path}.headers").items()
        )
        api_key = m.get("api_key")
        out[name] = Provider(
            name=name,
            protocol=cast(ProviderProtocol, protocol),
            base_url=base_url,
            timeouts=_timeouts(m.get("timeouts", {}), f"{path}.timeouts", Timeouts()),
            headers=headers,
            api_key=None if api_key is None else _secret(api_key, f"{path}.api_key", env),
            max_connections=_int(m.get("max_connections", 256), f"{path}.max_connections", minimum=1),
            forward_headers=_forward_headers(m.get("forward_headers", []), f"{path}.forward_headers"),
        )
    return out


_NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "x-api-key",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
    }
)


def _forward_headers(value: object, path: str) -> frozenset[str]:
    names = set()
    for i, item in enumerate(_list(value, path)):
        name = _str(item, f"{path}[{i}]").strip().lower()
        if name in _NEVER_FORWARDED:
            raise ConfigError(f"{path}[{i}]: {name!r} is never forwarded (the gateway sets it itself)")
        names.add(name)
    return frozenset(names)


def _accounts(value: object, providers: dict[str, Provider], env: Mapping[str, str]) -> dict[str, Account]:
    out: dict[str, Account] = {}
    for i, item in enumerate(_list(value, "accounts")):
        path = f"accounts[{i}]"
        m = _mapping(item, path)
        _only(
            m,
            path,
            {"id", "provider", "api_key", "max_concurrency", "models"},
            required={"id", "provider", "api_key"},
        )
        account_id = _name(m["id"], f"{path}.id")
        if account_id in out:
            raise ConfigError(f"{path}.id: duplicate account id {account_id!r}")
        provider = _ref(m["provider"], f"{path}.provider", providers, "provider")
        models = m.get("models")
        out[account_id] = Account(
            id=account_id,
            provider=provider,
            api_key=_secret(m["api_key"], f"{path}.api_key", env),
            max_concurrency=_optional_int(m.get("max_concurrency"), f"{path}.max_concurrency"),
            models=None
            if models is None
            else frozenset(
                _str(x, f"{path}.models[{j}]") for j, x in enumerate(_list(models, f"{path}.models"))
            ),
        )
    return out


def _models(
    value: object, providers: dict[str, Provider], accounts: dict[str, Account]
) -> tuple[dict[str, ModelAlias], dict[str, str]]:
    entries = _mapping(value, "models")
    routed: dict[str, tuple[Route, ...]] = {}
    deprecated: dict[str, str] = {}
    for name, item in entries.items():
        path = f"models.{name}"
        if name != WILDCARD:
            _name(name, path)
        m = _mapping(item, path)
        if "alias_of" in m:
            _only(m, path, {"alias_of"})
            target = _str(m["alias_of"], f"{path}.alias_of")
            deprecated[name] = target
            continue
        _only(m, path, {"routes"}, required={"routes"})
        routes = _list(m["routes"], f"{path}.routes")
        if not routes:
            raise ConfigError(f"{path}.routes: a model needs at least one route")
        parsed = [
            _route(r, f"{path}.routes[{i}]", f"{name}[{i}]", i, providers, accounts)
            for i, r in enumerate(routes)
        ]
        routed[name] = tuple(sorted(parsed, key=lambda r: r.priority))
    for name, target in deprecated.items():
        if target not in routed:
            hint = " (it is itself an alias_of; point at the final model)" if target in deprecated else ""
            raise ConfigError(f"models.{name}.alias_of: unknown model {target!r}{hint}")
    aliases = {
        name: ModelAlias(
            name=name,
            routes=routes,
            deprecated_names=tuple(sorted(d for d, t in deprecated.items() if t == name)),
        )
        for name, routes in routed.items()
    }
    return aliases, deprecated


def _route(
    value: object,
    path: str,
    label: str,
    index: int,
    providers: dict[str, Provider],
    accounts: dict[str, Account],
) -> Route:
    m = _mapping(value, path)
    _only(
        m,
        path,
        {
            "accounts",
            "provider",
            "model",
            "weight",
            "priority",
            "context_window",
            "timeouts",
            "supports_prefill",
        },
        required={"model"},
    )
    pool = tuple(
        _ref(a, f"{path}.accounts[{j}]", accounts, "account")
        for j, a in enumerate(_list(m.get("accounts", []), f"{path}.accounts"))
    )
    if "accounts" in m and not pool:
        raise ConfigError(f"{path}.accounts: an account pool needs at least one account")
    provider_name: str | None = None
    if "provider" in m:
        provider_name = _ref(m["provider"], f"{path}.provider", providers, "provider")
    if not pool and provider_name is None:
        raise ConfigError(f"{path}: a route names either 'accounts' (a pool) or a 'provider'")
    pool_providers = {accounts[a].provider for a in pool}
    if len(pool_providers) > 1:
        raise ConfigError(
            f"{path}.accounts: all accounts of a pool must belong to one provider, "
            f"got {', '.join(sorted(pool_providers))}"
        )
    if pool:
        (pool_provider,) = pool_providers
        if provider_name is not None and provider_name != pool_provider:
            raise ConfigError(
                f"{path}.provider: {provider_name!r} but the pool's accounts belong to {pool_provider!r}"
            )
        provider_name = pool_provider
    assert provider_name is not None
    model = _str(m["model"], f"{path}.model")
    if pool and model != WILDCARD and not any(accounts[a].serves(model) for a in pool):
        raise ConfigError(f"{path}.model: no account in the pool lists {model!r} in its models")
    base = providers[provider_name].timeouts
    return Route(
        provider=provider_name,
        model=model,
        accounts=pool,
        weight=_int(m.get("weight", 1), f"{path}.weight", minimum=1),
        priority=_int(m.get("priority", index), f"{path}.priority", minimum=0),
        context_window=_optional_int(m.get("context_window"), f"{path}.context_window"),
        timeouts=_timeouts(m["timeouts"], f"{path}.timeouts", base) if "timeouts" in m else None,
        supports_prefill=_bool(m.get("supports_prefill", False), f"{path}.supports_prefill"),
        label=label,
    )


def _timeouts(value: object, path: str, base: Timeouts) -> Timeouts:
    m = _mapping(value, path)
    keys = ("connect", "first_byte", "first_token", "stream_idle", "total")
    _only(m, path, set(keys))
    values: dict[str, float] = {}
    for key in keys:
        if key in m:
            try:
                values[key] = parse_duration(m[key])
            except ValueError as exc:
                raise ConfigError(f"{path}.{key}: {exc}") from None
    return Timeouts(
        connect=values.get("connect", base.connect),
        first_byte=values.get("first_byte", base.first_byte),
        first_token=values.get("first_token", base.first_token),
        stream_idle=values.get("stream_idle", base.stream_idle),
        total=values.get("total", base.total),
    )


def _limits(value: object) -> Limits:
    m = _mapping(value, "limits")
    _only(m, "limits", {f.name for f in fields(Limits)})
    base = Limits()
    max_body = m.get("max_body_bytes", base.max_body_bytes)
    return Limits(
        max_body_bytes=_size(max_body, "limits.max_body_bytes"),
        session_bindings=_int(m.get("session_bindings", base.session_bindings), "limits.session_bindings", 1),
        key_refresh=_dur(m, "key_refresh", "limits", base.key_refresh),
        max_header_bytes=_size(m.get("max_header_bytes", base.max_header_bytes), "limits.max_header_bytes"),
        max_headers=_int(m.get("max_headers", base.max_headers), "limits.max_headers", 1),
        header_timeout=_dur(m, "header_timeout", "limits", base.header_timeout),
        body_timeout=_dur(m, "body_timeout", "limits", base.body_timeout),
        idle_timeout=_dur(m, "idle_timeout", "limits", base.idle_timeout),
        write_timeout=_dur(m, "write_timeout", "limits", base.write_timeout),
        max_connections=_int(m.get("max_connections", base.max_connections), "limits.max_connections", 1),
        send_buffer=_size(m.get("send_buffer", base.send_buffer), "limits.send_buffer", zero=True),
        max_replay_text=_size(m.get("max_replay_text", base.max_replay_text), "limits.max_replay_text"),
        max_event_bytes=_size(m.get("max_event_bytes", base.max_event_bytes), "limits.max_event_bytes"),
        max_upstream_header_bytes=_size(
            m.get("max_upstream_header_bytes", base.max_upstream_header_bytes),
            "limits.max_upstream_header_bytes",
        ),
        max_upstream_body_bytes=_size(
            m.get("max_upstream_body_bytes", base.max_upstream_body_bytes), "limits.max_upstream_body_bytes"
        ),
    )


DEFAULT_USAGE_DSN = "sqlite:spillgate-usage.db"


def _on_off(value: object, path: str) -> bool:
    if value in (True, "on"):
        return True
    if value in (False, "off"):
        return False
    raise ConfigError(f"{path}: expected on or off, got {value!r}")


def _usage(value: object, env: Mapping[str, str]) -> str | None:
    """``usage: {dsn: ...}``; ``usage: off`` (or ``dsn: off``) records nothing."""
    if value is False or value == "off":
        return None
    m = _mapping(value, "usage")
    _only(m, "usage", {"dsn"}, required={"dsn"})
    if m["dsn"] is False or m["dsn"] == "off":
        return None
    dsn = _expand(_str(m["dsn"], "usage.dsn"), "usage.dsn", env)
    try:
        parse_dsn(dsn)
    except ValueError as exc:
        raise ConfigError(f"usage.dsn: {exc}") from None
    return dsn


def _resilience(value: object) -> Resilience:
    m = _mapping(value, "resilience")
    _only(
        m,
        "resilience",
        {
            "max_attempts",
            "deadline",
            "max_retry_wait",
            "try_timeout",
            "failover_reserve",
            "max_client_retry_after",
            "stop_retries_after",
            "widen_window",
            "retry_budget",
            "backoff",
            "cooldowns",
            "breaker",
        },
    )
    base = Resilience()
    budget = _mapping(m.get("retry_budget", {}), "resilience.retry_budget")
    _only(budget, "resilience.retry_budget", {"ratio", "floor", "window"})
    backoff = _mapping(m.get("backoff", {}), "resilience.backoff")
    _only(backoff, "resilience.backoff", {"base", "cap"})
    deadline = _dur(m, "deadline", "resilience", base.deadline)
    # Unset, the reserve never takes more than a quarter of a short deadline.
    default_reserve = min(base.failover_reserve, deadline / 4)
    reserve = _dur(m, "failover_reserve", "resilience", default_reserve, allow_zero=True)
    if reserve >= deadline:
        raise ConfigError(
            f"resilience.failover_reserve: {reserve:g}s leaves no time for a try within the "
            f"{deadline:g}s deadline; it must be shorter than resilience.deadline"
        )
    return Resilience(
        max_attempts=_int(m.get("max_attempts", base.max_attempts), "resilience.max_attempts", 1),
        deadline=deadline,
        max_retry_wait=_dur(m, "max_retry_wait", "resilience", base.max_retry_wait, allow_zero=True),
        try_timeout=_dur(m, "try_timeout", "resilience", base.try_timeout),
        failover_reserve=reserve,
        max_client_retry_after=_dur(m, "max_client_retry_after", "resilience", base.max_client_retry_after),
        stop_retries_after=_dur(m, "stop_retries_after", "resilience", base.stop_retries_after),
        widen_window=_dur(m, "widen_window", "resilience", base.widen_window),
        budget_ratio=_ratio(budget.get("ratio", base.budget_ratio), "resilience.retry_budget.ratio"),
        budget_floor=_int(budget.get("floor", base.budget_floor), "resilience.retry_budget.floor", 0),
        budget_window=_dur(budget, "window", "resilience.retry_budget", base.budget_window),
        backoff_base=_dur(backoff, "base", "resilience.backoff", base.backoff_base),
        backoff_cap=_dur(backoff, "cap", "resilience.backoff", base.backoff_cap),
        cooldowns=_dataclass_durations(m.get("cooldowns", {}), "resilience.cooldowns", Cooldowns()),
        breaker=_breaker(m.get("breaker", {})),
    )


def _dataclass_durations(value: object, path: str, base: Cooldowns) -> Cooldowns:
    m = _mapping(value, path)
    names = [f.name for f in fields(base)]
    _only(m, path, set(names))
    return replace(base, **{name: _dur(m, name, path, getattr(base, name)) for name in names if name in m})


def _breaker(value: object) -> Breaker:
    m = _mapping(value, "resilience.breaker")
    path = "resilience.breaker"
    _only(
        m, path, {"failures", "error_rate", "window", "min_requests", "cooldown", "cooldown_max", "probe_ttl"}
    )
    base = Breaker()
    return Breaker(
        failures=_int(m.get("failures", base.failures), f"{path}.failures", 1),
        error_rate=_ratio(m.get("error_rate", base.error_rate), f"{path}.error_rate"),
        window=_dur(m, "window", path, base.window),
        min_requests=_int(m.get("min_requests", base.min_requests), f"{path}.min_requests", 1),
        cooldown=_dur(m, "cooldown", path, base.cooldown),
        cooldown_max=_dur(m, "cooldown_max", path, base.cooldown_max),
        probe_ttl=_dur(m, "probe_ttl", path, base.probe_ttl),
    )


def _error_rules(value: object) -> tuple[Any, ...]:
    from spillgate.resilience.classify import parse_rules

    try:
        return tuple(parse_rules(value, "error_rules"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# -- primitives -------------------------------------------------------------------------


def _mapping(value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings, got {key!r}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {type_name(value)}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: expected a non-empty string, got {type_name(value)}")
    return value


def _scalar_str(value: object, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{path}: expected a string, got {type_name(value)}")
    return str(value)


def _name(value: object, path: str) -> str:
    text = _str(value, path)
    if not _NAME.match(text):
        raise ConfigError(f"{path}: {text!r} is not a valid name (letters, digits and . _ : / @ * -)")
    return text


def _int(value: object, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: expected an integer, got {type_name(value)}")
    if value < minimum:
        raise ConfigError(f"{path}: must be at least {minimum}, got {value}")
    return value


def _size(value: object, path: str, *, zero: bool = False) -> int:
    if zero and value in (0, "0"):
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNIT[m.group(2).lower() if m.group(2) else None]
    else:
        raise ConfigError(f"{path}: expected a size such as 32MiB or a number of bytes, got {value!r}")
    if size < 1024:
        floor = "0 or " if zero else ""
        raise ConfigError(f"{path}: must be {floor}at least 1024 bytes, got {size}")
    return size


def _dur(m: Mapping[str, object], key: str, path: str, default: float, allow_zero: bool = False) -> float:
    if key not in m:
        return default
    if allow_zero and m[key] in (0, "0", "0s"):
        return 0.0
    try:
        return parse_duration(m[key])
    except ValueError as exc:
        raise ConfigError(f"{path}.{key}: {exc}") from None


def _ratio(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{path}: expected a number between 0 and 1, got {value!r}")
    return float(value)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {type_name(value)}")
    return value


def _optional_int(value: object, path: str) -> int | None:
    return None if value is None else _int(value, path, minimum=1)


def _ref(value: object, path: str, known: Mapping[str, object], kind: str) -> str:
    name = _str(value, path)
    if name not in known:
        listing = ", ".join(sorted(known)) or "none configured"
        raise ConfigError(f"{path}: unknown {kind} {name!r} (known: {listing})")
    return name


def _only(m: Mapping[str, object], path: str, allowed: set[str], required: set[str] | None = None) -> None:
    unknown = sorted(set(m) - allowed)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key (allowed here: {', '.join(sorted(allowed))})")
    for key in sorted(required or ()):
        if key not in m:
            raise ConfigError(f"{path}.{key}: required key is missing")


class _MissingEnvError(ConfigError):
    """``${NAME}`` without a default names a variable that is not set."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(f"{path}: environment variable {name} is not set")
        self.path = path
        self.name = name


def _expand(text: str, path: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise _MissingEnvError(path, name)

    return _ENV_REF.sub(replace, text)


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


def _missing_env_message(refs: list[tuple[str, str]]) -> str:
    """``accounts[0].api_key: environment variable A is not set``, and with more than one
    variable, ``...; also not set: B (providers.x.api_key), C (admin_token)``."""
    first: dict[str, str] = {}
    for path, name in refs:
        first.setdefault(name, path)
    (name, path), *others = first.items()
    message = f"{path}: environment variable {name} is not set"
    if others:
        message += "; also not set: " + ", ".join(f"{n} ({p})" for n, p in others)
    return message


def _secret(value: object, path: str, env: Mapping[str, str]) -> Secret:
    raw = _str(value, path)
    text = _expand(raw, path, env)
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
