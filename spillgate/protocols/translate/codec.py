"""What one wire API's codec does: its requests, answers and streams to and from the canonical
representation (``canonical.py``).

Three codecs implement it (``chat.py``, ``responses.py``, ``messages.py``); ``translator.py``
joins a client API's codec to an upstream API's. A codec is stateless; per-stream state lives in
the :class:`StreamDecoder` / :class:`StreamEncoder` it makes.

Error conventions:

* ``decode_request`` reads a *client's* body: a field of the wrong type raises an ``invalid``
  :class:`~spillgate.protocols.errors.GatewayError` naming the field (the client hears a 400 in
  its own protocol). Unknown fields are ignored (they are the client's own API's business).
* ``encode_request`` raises :class:`~spillgate.protocols.translate.canonical.Uncarriable` when the
  target cannot carry the request at all, and records in ``carried`` what it left out.
* ``decode_response`` and :meth:`StreamDecoder.feed` read an *upstream's* bytes: a shape they
  cannot use raises :class:`Malformed` (a ``ValueError``); the caller fails the attempt or
  drops and counts the event. They never raise anything else, whatever the upstream sends.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spillgate.protocols.apis import Api
from spillgate.protocols.events import Event
from spillgate.protocols.translate.canonical import Carried, Request, Response, StreamEvent

DEFAULT_MAX_OUTPUT_TOKENS = 8192
"""The output limit sent to an API that requires one (Anthropic) when the client set none."""


class Malformed(ValueError):
    """An upstream answer or event the codec cannot read."""


def random_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits (``resp_…``, ``msg_…``, ``chatcmpl-…``, ``call_…``)."""
    return prefix + os.urandom(12).hex()


CALL_PREFIXES = ("call_", "toolu_", "fc_")
"""The tool-call id prefixes of the APIs (OpenAI, Anthropic, Responses items)."""


def client_call_id(prefix: str, upstream_id: str | None, new_id: Callable[[str], str] = random_id) -> str:
    """An upstream's tool-call id in the client's format, the same every time for one id: kept
    when it already starts with ``prefix``, else its ``call_`` / ``toolu_`` / ``fc_`` prefix
    swapped for ``prefix``; never empty (a new id from ``new_id`` when nothing is left)."""
    if upstream_id and upstream_id.startswith(prefix) and len(upstream_id) > len(prefix):
        return upstream_id
    rest = upstream_id or ""
    for known in CALL_PREFIXES:
        if rest.startswith(known):
            rest = rest[len(known) :]
            break
    return prefix + rest if rest else new_id(prefix)


EFFORT_BY_BUDGET = ((4096, "low"), (16384, "medium"))
"""An Anthropic thinking budget as an OpenAI reasoning effort: under 4096 tokens ``low``, under
16384 ``medium``, else ``high`` (never ``minimal``: only gpt-5 itself takes it)."""


def effort_for_budget(budget_tokens: int) -> str:
    for limit, effort in EFFORT_BY_BUDGET:
        if budget_tokens < limit:
            return effort
    return "high"


@dataclass(frozen=True, slots=True)
class Target:
    """The upstream a request is encoded for."""

    model: str
    """The upstream model name (written into the request's ``model``)."""
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    """Sent when the request has no limit and the API requires one."""
    reasoning: bool | None = None
    """The route's model reasons (``True``), does not (``False``), unknown (``None``: the
    codec decides from the model name)."""


@dataclass(slots=True)
class ClientContext:
    """What an encoder of the client's answer needs to know about the request it answers."""

    model: str
    """The model name the answer reports: the upstream model that answered."""
    include_usage: bool = False
    """Chat: the client asked for the usage chunk."""
    estimated_input_tokens: int = 0
    """Reported where the client's API wants input usage before the upstream said it
    (Anthropic's ``message_start``)."""
    new_id: Callable[[str], str] = random_id
    """Makes the answer's ids (tests pass a deterministic one)."""
    created: int | None = None
    """Unix time for ``created`` fields (``None``: now)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Request fields an encoder echoes back (Responses: ``instructions``, ``tools``...)."""


class StreamDecoder(ABC):
    """One upstream stream's events, in order, as canonical events."""

    @abstractmethod
    def feed(self, event: Event) -> list[StreamEvent]:
        """The canonical events ``event`` (one SSE event, ``data`` non-empty) stands for;
        ``[]`` for pings and events that say nothing new. Raises :class:`Malformed`."""

    @abstractmethod
    def close(self) -> list[StreamEvent]:
        """The upstream's body ended: the events that end the answer if it was complete
        (its finish seen, the terminator missing: open blocks stopped, then :class:`End`),
        else ``[]`` (a cut stream: the caller treats it as one)."""


class StreamEncoder(ABC):
    """Canonical events, in order, as one client stream's SSE bytes (its exact grammar)."""

    @abstractmethod
    def encode(self, event: StreamEvent) -> bytes:
        """The SSE events (whole, each ending in a blank line) for ``event``; ``b""`` for none.
        Tolerates what decoders may omit: a block event before :class:`Start` starts the answer
        first; :class:`End` stops open blocks and finishes the answer if nothing did."""


class Codec(ABC):
    api: Api

    @abstractmethod
    def decode_request(self, data: Mapping[str, Any]) -> Request: ...

    @abstractmethod
    def encode_request(self, request: Request, target: Target, carried: Carried) -> dict[str, Any]: ...

    @abstractmethod
    def decode_response(self, payload: Mapping[str, Any]) -> Response: ...

    @abstractmethod
    def encode_response(self, response: Response, ctx: ClientContext) -> dict[str, Any]: ...

    @abstractmethod
    def stream_decoder(self) -> StreamDecoder: ...

    @abstractmethod
    def stream_encoder(self, ctx: ClientContext) -> StreamEncoder: ...
