"""Fixtures of the gateway tests (the harness itself is tests/harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spillgate.fake import FakeUpstream

from ..harness import Harness, base_config, start_harness


@pytest.fixture
async def gw(fake: FakeUpstream) -> AsyncIterator[Harness]:
    harness = await start_harness(fake, base_config(fake))
    yield harness
    await harness.http.close()
    await harness.app.stop(grace=1)
