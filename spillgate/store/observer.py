"""The usage observer: hands every request and attempt event to the recorder, stamped with the time."""

from __future__ import annotations

import time

from spillgate.observe.events import Event
from spillgate.store.recorder import UsageRecorder
from spillgate.store.wire import encode_event


class UsageObserver:
    """Runs on the event loop for every event, so it does the least it can: the event and the time,
    encoded as one small JSON ``bytes`` (in C), go into the recorder's buffer; rows are made in the
    writer process."""

    __slots__ = ("recorder",)

    def __init__(self, recorder: UsageRecorder) -> None:
        self.recorder = recorder

    def __call__(self, event: Event) -> None:
        self.recorder.submit(encode_event(time.time(), event))
