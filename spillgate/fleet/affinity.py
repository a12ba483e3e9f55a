"""Session → account bindings shared by every instance.

The planner reads the local table (an LRU, as in memory). A new binding is written to
``<ns>:session:<session>`` with ``state.session_ttl`` and published, so the next request of the
session keeps its account whichever instance it lands on; an instance that starts (or comes back
after an outage of the store) loads the stored bindings, up to the table's capacity.
"""

from __future__ import annotations

from typing import Any

from spillgate.fleet.link import RedisLink
from spillgate.state.memory import SessionAffinity


class SharedAffinity:
    """An :class:`~spillgate.state.stores.AffinityStore` shared through Redis."""

    def __init__(self, link: RedisLink, capacity: int, ttl: float) -> None:
        self.link = link
        self.local = SessionAffinity(capacity)
        self.capacity = capacity
        self.ttl_ms = max(1, int(ttl * 1000))
        link.on("bind", self._received)
        link.on_resync(self.resync)

    def get(self, session: str) -> str | None:
        return self.local.get(session)

    def bind(self, session: str, account: str) -> None:
        if self.local.get(session) == account:
            return
        self.local.bind(session, account)
        key, ttl = self._key(session), self.ttl_ms
        body = {"s": session, "a": account}

        def op(p: Any) -> None:
            p.set(key, account, px=ttl)
            self.link.publish("bind", body, p)

        self.link.write(op)

    def __len__(self) -> int:
        return len(self.local)

    def _key(self, session: str) -> str:
        return self.link.key("session", session)

    def _received(self, body: dict[str, Any]) -> None:
        session, account = body["s"], body["a"]
        if isinstance(session, str) and isinstance(account, str):
            self.local.bind(session, account)

    async def resync(self) -> None:
        prefix = self.link.key("session") + ":"
        cursor: int = 0
        loaded = 0
        while loaded < self.capacity:
            cursor, names = await self.link.client.scan(cursor, match=prefix + "*", count=1000)
            if names:
                values = await self.link.client.mget(names)
                for name, value in zip(names, values, strict=True):
                    if value is None:
                        continue
                    session = (name.decode() if isinstance(name, bytes) else str(name))[len(prefix) :]
                    if self.local.get(session) is None:
                        self.local.bind(session, value.decode() if isinstance(value, bytes) else str(value))
                        loaded += 1
            if cursor == 0:
                break
