"""The usage observer: hands every request and attempt event to the recorder, stamped with the time."""

from __future__ import annotations

import time

from spillgate.observe.events import Event
from spillgate.store import UsageRecorder


class UsageObserver:
    """Runs on the event loop for every event, so it does the least it can: the event (immutable)
    and the time go into the recorder's buffer; records and rows are made on the store's thread."""

    __slots__ = ("recorder",)

    def __init__(self, recorder: UsageRecorder) -> None:
        self.recorder = recorder

    def __call__(self, event: Event) -> None:
        self.recorder.submit((time.time(), event))
