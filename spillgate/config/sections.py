"""The config sections that need more than their keys' types: names, references between
sections, ``${ENV}`` expansion and cross-checks. Everything plain is read by
:mod:`spillgate.config.keys` from the schema; each function here reads a section's ``custom``
fields and leaves the rest to :func:`~spillgate.config.keys.read_fields`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from spillgate.config.dsn import parse_dsn
from spillgate.config.env import expand, expanded_str
from spillgate.config.errors import ConfigError
from spillgate.config.keys import read_fields, read_section, section
from spillgate.config.listen import parse_listen
from spillgate.config.schema import (
    WILDCARD,
    Account,
    ClientKey,
    ModelAlias,
    Price,
    Pricing,
    Provider,
    Resilience,
    Route,
    SharedState,
    Timeouts,
)
from spillgate.http.egress import Proxy, TlsOptions, TlsSetupError, parse_proxy, tls_context, tls_digest
from spillgate.protocols.apis import Api, api_named, api_names, config_name
from spillgate.resilience.rules import Rule, parse_rules
from spillgate.validation import (
    check_keys,
    require_bool,
    require_duration,
    require_list,
    require_mapping,
    require_scalar,
    require_str,
)

log = logging.getLogger("spillgate.config")

_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@*-]*$")
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

Env = Mapping[str, str]


def listen(value: object, env: Env) -> tuple[str, int]:
    text = expanded_str(value, "listen", env)
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise ConfigError(f"listen: {exc}") from None


def client_keys(value: object, env: Env) -> tuple[ClientKey, ...]:
    keys: list[ClientKey] = []
    names: set[str] = set()
    for i, item in enumerate(require_list(value, "client_keys")):
        path = f"client_keys[{i}]"
        m = section(ClientKey, item, path)
        name = _name(m["name"], f"{path}.name")
        if name in names:
            raise ConfigError(f"{path}.name: duplicate client key name {name!r}")
        names.add(name)
        digest = expanded_str(m["hash"], f"{path}.hash", env).strip().lower()
        match = _HASH.match(digest)
        if match is None:
            raise ConfigError(
                f"{path}.hash: expected 'sha256:' followed by 64 hex digits "
                "(run `spillgate keys hash` to make one)"
            )
        key = ClientKey(name=name, sha256=match.group(1), **read_fields(ClientKey, m, path, env))
        if "budget_period" in m and not key.limits.budgeted:
            raise ConfigError(f"{path}.budget_period: only meaningful with token_budget or spend_budget")
        keys.append(key)
    return tuple(keys)


def providers(value: object, env: Env) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    for name, item in require_mapping(value, "providers").items():
        path = f"providers.{name}"
        _name(name, path)
        m = section(Provider, item, path)
        base_url = expanded_str(m["base_url"], f"{path}.base_url", env).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.base_url: expected an http:// or https:// URL, got {base_url!r}")
        headers = tuple(
            (
                require_str(k, f"{path}.headers"),
                expand(require_scalar(v, f"{path}.headers.{k}"), f"{path}.headers.{k}", env),
            )
            for k, v in require_mapping(m.get("headers"), f"{path}.headers").items()
        )
        fields = read_fields(Provider, m, path, env)
        proxy = _proxy(m.get("proxy"), f"{path}.proxy", env)
        out[name] = Provider(
            name=name,
            base_url=base_url,
            headers=headers,
            tls=_tls(m.get("tls"), name, env, base_url, proxy),
            proxy=proxy,
            forward_headers=_forward_headers(m.get("forward_headers"), f"{path}.forward_headers"),
            apis=_apis(m.get("apis"), f"{path}.apis", fields["protocol"]),
            **fields,
        )
    return out


def _proxy(value: object, path: str, env: Env) -> Proxy | None:
    """``proxy: http://[user:password@]host:port`` (or ``https://``); the URL may hold a password,
    so no message quotes it."""
    if value is None:
        return None
    url = expanded_str(value, path, env)
    try:
        return parse_proxy(url)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


_TLS_FILES = ("ca_file", "client_cert", "client_key")


def _tls(value: object, provider: str, env: Env, base_url: str, proxy: Proxy | None) -> TlsOptions:
    """``tls: {ca_file, verify, client_cert, client_key}``: the files are read and checked now
    (a reload reads them again), and ``verify: false`` is a warning each time it is loaded."""
    path = f"providers.{provider}.tls"
    m = require_mapping(value, path)
    check_keys(m, path, {*_TLS_FILES, "verify"})
    files = {k: expanded_str(m[k], f"{path}.{k}", env) for k in _TLS_FILES if m.get(k) is not None}
    verify = require_bool(m.get("verify", True), f"{path}.verify")
    options = TlsOptions(verify=verify, **files)
    if options.default:
        return options
    if not base_url.startswith("https://") and (proxy is None or proxy.scheme != "https"):
        raise ConfigError(
            f"{path}: the provider speaks no TLS (its base_url is http:// and it has no https:// "
            "proxy); drop the tls settings or use an https:// base_url"
        )
    if not verify and "ca_file" in files:
        raise ConfigError(f"{path}.ca_file: has no effect with verify: false (drop one of the two)")
    try:
        tls_context(options)
    except TlsSetupError as exc:
        raise ConfigError(f"{path}.{exc.key}: {exc}") from None
    if not verify:
        log.warning(
            "%s.verify is false: TLS certificates and host names of provider %s are NOT checked "
            "(%s); anyone on the network path can read and change its traffic, credentials included",
            path,
            provider,
            urlsplit(base_url).hostname,
        )
    return dataclasses.replace(options, digest=tls_digest(options))


def _apis(value: object, path: str, protocol: str) -> tuple[Api, ...]:
    """``apis: [chat, responses]`` (or the code's names, ``openai-chat``…); unset: the
    protocol's own APIs. Only APIs of the provider's protocol: its base URL and credentials
    are that protocol's."""
    own = [a for a in api_names() if a.family == protocol]
    if value is None:
        return tuple(own)
    items = require_list(value, path)
    if not items:
        raise ConfigError(f"{path}: a provider serves at least one API")
    apis: list[Api] = []
    for i, item in enumerate(items):
        word = require_str(item, f"{path}[{i}]")
        api = api_named(word)
        if api is None:
            words = ", ".join(config_name(a) for a in api_names())
            raise ConfigError(f"{path}[{i}]: unknown API {word!r} (known: {words})")
        if api not in own:
            words = ", ".join(config_name(a) for a in own)
            raise ConfigError(
                f"{path}[{i}]: a provider of protocol {protocol!r} serves {words}, not "
                f"{config_name(api)!r} (declare a provider of protocol {api.family!r} for it)"
            )
        if api in apis:
            raise ConfigError(f"{path}[{i}]: {word!r} is listed twice")
        apis.append(api)
    return tuple(apis)


def _forward_headers(value: object, path: str) -> frozenset[str]:
    names = set()
    for i, item in enumerate(require_list(value, path)):
        name = require_str(item, f"{path}[{i}]").strip().lower()
        if name in _NEVER_FORWARDED:
            raise ConfigError(f"{path}[{i}]: {name!r} is never forwarded (the gateway sets it itself)")
        names.add(name)
    return frozenset(names)


def accounts(value: object, known: Mapping[str, Provider], env: Env) -> dict[str, Account]:
    out: dict[str, Account] = {}
    for i, item in enumerate(require_list(value, "accounts")):
        path = f"accounts[{i}]"
        m = section(Account, item, path)
        account_id = _name(m["id"], f"{path}.id")
        if account_id in out:
            raise ConfigError(f"{path}.id: duplicate account id {account_id!r}")
        provider = _ref(m["provider"], f"{path}.provider", known, "provider")
        out[account_id] = Account(id=account_id, provider=provider, **read_fields(Account, m, path, env))
    return out


def models(
    value: object, known: Mapping[str, Provider], pools: Mapping[str, Account], env: Env
) -> tuple[dict[str, ModelAlias], dict[str, str]]:
    """The aliases, and the deprecated names (``alias_of`` entries) with what replaces them."""
    routed: dict[str, tuple[Route, ...]] = {}
    deprecated: dict[str, str] = {}
    for name, item in require_mapping(value, "models").items():
        path = f"models.{name}"
        if name != WILDCARD:
            _name(name, path)
        m = require_mapping(item, path)
        if "alias_of" in m:
            check_keys(m, path, {"alias_of"})
            deprecated[name] = require_str(m["alias_of"], f"{path}.alias_of")
            continue
        section(ModelAlias, m, path)
        routes = require_list(m["routes"], f"{path}.routes")
        if not routes:
            raise ConfigError(f"{path}.routes: a model needs at least one route")
        parsed = [
            _route(r, f"{path}.routes[{i}]", f"{name}[{i}]", i, known, pools, env)
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
    known: Mapping[str, Provider],
    pools: Mapping[str, Account],
    env: Env,
) -> Route:
    m = section(Route, value, path)
    pool = tuple(
        _ref(a, f"{path}.accounts[{j}]", pools, "account")
        for j, a in enumerate(require_list(m.get("accounts"), f"{path}.accounts"))
    )
    if "accounts" in m and not pool:
        raise ConfigError(f"{path}.accounts: an account pool needs at least one account")
    provider_name: str | None = None
    if "provider" in m:
        provider_name = _ref(m["provider"], f"{path}.provider", known, "provider")
    if not pool and provider_name is None:
        raise ConfigError(f"{path}: a route names either 'accounts' (a pool) or a 'provider'")
    pool_providers = {pools[a].provider for a in pool}
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
    values = {"priority": index, **read_fields(Route, m, path, env)}
    model = values["model"]
    if pool and model != WILDCARD and not any(pools[a].serves(model) for a in pool):
        raise ConfigError(f"{path}.model: no account in the pool lists {model!r} in its models")
    timeouts: Timeouts | None = None
    if "timeouts" in m:
        timeouts = read_section(
            Timeouts, m["timeouts"], f"{path}.timeouts", env, known[provider_name].timeouts
        )
    return Route(provider=provider_name, accounts=pool, timeouts=timeouts, label=label, **values)


def resilience(value: object, env: Env) -> Resilience:
    m = section(Resilience, value, "resilience")
    values = read_fields(Resilience, m, "resilience", env)
    base = Resilience()
    deadline: float = values.get("deadline", base.deadline)
    if "failover_reserve" in m:
        reserve = require_duration(m["failover_reserve"], "resilience.failover_reserve", zero=True)
    else:  # unset, the reserve never takes more than a quarter of a short deadline
        reserve = min(base.failover_reserve, deadline / 4)
    if reserve >= deadline:
        raise ConfigError(
            f"resilience.failover_reserve: {reserve:g}s leaves no time for a try within the "
            f"{deadline:g}s deadline; it must be shorter than resilience.deadline"
        )
    return Resilience(failover_reserve=reserve, **values)


def usage(value: object, env: Env) -> str | None:
    """``usage: {dsn: ...}``; ``usage: off`` (or ``dsn: off``) records nothing."""
    if value is False or value == "off":
        return None
    m = require_mapping(value, "usage")
    check_keys(m, "usage", {"dsn"}, required={"dsn"})
    if m["dsn"] is False or m["dsn"] == "off":
        return None
    dsn = expanded_str(m["dsn"], "usage.dsn", env)
    try:
        parse_dsn(dsn)
    except ValueError as exc:
        raise ConfigError(f"usage.dsn: {exc}") from None
    return dsn


def state(value: object, env: Env) -> SharedState:
    """``state: memory`` | ``state: redis://…`` | ``state: {url: redis://…, namespace: …, …}``."""
    if value is None:
        return SharedState()
    if isinstance(value, str):
        text = expanded_str(value, "state", env).strip()
        return SharedState() if text == "memory" else SharedState(url=_state_url(text, "state", env))
    m = section(SharedState, value, "state")
    values = read_fields(SharedState, m, "state", env)
    url = m.get("url")
    if isinstance(url, str):
        url = expanded_str(url, "state.url", env).strip()
    if url is None or url == "memory":
        return SharedState(**values)
    if not _NAME.match(values.get("namespace", "spillgate")):
        raise ConfigError("state.namespace: letters, digits and . _ : / @ * - only")
    return SharedState(url=_state_url(url, "state.url", env), **values)


def _state_url(value: object, path: str, env: Env) -> str:
    url = expanded_str(value, path, env).strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"{path}: expected memory or a Redis URL (redis://host:6379/0, rediss://… for TLS, "
            "unix:///path/redis.sock)"
        )
    return url


