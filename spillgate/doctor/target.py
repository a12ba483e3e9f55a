"""What the doctor probes: a base URL with a key and a model, or every route of a configured alias.

Pure: building targets reads nothing but its arguments (the config is loaded by the command).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from spillgate.config.schema import Account, Provider, ProviderProtocol, Secret, Settings
from spillgate.protocols.adapter import adapters, family_adapter
from spillgate.protocols.apis import DEFAULT_FAMILY, Api

ProtocolChoice = str
"""``auto`` or an API's ``--protocol`` name (its adapter's ``cli_name``)."""
PROTOCOL_CHOICES: tuple[ProtocolChoice, ...] = ("auto", *(api.adapter.cli_name for api in Api))
"""``auto``, ``openai-chat``, ``openai-responses``, ``anthropic``."""

MAX_PROBES = 8
"""No run sends more requests than this, whatever the target."""
MAX_OUTPUT_TOKENS = 16
"""The output limit of every probe: small, but at the Responses API's minimum."""
DEFAULT_TIMEOUT = 20.0
"""Seconds one probe may take, connecting and reading included."""


def _chosen(choice: str) -> Api | None:
    """The API a ``--protocol`` name picks (each adapter's ``cli_name``); ``None`` for ``auto``."""
    return next((a.api for a in adapters() if a.cli_name == choice), None)


def mask_key(secret: Secret | None) -> str | None:
    """A credential as it may be shown: ``sk-…abcd`` at most; short keys show nothing of themselves."""
    if secret is None:
        return None
    key = secret.reveal()
    if len(key) < 12:
        return "…" if key else None
    return f"{key[:3]}…{key[-4:]}"


def root_url(base_url: str) -> str:
    """The URL under which ``/v1/...`` lives: with or without a trailing ``/v1`` (or ``/``) given.

    Raises :class:`ValueError` for anything that is not an http(s) URL with a host.
    """
    text = base_url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a base URL takes no credentials: pass the key with --api-key-env VAR")
    if parts.query or parts.fragment:
        raise ValueError(f"a base URL takes no query or fragment: {base_url!r}")
    root = text.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root


_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")
"""Names that never leave this machine or its network: RFC 6761 ``localhost``, mDNS ``.local``,
Docker's ``host.docker.internal``, home routers' ``.lan`` and RFC 8375 ``home.arpa``."""


def local_host(host: str) -> bool:
    """Whether ``host`` is on this machine or a private network, where a local model server runs
    (Ollama, vLLM, llama.cpp, LM Studio): a loopback, private or link-local address,
    ``localhost``, a single-label name (a compose service such as ``ollama``) or a local domain."""
    name = host.strip("[]").lower().rstrip(".")
    if not name:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or "." not in name or name.endswith(_LOCAL_SUFFIXES)
    return address.is_loopback or address.is_private or address.is_link_local


def other_openai_api(api: Api) -> Api | None:
    """The other API of an OpenAI-compatible server (Chat <-> Responses); ``None`` for Messages."""
    pair = (Api.OPENAI_CHAT, Api.OPENAI_RESPONSES)
    if api not in pair:
        return None
    return pair[1] if api is pair[0] else pair[0]


def default_api(family: ProviderProtocol, model: str) -> Api:
    """The API to probe a model with on a provider of ``family``.

    Codex models are served on the Responses API only (Codex CLI speaks nothing else).
    """
    for adapter in adapters():
        if adapter.family == family and adapter.claims_model(model):
            return adapter.api
    return family_adapter(family).api


def model_family(model: str) -> ProviderProtocol:
    """The provider protocol a model's name suggests (``claude-…``: Anthropic), else the default."""
    claimed = next((a for a in adapters() if a.claims_model(model)), None)
    return claimed.family if claimed is not None else DEFAULT_FAMILY


