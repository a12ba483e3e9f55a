"""Usage items as bytes: how events and records travel from the event loop to the writer.

An item is the JSON array ``[kind, time, fields]``: ``kind`` ``rf`` / ``af`` for a finished request /
attempt event observed at ``time``, ``rr`` / ``ar`` for a ready record (``time`` null). The event loop
encodes each event as it happens (orjson, about a microsecond, in C): the cost is spread evenly over
requests instead of arriving as one burst per batch, and the buffer holds flat ``bytes``, which the
garbage collector never scans. A batch is the items joined into one JSON array.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import orjson

from spillgate.observe.events import AttemptFinished, RequestFinished
from spillgate.store.records import (
    ATTEMPT_COLUMNS,
    REQUEST_COLUMNS,
    AttemptRecord,
    Pending,
    RequestRecord,
    attempt_row,
    request_row,
)

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]

_REQUEST_FIELDS = operator.itemgetter(*REQUEST_COLUMNS)
_ATTEMPT_FIELDS = operator.itemgetter(*ATTEMPT_COLUMNS)
_REQUEST_ATTRS = operator.attrgetter(*REQUEST_COLUMNS)
_ATTEMPT_ATTRS = operator.attrgetter(*ATTEMPT_COLUMNS)


def encode_event(time: float, event: RequestFinished | AttemptFinished) -> bytes:
    return orjson.dumps(("rf" if isinstance(event, RequestFinished) else "af", time, event))


def encode(item: Pending) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, tuple):
        return encode_event(*item)
    return orjson.dumps(("rr" if isinstance(item, RequestRecord) else "ar", None, item))


def join(items: Sequence[Pending]) -> bytes:
    """One JSON array of every item."""
    return b"[" + b",".join(encode(item) for item in items) + b"]"


def rows_of_json(body: bytes) -> Rows:
    """The ``requests`` and ``attempts`` rows of a :func:`join`-ed batch."""
    requests: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    for kind, time, fields in orjson.loads(body):
        if kind == "rf":
            requests.append(request_row(time - fields["latency"], fields.__getitem__))
        elif kind == "af":
            attempts.append(
                attempt_row(time - fields["latency"] - (fields["streamed"] or 0.0), fields.__getitem__)
            )
        elif kind == "rr":
            requests.append(_REQUEST_FIELDS(fields))
        else:
            attempts.append(_ATTEMPT_FIELDS(fields))
    return requests, attempts


def rows_of(items: Sequence[Pending]) -> Rows:
    """The rows of items of any form (records, stamped events or encoded bytes)."""
    encoded = [item for item in items if isinstance(item, bytes)]
    requests, attempts = rows_of_json(join(encoded)) if encoded else ([], [])
    for item in items:
        if isinstance(item, bytes):
            continue
        if isinstance(item, tuple):
            ended, event = item
            if isinstance(event, RequestFinished):
                requests.append(request_row(ended - event.latency, event.__getattribute__))
            else:
                sent = ended - event.latency - (event.streamed or 0.0)
                attempts.append(attempt_row(sent, event.__getattribute__))
        elif isinstance(item, RequestRecord):
            requests.append(_REQUEST_ATTRS(item))
        elif isinstance(item, AttemptRecord):
            attempts.append(_ATTEMPT_ATTRS(item))
    return requests, attempts
