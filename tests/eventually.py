"""The one polling helper of the suite: wait until a condition holds, or fail saying what."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    what: str = "",
    interval: float = 0.01,
) -> None:
    """Poll ``condition`` (sync or async) every ``interval`` seconds until it is true; an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        await asyncio.sleep(interval)
