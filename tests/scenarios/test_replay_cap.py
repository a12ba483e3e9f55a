"""Issue 10, item 3 through the gateway: a stream keeps at most ``limits.max_replay_text`` of
answer text for recovery; a stream cut past it is not replayed (nothing to check the replay
against) but ended with an in-band error, and its record says ``not_replayable``."""

from __future__ import annotations

import orjson
import pytest

from spillgate.fake import FakeUpstream, Fault
from spillgate.observe.events import RequestFinished

from ..harness import PRIMARY, SECONDARY, scenario_config, start_scenario

LONG = "".join(f"w{i:04d} " for i in range(1000))  # 6,000 characters
"""Sent as 50 deltas of 120 characters; the cut after 30 events leaves ~3,400 characters sent."""


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
@pytest.mark.parametrize(("cap", "replayed"), [("1KiB", False), ("64KiB", True)])
async def test_a_stream_cut_past_the_replay_cap_is_not_replayed(
    fake: FakeUpstream, api: str, cap: str, replayed: bool
) -> None:
    config = scenario_config(fake)
    config["limits"] = {"max_replay_text": cap}
    sc = await start_scenario(fake, config)
    seen: list[object] = []
    sc.app.gateway.events.subscribe(seen.append)
    try:
        fake.set(PRIMARY, Fault(text=LONG, chunks=50, cut_after_events=30))
        fake.set(SECONDARY, Fault(text=LONG, chunks=50))
        result = await sc.ask(api, True)
        assert result.status == 200
        (request,) = [e for e in seen if isinstance(e, RequestFinished)]
        if replayed:
            assert result.ended_normally(api) and result.text(api, True) == LONG
            assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 1)
            assert request.recovered == "replay" and request.ok
        else:
            assert not result.ended_normally(api)
            text = result.text(api, True)
            assert len(text) > 1024 and LONG.startswith(text) and text != LONG
            assert (sc.seen(PRIMARY), sc.seen(SECONDARY)) == (1, 0)
            assert request.recovered == "not_replayable" and not request.ok
            _name, data = result.reply.events()[-1]
            assert orjson.loads(data)  # an in-band error event in the client's protocol
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
