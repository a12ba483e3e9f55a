"""Incremental splitting of a Server-Sent Events byte stream into whole events."""

from __future__ import annotations

MAX_EVENT_BYTES = 4 * 1024 * 1024
"""The largest event (or run of bytes without an event terminator) an upstream may send."""


class EventTooLarge(ValueError):
    """An upstream sent more than the limit without ending an event."""


class SseSplitter:
    """Feed raw bytes; get back the complete events (each with its blank-line terminator).

    Framing is preserved byte for byte: joining everything :meth:`feed` returns plus
    :meth:`tail` gives back the input. Handles ``\\n\\n`` and ``\\r\\n\\r\\n`` terminators.
    Linear in the input however it is chunked (an unfinished event is kept as a list of pieces,
    and only new bytes are searched), and bounded: more than ``max_event`` bytes without a
    terminator raise :class:`EventTooLarge`.
    """

    __slots__ = ("_crlf", "_max", "_parts", "_size")

    def __init__(self, max_event: int = MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._crlf: bool | None = None
        self._max = max_event

    def feed(self, data: bytes) -> bytes:
        """The complete events now available, concatenated (b"" when none)."""
        if not data:
            return b""
        if self._crlf is None:
            newline = data.find(b"\n")
            if newline < 0:
                return self._keep(data)
            before = (
                data[newline - 1 : newline] if newline else (self._parts[-1][-1:] if self._parts else b"")
            )
            self._crlf = before == b"\r"
        sep = b"\r\n\r\n" if self._crlf else b"\n\n"
        end = data.rfind(sep)
        if end >= 0:
            cut = end + len(sep)
        else:
            cut = self._straddle(data, sep)
            if cut < 0:
                return self._keep(data)
        parts = self._parts
        head = data[:cut]
        out = b"".join((*parts, head)) if parts else head
        parts.clear()
        self._size = 0
        if cut < len(data):
            self._keep(data[cut:])
        return out

    def _straddle(self, data: bytes, sep: bytes) -> int:
        """Where in ``data`` a terminator begun in the kept bytes ends, else -1."""
        if not self._parts:
            return -1
        reach = len(sep) - 1
        tail = b"".join(self._parts)[-reach:] if len(self._parts[-1]) < reach else self._parts[-1][-reach:]
        edge = tail + data[:reach]
        found = edge.find(sep)
        return -1 if found < 0 else found + len(sep) - len(tail)

    def _keep(self, data: bytes) -> bytes:
        self._parts.append(data)
        self._size += len(data)
        if self._size > self._max:
            raise EventTooLarge(f"the upstream sent over {self._max} bytes without ending an event")
        return b""

    def tail(self) -> bytes:
        """Bytes of an event that never got its terminator."""
        return b"".join(self._parts)
