"""The events the observer tests start from: one answered, non-streamed attempt and its request,
unpriced (the timeline's tests) and at 0.25 USD with nothing wasted (the money tests)."""

from __future__ import annotations

from dataclasses import replace

from spillgate.observe.events import AttemptFinished, RequestFinished

UNPRICED_REQUEST = RequestFinished(
    request_id="r1",
    api="openai-chat",
    public_model="coder",
    client_key=None,
    stream=False,
    ok=True,
    status=200,
    attempts=1,
    route="coder[0]",
    account="oa-1",
    upstream_model="up",
    error_class=None,
    latency=0.03,
    first_token=None,
)
UNPRICED_ATTEMPT = AttemptFinished(
    request_id="r1",
    attempt=1,
    api="openai-chat",
    public_model="coder",
    route="coder[0]",
    provider="oa",
    account="oa-1",
    upstream_model="up",
    stream=False,
    ok=True,
    status=200,
    error_class=None,
    scope=None,
    rule=None,
    phase=None,
    latency=0.03,
    first_byte=None,
)
ATTEMPT = replace(UNPRICED_ATTEMPT, cost_usd=0.25, wasted_usd=0.0)
REQUEST = replace(UNPRICED_REQUEST, client_key="team", cost_usd=0.25, wasted_usd=0.0)
