"""Shared fixtures. Tests run on uvloop, the event loop the gateway runs on in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop

from spillgate.fake import FakeUpstream

from .clock import ShiftedClock
from .localmodel import local_model

__all__ = ["local_model"]  # the real local model (llama-cpp-python on loopback), one per session


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def clock() -> ShiftedClock:
    """The test's clock: the fake upstream's, and the gateway's where a scenario starts one."""
    return ShiftedClock()


@pytest.fixture
async def fake(clock: ShiftedClock) -> AsyncIterator[FakeUpstream]:
    """A healthy fake upstream on a free loopback port, on the test's clock."""
    upstream = FakeUpstream(clock=clock)
    await upstream.start("127.0.0.1", 0)
    yield upstream
    await upstream.close()