def pricing(value: object, known: Mapping[str, Provider], env: Env) -> Pricing:
    """``pricing: off`` | ``{models: {MODEL: PRICE}, providers: {PROVIDER: {MODEL or *: PRICE}}}``,
    a price being ``{input, output, cache_read?, cache_write?}`` in USD per million tokens."""
    if value is False or value == "off":
        return Pricing(enabled=False)
    m = section(Pricing, value, "pricing")
    models = {
        str(name): read_section(Price, price, f"pricing.models.{name}", env)
        for name, price in require_mapping(m.get("models", {}), "pricing.models").items()
    }
    providers: dict[str, dict[str, Price]] = {}
    for name, prices in require_mapping(m.get("providers", {}), "pricing.providers").items():
        where = f"pricing.providers.{name}"
        _ref(name, where, known, "provider")
        providers[str(name)] = {
            str(model): read_section(Price, price, f"{where}.{model}", env)
            for model, price in require_mapping(prices, where).items()
        }
    for where, price in [
        *((f"pricing.models.{n}", p) for n, p in models.items()),
        *((f"pricing.providers.{n}.{m}", p) for n, ps in providers.items() for m, p in ps.items()),
    ]:
        for name in ("input", "output", "cache_read", "cache_write"):
            rate = getattr(price, name)
            if rate is not None and rate < 0:
                raise ConfigError(
                    f"{where}.{name}: a price (USD per million tokens) must be >= 0, got {rate:g}"
                )
    return Pricing(models=models or None, providers=providers or None)


def error_rules(value: object) -> tuple[Rule, ...]:
    try:
        return tuple(parse_rules(value, "error_rules"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _name(value: object, path: str) -> str:
    text = require_str(value, path)
    if not _NAME.match(text):
        raise ConfigError(f"{path}: {text!r} is not a valid name (letters, digits and . _ : / @ * -)")
    return text


def _ref(value: object, path: str, known: Mapping[str, Any], kind: str) -> str:
    name = require_str(value, path)
    if name not in known:
        listing = ", ".join(sorted(known)) or "none configured"
        raise ConfigError(f"{path}: unknown {kind} {name!r} (known: {listing})")
    return name
