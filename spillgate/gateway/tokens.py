"""``POST /v1/messages/count_tokens`` (Claude Code calls it): relayed to the first healthy route
whose provider has the endpoint, else estimated from the request and marked so
(``x-spillgate-token-count: estimated``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from spillgate.config.schema import Provider, Route
from spillgate.http.client import UpstreamFailure
from spillgate.http.transport import Transport
from spillgate.protocols.apis import Api
from spillgate.protocols.request import ParsedRequest, rewrite_model
from spillgate.protocols.translate.estimate import estimate_input_tokens
from spillgate.protocols.translate.translator import decode_request
from spillgate.resilience.stores import HealthStore

from .attempt import Attempt
from .forward import upstream_headers

log = logging.getLogger("spillgate.tokens")

RELAY_TIMEOUT = 10.0
"""Seconds a relayed count may take before the estimate answers instead."""
_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class TokenCount:
    input_tokens: int
    route: str | None
    """The route whose upstream counted (``None``: estimated here)."""

    def body(self) -> bytes:
        return orjson.dumps({"input_tokens": self.input_tokens})

    def headers(self) -> list[tuple[str, str]]:
        out = [("content-type", "application/json")]
        if self.route is None:
            out.append(("x-spillgate-token-count", "estimated"))
        else:
            out += [("x-spillgate-token-count", "upstream"), ("x-spillgate-route", self.route)]
        return out


async def count_tokens(
    parsed: ParsedRequest,
    routes: tuple[Route, ...],
    providers: Mapping[str, Provider],
    clients: Mapping[str, Transport],
    health: HealthStore,
    client_headers: dict[str, str],
) -> TokenCount:
    """The count of ``parsed`` (a request of an API with a count endpoint). A client body the
    canonical reading refuses raises its ``invalid`` GatewayError (only when it must be estimated)."""
    api = parsed.api
    for route in routes:
        provider = providers[route.provider]
        if not provider.serves(api) or route.accounts:
            continue  # pools: a count is not worth an account's slot; the estimate answers
        attempt = Attempt(route, provider, None, route.upstream_model(parsed.model), api)
        if not all(health.peek(k).allowed for k in attempt.health_keys()):
            continue
        counted = await _relay(attempt, parsed, clients[provider.name], client_headers)
        if counted is not None:
            return TokenCount(counted, route.label)
        break  # one try: a count must not wait on failovers
    return TokenCount(estimate_input_tokens(decode_request(api, parsed.data)), None)


async def _relay(
    attempt: Attempt, parsed: ParsedRequest, client: Transport, client_headers: dict[str, str]
) -> int | None:
    api: Api = attempt.api
    headers = upstream_headers(client_headers, attempt.provider, None)
    try:
        reply = await client.request(
            "POST",
            api.upstream_suffix + "/count_tokens",
            headers,
            rewrite_model(parsed, attempt.upstream_model),
            connect_timeout=min(attempt.timeouts.connect, RELAY_TIMEOUT),
            first_byte_timeout=RELAY_TIMEOUT,
        )
    except UpstreamFailure as failure:
        log.info("token count on %s failed: %s; estimating", attempt.describe(), failure)
        return None
    try:
        body = await reply.read(RELAY_TIMEOUT, _MAX_BODY)
    except UpstreamFailure:
        reply.close()
        return None
    reply.finish()
    if reply.status != 200:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    count = payload.get("input_tokens") if isinstance(payload, dict) else None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return None