def candidate_apis(choice: ProtocolChoice, model: str, root: str) -> tuple[Api, ...]:
    """The APIs to try, in order: one when chosen; with ``auto`` a best guess and one fallback
    (used only when the first answers 404/405 on its path)."""
    chosen = _chosen(choice)
    if chosen is not None:
        return (chosen,)
    if choice != "auto":
        raise ValueError(f"unknown protocol {choice!r}")
    host = (urlsplit(root).hostname or "").lower()
    first = next(
        (a for a in adapters() if a.claims_model(model) or a.claims_host(host)),
        family_adapter(DEFAULT_FAMILY),
    )
    return (first.api, first.probe_fallback)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a probe goes and whose credential it carries (the gateway's own provider/account types)."""

    provider: Provider
    account: Account | None = None
    label: str = ""
    """A configured route, e.g. ``coder[0]/oa-1``; empty for a base URL given on the command line."""

    @property
    def secret(self) -> Secret | None:
        return self.account.api_key if self.account is not None else self.provider.api_key

    @property
    def key_hint(self) -> str | None:
        return mask_key(self.secret)

    @property
    def host(self) -> str:
        parts = urlsplit(self.provider.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or "?"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class UrlTarget:
    """``--base-url URL --api-key KEY --model MODEL``: any OpenAI- or Anthropic-compatible endpoint."""

    root: str
    """The base URL without its ``/v1`` (see :func:`root_url`)."""
    model: str
    apis: tuple[Api, ...]
    """The API to probe with, then (``auto`` only) the one fallback."""
    key: Secret | None = None
    compare: tuple[str, ...] = ()
    """Other models to compare with (default: picked from the endpoint's model list)."""

    def endpoint(self, api: Api) -> Endpoint:
        adapter = api.adapter
        base = self.root + adapter.provider_base_path
        provider = Provider(
            name=urlsplit(self.root).netloc, protocol=adapter.family, base_url=base, api_key=self.key
        )
        return Endpoint(provider)

    @property
    def key_hint(self) -> str | None:
        return mask_key(self.key)

    @property
    def local(self) -> bool:
        """A server on this machine or a private network (see :func:`local_host`): the doctor also
        checks which OpenAI APIs it serves, for the provider's ``apis:``."""
        return local_host(urlsplit(self.root).hostname or "")


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """One route of an alias with one of its accounts: probed directly against its provider."""

    endpoint: Endpoint
    api: Api
    model: str
    """The route's upstream model name."""


@dataclass(frozen=True, slots=True)
class AliasTarget:
    """``--alias NAME``: every route (and every account of a pool) of a configured alias."""

    alias: str
    routes: tuple[RouteTarget, ...]
    skipped: tuple[str, ...] = ()
    """Route/account pairs not probed, and why (over the probe bound, the account serves other models)."""
    source: str = ""
    """The config file."""


def alias_target(settings: Settings, name: str, choice: ProtocolChoice = "auto") -> AliasTarget:
    """The routes of alias ``name`` (a deprecated name or ``*`` resolve as the gateway does them).

    Raises :class:`ValueError` when no alias serves the name.
    """
    alias, _ = settings.resolve(name)
    if alias is None:
        known = ", ".join(sorted(settings.models)) or "none"
        raise ValueError(f"no model alias serves {name!r} in {settings.source} (aliases: {known})")
    routes: list[RouteTarget] = []
    skipped: list[str] = []
    for route in alias.routes:
        provider = settings.providers[route.provider]
        model = route.upstream_model(name)
        api = _route_api(choice, provider.protocol, model)
        accounts: Sequence[Account | None] = [settings.accounts[a] for a in route.accounts] or [None]
        for account in accounts:
            label = route.label + (f"/{account.id}" if account is not None else "")
            if account is not None and not account.serves(model):
                skipped.append(f"{label}: the account does not serve {model}")
            elif len(routes) >= MAX_PROBES:
                skipped.append(f"{label}: over the limit of {MAX_PROBES} probes")
            else:
                routes.append(RouteTarget(Endpoint(provider, account, label), api, model))
    return AliasTarget(alias.name, tuple(routes), tuple(skipped), settings.source)


def _route_api(choice: ProtocolChoice, family: ProviderProtocol, model: str) -> Api:
    chosen = _chosen(choice)
    if chosen is not None and chosen.family == family:
        return chosen
    return default_api(family, model)
