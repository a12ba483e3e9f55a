"""The priced events the money tests of the observers start from: one answered attempt and its
request, at 0.25 USD, nothing wasted."""

from __future__ import annotations

from tests.store.records import attempt_event, request_event

ATTEMPT = attempt_event(
    request_id="r1",
    public_model="coder",
    route="coder[0]",
    provider="oa",
    account="oa-1",
    upstream_model="up",
    ok=True,
    status=200,
    error_class=None,
    scope=None,
    rule=None,
    phase=None,
    latency=0.03,
    cost_usd=0.25,
    wasted_usd=0.0,
)
REQUEST = request_event(
    request_id="r1",
    public_model="coder",
    client_key="team",
    attempts=1,
    route="coder[0]",
    account="oa-1",
    upstream_model="up",
    latency=0.03,
    first_token=None,
    cost_usd=0.25,
    wasted_usd=0.0,
)
