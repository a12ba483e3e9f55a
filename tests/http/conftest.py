from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spillgate.fake import FakeUpstream


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start("127.0.0.1", 0)
    yield upstream
    await upstream.close()
