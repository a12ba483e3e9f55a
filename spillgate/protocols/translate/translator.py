"""One client API joined to one upstream API: the request encoded for the upstream, its answer
(whole or streamed) encoded for the client. Each side is its API's codec (``codec.py``); this
module only joins them, with the tool mapping (``tools.py``) in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from spillgate.protocols.apis import Api
from spillgate.protocols.events import parse_event, split_events
from spillgate.protocols.sse import MAX_EVENT_BYTES, SseSplitter
from spillgate.protocols.translate.canonical import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Carried,
    Image,
    Request,
    Response,
    StreamEvent,
    ToolCall,
    ToolResult,
    Uncarriable,
)
from spillgate.protocols.translate.codec import ClientContext, Codec, Malformed, Target
from spillgate.protocols.translate.tools import StreamToolMapper, ToolMap, prepare, uses_tools

_BROKEN = (Malformed, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)
"""What a codec reading an upstream's bytes may raise (only Malformed by contract; the rest is
the last line, as for the stream tracker)."""


_CODECS: dict[Api, Codec] = {}


def codec_of(api: Api) -> Codec:
    """The codec of ``api`` (its adapter names it)."""
    codec = _CODECS.get(api)
    if codec is None:
        codec = _CODECS[api] = api.adapter.codec
    return codec


def decode_request(api: Api, data: Mapping[str, Any]) -> Request:
    """A client's body of ``api`` as a canonical request (an ``invalid`` GatewayError names a bad field)."""
    return codec_of(api).decode_request(data)


@dataclass(frozen=True, slots=True)
class Fit:
    """What a route can take (its declared capabilities)."""

    tools: bool = True
    images: bool = True
    reasoning: bool | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """A request encoded for an upstream API."""

    body: bytes
    omitted: tuple[str, ...]
    """What the upstream was not given (hosted tools, reasoning of another provider…)."""
    tools: ToolMap


ANY_FIT = Fit()
"""A route that declares no capabilities: it takes anything."""


def check_fit(request: Request, fit: Fit) -> None:
    """Raise :class:`Uncarriable` when the route's capabilities cannot take ``request``."""
    if not fit.tools and (request.tools or uses_tools(request)):
        raise Uncarriable("the request uses tools and the route declares capabilities.tools: false")
    if not fit.images and _has_images(request):
        raise Uncarriable("the request has an image and the route declares capabilities.images: false")


def _has_images(request: Request) -> bool:
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, Image):
                return True
            if (
                isinstance(part, ToolResult)
                and not isinstance(part.output, str)
                and any(isinstance(p, Image) for p in part.output)
            ):
                return True
    return False


def encode_request(
    request: Request, api: Api, model: str, fit: Fit = ANY_FIT, prefill: str | None = None
) -> Encoded:
    """``request`` as a body of ``api`` for ``model``; raises :class:`Uncarriable`.
    ``prefill``: ask the upstream to continue this assistant text (its adapter says how)."""
    check_fit(request, fit)
    carried = Carried()
    prepared, tools = prepare(request, carried)
    limit = fit.max_output_tokens
    if limit is not None and prepared.max_output_tokens is not None and prepared.max_output_tokens > limit:
        carried.omit(f"max output tokens clamped to {limit}")
        prepared = replace(prepared, max_output_tokens=limit)
    target = Target(model=model, reasoning=fit.reasoning)
    if limit is not None:
        target = replace(target, max_output_tokens=limit)
    data = codec_of(api).encode_request(prepared, target, carried)
    if prefill is not None:
        continued = api.adapter.prefill(data, prefill)
        if continued is None:
            raise Uncarriable(f"a {api.title} request cannot be continued from a prefill")
        data = continued
    return Encoded(orjson.dumps(data), tuple(carried.omitted), tools)


