"""One adapter per wire API: everything the gateway and the doctor know about an API's wire format.

Code outside ``protocols/`` never branches on which :class:`~spillgate.protocols.apis.Api` a
request speaks: it asks ``adapter_for(api)`` (or ``api.adapter``). The adapters live one per
module (``chat.py``, ``responses.py``, ``messages.py``) and are listed in :func:`_load`; see
"How to add a wire API" in ``docs/architecture.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from spillgate.protocols.apis import Api, ProviderProtocol
from spillgate.protocols.errors import GatewayError, is_error_body, render_error

if TYPE_CHECKING:
    from spillgate.protocols.events import Event, Kind, StreamTracker
    from spillgate.protocols.translate.codec import Codec
    from spillgate.protocols.usage import Usage


class WireAdapter(ABC):
    """One wire API. Subclasses set the attributes and implement the abstract methods; one
    instance per API is registered (stateless: per-stream state lives in the StreamTracker)."""

    # -- identity and addressing ---------------------------------------------------------------
    api: Api
    title: str
    """For people: ``"OpenAI Chat Completions"``."""
    short_name: str
    """Its word in the config (``apis: [chat]``), the doctor's advice and the metrics."""
    client_paths: tuple[str, ...]
    """The gateway paths clients call this API on (``ROUTES`` in apis.py lists the same)."""
    upstream_suffix: str
    """Appended to a provider's base URL (OpenAI base URLs end in /v1, Anthropic's do not)."""
    family: ProviderProtocol
    """The provider protocol that serves this API (and the shape of its errors)."""
    family_default: bool = False
    """The API a provider of :attr:`family` is probed with when nothing else claims the model
    (exactly one adapter per family sets it)."""
    provider_base_path: str
    """What a provider base URL of this family ends in after its root (``/v1`` or ``""``)."""
    models_suffix: str
    """The model listing, relative to the provider's base URL."""
    counts_tokens: bool = False
    """The API has a token-count endpoint: ``/count_tokens`` after its paths (Anthropic's)."""

    def count_paths(self) -> tuple[str, ...]:
        """The gateway paths of its token-count endpoint (none when it has none)."""
        return tuple(p + "/count_tokens" for p in self.client_paths) if self.counts_tokens else ()

    # -- failure answers -----------------------------------------------------------------------
    capacity_status: int = 503
    """The status of "out of capacity" (Anthropic clients know 529)."""
    stop_code: str = "server_error"
    """The error code that tells this API's clients to stop retrying (with ``x-should-retry: false``)."""

    # -- recovery --------------------------------------------------------------------------------
    continuable: bool = True
    """Whether a broken stream can be continued from the text sent (assistant prefill)."""

    # -- doctor -----------------------------------------------------------------------------------
    cli_name: str
    """The doctor's ``--protocol`` name."""
    probe_fallback: Api
    """The API the doctor tries once when this one's path is unknown (404/405)."""

    # -- translation --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def codec(self) -> Codec:
        """This API to and from the canonical representation (``protocols/translate/``)."""

    # -- requests ---------------------------------------------------------------------------------
    @abstractmethod
    def check_conversation(self, data: Mapping[str, Any]) -> None:
        """Raise an ``invalid`` GatewayError when the conversation field has the wrong type."""

    @abstractmethod
    def session_key(self, data: Mapping[str, Any]) -> str | None:
        """The session key the body carries (the session headers are read for every API)."""

    @abstractmethod
    def usage(self, usage: Any) -> Usage | None:
        """A ``usage`` object of this API (``None`` when it is not an object)."""

    # -- streams ------------------------------------------------------------------------------------
    @abstractmethod
    def observe(self, tracker: StreamTracker, event: Event) -> Kind:
        """What ``event`` (non-empty data) is, recorded into ``tracker``. May raise TypeError,
        ValueError, AttributeError, KeyError or IndexError (counted as malformed by the caller)."""

    @abstractmethod
    def text_delta(self, tracker: StreamTracker, text: str) -> bytes:
        """A content event carrying ``text`` in the client's stream's ids (``text`` is kept)."""

    @abstractmethod
    def stream_end(self, tracker: StreamTracker) -> bytes:
        """The normal terminator (``b""`` when only the upstream can end the stream)."""

    @abstractmethod
    def in_band_error(self, tracker: StreamTracker, message: str) -> bytes:
        """An in-stream error the client retries, ending a stream that cannot be completed."""

    @abstractmethod
    def rewrite(self, tracker: StreamTracker, payload: Any, name: str | None, raw: bytes) -> bytes:
        """Another upstream's event (decoded ``payload``, SSE ``name``, bytes ``raw``) in the ids and
        sequence of the client's stream, which ``tracker`` follows."""

    @abstractmethod
    def prefill(self, data: dict[str, Any], prefill: str) -> dict[str, Any] | None:
        """``data`` (a copy, the client's body) asking to continue the assistant text ``prefill``;
        ``None`` when this API cannot (see :attr:`continuable`)."""

    def prefill_body(self, data: Mapping[str, Any], text: str, model: str) -> tuple[bytes, str] | None:
        """A request for ``model`` continuing ``text``, and the trailing whitespace left out of
        the prefill; ``None`` when the API cannot be continued."""
        prefill = text.rstrip()
        body = dict(data)
        body["model"] = model
        continued = self.prefill(body, prefill)
        if continued is None:
            return None
        return orjson.dumps(continued), text[len(prefill) :]

    # -- errors and credentials ----------------------------------------------------------------------
    def error_body(self, error: GatewayError) -> tuple[list[tuple[str, str]], bytes]:
        """Headers and body of ``error`` in this API's error shape."""
        return render_error(self.family, error)

    def is_error_body(self, body: bytes) -> bool:
        """Whether ``body`` is an error in this API's own shape."""
        return is_error_body(self.family, body)

    @abstractmethod
    def auth_headers(self, secret: str | None, client_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The headers that authenticate to a provider of :attr:`family` (and version it)."""

    # -- doctor -----------------------------------------------------------------------------------
    @abstractmethod
    def probe_body(self, model: str, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        """The smallest request that makes ``model`` answer ``prompt``."""

    def token_limit_field(self, model: str) -> str:
        """The output-limit field of a minimal request for ``model``."""
        return "max_tokens"

    def claims_model(self, model: str) -> bool:
        """Whether ``model``'s name says it is served on this API (``claude-…``, ``…codex…``)."""
        return False

    def claims_host(self, host: str) -> bool:
        """Whether a base URL's host says it serves this API."""
        return False


# -- shared pieces for the adapters' event writers ---------------------------------------------------
def sse(name: str | None, payload: object) -> bytes:
    """One SSE event: ``data: JSON`` after an ``event:`` line when ``name`` is given."""
    data = orjson.dumps(payload)
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def next_sequence(tracker: StreamTracker) -> int:
    tracker.sequence_number += 1
    return tracker.sequence_number


# -- the registry ----------------------------------------------------------------------------------------
_ADAPTERS: dict[Api, WireAdapter] = {}
_ORDER: list[WireAdapter] = []


def _load() -> None:
    """Import the adapter modules (lazily: they import this one). A new API is named here."""
    from spillgate.protocols.chat import ADAPTER as CHAT
    from spillgate.protocols.messages import ADAPTER as MESSAGES
    from spillgate.protocols.responses import ADAPTER as RESPONSES

    # Most specific first: the doctor asks them in this order which one claims a model.
    for adapter in (MESSAGES, RESPONSES, CHAT):
        _ADAPTERS.setdefault(adapter.api, adapter)
        if adapter not in _ORDER:
            _ORDER.append(adapter)


def adapter_for(api: Api) -> WireAdapter:
    """The adapter of ``api``."""
    adapter = _ADAPTERS.get(api)
    if adapter is None:
        _load()
        adapter = _ADAPTERS.get(api)
        if adapter is None:
            raise LookupError(f"no wire adapter is registered for {api!r}")
    return adapter


def adapters() -> Iterator[WireAdapter]:
    """Every registered adapter, most specific first (the order the doctor asks them in)."""
    if not _ORDER:
        _load()
    return iter(tuple(_ORDER))


_FAMILY_DEFAULTS: dict[str, WireAdapter] = {}


def family_adapter(family: ProviderProtocol) -> WireAdapter:
    """The default adapter of a provider protocol (what serves family-wide things: credentials)."""
    adapter = _FAMILY_DEFAULTS.get(family)
    if adapter is None:
        adapter = next((a for a in adapters() if a.family == family and a.family_default), None)
        if adapter is None:
            raise LookupError(f"no wire adapter is the default of provider protocol {family!r}")
        _FAMILY_DEFAULTS[family] = adapter
    return adapter
