"""The usage observer: every request and attempt event becomes a record for the usage store."""

from __future__ import annotations

import time

from spillgate.observe.events import AttemptFinished, Event, RequestFinished
from spillgate.store import AttemptRecord, RequestRecord, UsageRecorder


class UsageObserver:
    """Turns events into records; the recorder buffers them and writes in batches off the hot path."""

    def __init__(self, recorder: UsageRecorder) -> None:
        self.recorder = recorder

    def __call__(self, event: Event) -> None:
        now = time.time()
        if isinstance(event, RequestFinished):
            self.recorder.submit(
                RequestRecord.from_event(
                    event,
                    time=now,
                    client_app=event.client_app,
                    session=event.session,
                    cached_tokens=event.cached_tokens,
                )
            )
        elif isinstance(event, AttemptFinished):
            self.recorder.submit(AttemptRecord.from_event(event, time=now))