class AnswerTranslator:
    """An upstream's answers of ``upstream`` API as answers of the ``client`` API."""

    def __init__(self, upstream: Api, client: Api, ctx: ClientContext, tools: ToolMap) -> None:
        self.upstream = codec_of(upstream)
        self.client = codec_of(client)
        self.ctx = ctx
        self.tools = tools

    def response(self, body: bytes) -> bytes:
        """A whole answer's body; raises :class:`Malformed` when the upstream's cannot be read."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"the upstream's body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise Malformed("the upstream's body is not a JSON object")
        try:
            answer = self.upstream.decode_response(payload)
        except _BROKEN as exc:
            raise Malformed(str(exc) or type(exc).__name__) from None
        answer = self._restore(answer)
        if answer.model is not None:
            self.ctx.model = answer.model
        return orjson.dumps(self.client.encode_response(answer, self.ctx))

    def _restore(self, answer: Response) -> Response:
        if not any(isinstance(p, ToolCall) for p in answer.parts):
            return answer
        parts = tuple(self._call(p) if isinstance(p, ToolCall) else p for p in answer.parts)
        return replace(answer, parts=parts)

    def _call(self, call: ToolCall) -> ToolCall:
        if not call.arguments and call.kind == "function":
            call = replace(call, arguments=NO_ARGUMENTS)  # "" is no JSON a client can parse
        return self.tools.restore(call) if self.tools.by_flat else call

    def stream(self, max_event: int = MAX_EVENT_BYTES) -> StreamTranslator:
        return StreamTranslator(self, max_event)


NO_ARGUMENTS = "{}"
"""The arguments of a function call the upstream gave none (an upstream that streams no
argument delta for a call without parameters): an empty JSON object, never ``""``."""


class StreamTranslator:
    """An upstream's SSE bytes in, the client's SSE bytes out, event by event as they arrive."""

    __slots__ = ("_bare", "_decoder", "_encoder", "_mapper", "_splitter", "malformed")

    def __init__(self, answers: AnswerTranslator, max_event: int) -> None:
        self._splitter = SseSplitter(max_event)
        self._decoder = answers.upstream.stream_decoder()
        self._encoder = answers.client.stream_encoder(answers.ctx)
        self._mapper = StreamToolMapper(answers.tools) if answers.tools.by_flat else None
        """Only when the request had tools to map back (namespaced, custom)."""
        self.malformed = 0
        """Upstream events that could not be read (dropped)."""
        self._bare: set[int] = set()
        """Function-call blocks that have had no argument text yet (see :data:`NO_ARGUMENTS`)."""

    def feed(self, chunk: bytes) -> bytes:
        """The client's events for the upstream's bytes ``chunk`` (may be ``b""``); raises
        :class:`~spillgate.protocols.sse.EventTooLarge` as the splitter does."""
        blob = self._splitter.feed(chunk)
        if not blob:
            return b""
        out: list[bytes] = []
        for raw in split_events(blob):
            event = parse_event(raw)
            if not event.data:
                continue
            try:
                decoded = self._decoder.feed(event)
            except _BROKEN:
                self.malformed += 1
                continue
            self._encode(decoded, out)
        return b"".join(out)

    def close(self) -> bytes:
        """The upstream's body ended: the client's ending if the answer was complete, else ``b""``."""
        out: list[bytes] = []
        try:
            decoded = self._decoder.close()
        except _BROKEN:
            self.malformed += 1
            return b""
        self._encode(decoded, out)
        return b"".join(out)

    def _encode(self, decoded: list[StreamEvent], out: list[bytes]) -> None:
        mapper, encode = self._mapper, self._encoder.encode
        for event in decoded:
            for mapped in (event,) if mapper is None else mapper.map(event):
                if type(mapped) is not BlockDelta:
                    self._track(mapped, out)
                elif self._bare and mapped.text:
                    self._bare.discard(mapped.index)
                data = encode(mapped)
                if data:
                    out.append(data)

    def _track(self, event: StreamEvent, out: list[bytes]) -> None:
        """Give a function call that ends without arguments an empty object (before its stop)."""
        if isinstance(event, BlockStart):
            if event.kind == "tool" and event.tool_kind == "function":
                self._bare.add(event.index)
        elif isinstance(event, BlockStop) and event.index in self._bare:
            self._bare.discard(event.index)
            data = self._encoder.encode(BlockDelta(event.index, NO_ARGUMENTS))
            if data:
                out.append(data)
