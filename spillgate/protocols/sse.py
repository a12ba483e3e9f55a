"""Incremental splitting of a Server-Sent Events byte stream into whole events."""

from __future__ import annotations


class SseSplitter:
    """Feed raw bytes; get back the complete events (each with its blank-line terminator).

    Framing is preserved byte for byte: joining everything :meth:`feed` returns plus
    :meth:`tail` gives back the input. Handles ``\\n\\n`` and ``\\r\\n\\r\\n`` terminators.
    """

    __slots__ = ("_buffer", "_crlf")

    def __init__(self) -> None:
        self._buffer = b""
        self._crlf: bool | None = None

    def feed(self, data: bytes) -> bytes:
        """The complete events now available, concatenated (b"" when none)."""
        buffer = self._buffer + data if self._buffer else data
        if self._crlf is None:
            if b"\r\n" in buffer:
                self._crlf = True
            elif b"\n" in buffer:
                self._crlf = False
            else:
                self._buffer = buffer
                return b""
        sep = b"\r\n\r\n" if self._crlf else b"\n\n"
        end = buffer.rfind(sep)
        if end < 0:
            self._buffer = buffer
            return b""
        cut = end + len(sep)
        self._buffer = buffer[cut:]
        return buffer[:cut]

    def tail(self) -> bytes:
        """Bytes of an event that never got its terminator."""
        return self._buffer
