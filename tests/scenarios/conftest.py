"""Fixtures of the scenario tests (the harness itself is tests/harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spillgate.fake import FakeUpstream

from ..clock import ShiftedClock
from ..harness import Scenario, scenario_config, start_scenario


@pytest.fixture
async def sc(fake: FakeUpstream, clock: ShiftedClock) -> AsyncIterator[Scenario]:
    scenario = await start_scenario(fake, scenario_config(fake), clock)
    yield scenario
    await scenario.http.close()
    await scenario.app.stop(grace=1)
