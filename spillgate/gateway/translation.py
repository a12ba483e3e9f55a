"""One request's translated forms: its canonical reading and its bodies for other APIs, made on
first need (a request served natively never decodes more than it did) and kept for the
request's other attempts and for the planner's checks."""

from __future__ import annotations

import functools
from collections.abc import Callable

from spillgate.config.schema import Capabilities, Route
from spillgate.http.client import FailureKind, UpstreamFailure
from spillgate.http.transport import Reply
from spillgate.protocols.apis import Api
from spillgate.protocols.errors import GatewayError
from spillgate.protocols.request import ParsedRequest
from spillgate.protocols.sse import EventTooLarge
from spillgate.protocols.translate.canonical import Request, Uncarriable
from spillgate.protocols.translate.codec import ClientContext
from spillgate.protocols.translate.translator import (
    AnswerTranslator,
    Encoded,
    Fit,
    StreamTranslator,
    check_fit,
    decode_request,
    encode_request,
)

from .attempt import Attempt

_EncodeKey = tuple[Api, str, Fit, str | None]


@functools.lru_cache(maxsize=256)
def fit_of(capabilities: Capabilities) -> Fit:
    """A route's declared capabilities as the translator reads them (one per configuration's
    capabilities: the planner asks for every route of every request)."""
    return Fit(
        tools=capabilities.tools,
        images=capabilities.images,
        reasoning=capabilities.reasoning,
        max_output_tokens=capabilities.max_output_tokens,
    )


class Translation:
    """The translated forms of one client request (``parsed``)."""

    __slots__ = ("_encoded", "_request", "parsed")

    def __init__(self, parsed: ParsedRequest) -> None:
        self.parsed = parsed
        self._request: Request | Uncarriable | None = None
        self._encoded: dict[_EncodeKey, Encoded | Uncarriable] = {}

    def request(self) -> Request:
        """The canonical request; :class:`Uncarriable` when the client's body cannot be read as
        one (a field of the wrong type: a native route may still take it as it is)."""
        found = self._request
        if found is None:
            try:
                found = decode_request(self.parsed.api, self.parsed.data)
            except GatewayError as error:
                found = Uncarriable(f"cannot be translated: {error.message}")
            self._request = found
        if isinstance(found, Uncarriable):
            raise found
        return found

    def encoded(self, api: Api, model: str, route: Route, prefill: str | None = None) -> Encoded:
        """The body for ``api`` and ``model`` on ``route``; raises :class:`Uncarriable`."""
        fit = fit_of(route.capabilities)
        key = (api, model, fit, prefill)
        found = self._encoded.get(key)
        if found is None:
            try:
                found = encode_request(self.request(), api, model, fit, prefill)
            except Uncarriable as why:
                found = why
            self._encoded[key] = found
        if isinstance(found, Uncarriable):
            raise found
        return found

    def check_native(self, route: Route) -> None:
        """Raise :class:`Uncarriable` when a route of the client's own API declares it cannot
        take what the request has (images, tools); a route that declares nothing costs nothing."""
        if route.capabilities.restricts:
            check_fit(self.request(), fit_of(route.capabilities))

    def answers(self, attempt: Attempt, encoded: Encoded, estimated_input: int) -> AnswerTranslator:
        request = self.request()
        ctx = ClientContext(
            model=attempt.upstream_model,
            include_usage=request.include_usage,
            estimated_input_tokens=estimated_input,
        )
        return AnswerTranslator(attempt.api, self.parsed.api, ctx, encoded.tools)


class TranslatedReply:
    """An upstream's streamed response read as the client's API: each chunk translated as it
    arrives (the commit point, the tracker and the stream session see the client's events)."""

    __slots__ = ("_ended", "headers", "inner", "on_malformed", "status", "translator")

    def __init__(
        self, inner: Reply, translator: StreamTranslator, on_malformed: Callable[[int], None]
    ) -> None:
        self.inner = inner
        self.status = inner.status
        self.headers = inner.headers
        self.translator = translator
        self.on_malformed = on_malformed
        self._ended = False

    def header(self, name: str) -> str | None:
        return self.inner.header(name)

    async def next_chunk(self, idle_timeout: float) -> bytes | None:
        if self._ended:
            return None
        chunk = await self.inner.next_chunk(idle_timeout)
        translator = self.translator
        before = translator.malformed
        try:
            if chunk is None:
                self._ended = True
                tail = translator.close()
                return tail or None
            return translator.feed(chunk)
        except EventTooLarge as exc:
            raise UpstreamFailure(FailureKind.PROTOCOL, str(exc)) from None
        finally:
            if translator.malformed != before:
                self.on_malformed(translator.malformed - before)

    async def read(self, timeout: float, limit: int | None = None) -> bytes:
        return await self.inner.read(timeout, limit)

    def finish(self) -> None:
        self.inner.finish()

    def close(self) -> None:
        self.inner.close()
