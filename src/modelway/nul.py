"""Sans-I/O decoder of NUL-delimited JSON streams (FastChat's and DB-GPT's model workers).

A worker answers ``/worker_generate_stream`` with frames ``json.dumps(chunk).encode() + b"\\0"``. The decoder
takes bytes as they arrive, in pieces of any size, and returns each complete frame as an
:class:`~modelway.sse.SSEEvent` whose ``data`` is the frame's text, so that the adapters' stream parsers keep
the one contract they have for SSE. Empty frames (two NULs in a row, a trailing newline) are skipped; a last
frame without its NUL is returned by ``flush``. One frame is bounded by ``max_event_bytes``
(:class:`~modelway.sse.SSEEventTooLarge` beyond it); the work is linear in the bytes fed.
"""

from __future__ import annotations

from .sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent, SSEEventTooLarge

__all__ = ["NULDecoder"]


class NULDecoder:
    """``feed(bytes) -> list[SSEEvent]`` for NUL-delimited frames, then ``flush()`` when the stream ends."""

    __slots__ = ("_parts", "_pending", "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []
        self._pending = 0
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if b"\0" not in chunk:
            self._keep(chunk)
            return []
        frames = chunk.split(b"\0")
        rest = frames.pop()  # after the last NUL: the start of the next frame
        if self._parts:
            self._parts.append(frames[0])
            self._check(len(frames[0]))
            frames[0] = b"".join(self._parts)
            self._parts = []
            self._pending = 0
        events = [ev for ev in map(self._event, frames) if ev is not None]
        if rest:
            self._keep(rest)
        return events

    def flush(self) -> list[SSEEvent]:
        """The last frame, when the stream ended without its NUL."""
        if not self._parts:
            return []
        frame = b"".join(self._parts)
        self._parts = []
        self._pending = 0
        ev = self._event(frame)
        return [ev] if ev is not None else []

    def _keep(self, piece: bytes) -> None:
        self._parts.append(piece)
        self._pending += len(piece)
        self._check(0)

    def _check(self, more: int) -> None:
        size = self._pending + more
        if size > self.max_event_bytes:
            self._parts = []
            self._pending = 0
            raise SSEEventTooLarge(f"a stream frame is larger than {self.max_event_bytes} bytes ({size}+)")

    def _event(self, frame: bytes) -> SSEEvent | None:
        if len(frame) > self.max_event_bytes:
            raise SSEEventTooLarge(f"a stream frame is larger than {self.max_event_bytes} bytes ({len(frame)})")
        text = frame.decode("utf-8", errors="replace").strip()
        return SSEEvent(text) if text else None
