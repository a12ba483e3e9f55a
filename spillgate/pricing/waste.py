"""Which part of a request's cost bought nothing: the decision, from how each billed attempt was used.

Only attempts the upstream billed take part (those that failed before any output cost 0 and
waste nothing). The rule compares what was spent with what one attempt that answered in full
would have cost:

- a **replay** generates the whole answer again: every billed attempt before it is wasted (the
  client's text came from them, but the replay paid for all of it a second time);
- a **continuation** reads the prompt again, with the text already sent as a prefill: its input is
  wasted, its output is the rest of the answer;
- an answer that could not be relayed (a non-stream answer to a stream's recovery) is wasted;
- a request that ends without a whole answer (an in-band error: the client retries the turn and
  receives that text twice) wastes everything it cost;
- a client that goes away wastes nothing the gateway could have saved (what it was sent, it had).

Unknown costs stay unknown (``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class Use(Enum):
    ANSWER = "answer"
    """Relayed to the client as the answer (or its first part)."""
    CONTINUATION = "continuation"
    REPLAY = "replay"
    DISCARDED = "discarded"
    """Answered, but nothing of it reached the client."""


@dataclass(frozen=True, slots=True)
class Billed:
    use: Use
    cost: float | None
    input_cost: float | None
    """The part of ``cost`` its input tokens make (a continuation wastes that)."""


def wasted(billed: Sequence[Billed], *, completed: bool) -> list[float | None]:
    """The wasted part of each attempt's cost, in order; ``completed``: the client got a whole
    answer (or left before the end), rather than an in-band error."""
    if not completed:
        return [b.cost for b in billed]
    waste: list[float | None] = [0.0 if b.cost is not None else None for b in billed]
    for i, b in enumerate(billed):
        if b.use is Use.REPLAY:
            for j in range(i):
                waste[j] = billed[j].cost
        elif b.use is Use.CONTINUATION:
            waste[i] = b.input_cost if b.cost is not None else None
        elif b.use is Use.DISCARDED:
            waste[i] = b.cost
    return waste
