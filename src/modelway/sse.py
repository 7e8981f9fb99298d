"""Sans-I/O Server-Sent Events: a tolerant decoder and a minimal encoder.

The decoder takes bytes as they arrive from the network, in pieces of any size, and returns complete
events. It is tolerant of every framing seen from LLM providers:

* ``data:`` with or without a space after the colon (DashScope native and Spark send none);
* comment lines (``:HTTP_STATUS/200``, ``: keep-alive``), which are skipped;
* ``event:``, ``id:`` and ``retry:`` fields;
* multi-line ``data`` (joined with ``\\n``, as the SSE specification says);
* ``\\n``, ``\\r\\n`` or ``\\r`` line ends;
* events split across reads, and UTF-8 characters split across reads (decoding happens per complete line);
* a final event not followed by a blank line when the stream closes (``flush()``).

``[DONE]`` is an ordinary event here; the adapters decide what it means.

The work is linear in the bytes fed, however they are split: a line still waiting for its end is kept as a list of
pieces and joined once, when its end arrives (joining on every read made a 64 MiB line without a newline cost
seconds, stalling every other request of the worker). A single event (its pending line plus the data lines it
has gathered) is bounded by ``max_event_bytes``: beyond it :class:`SSEEventTooLarge` is raised, and the stream
must be abandoned.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEEventTooLarge", "encode_event"]

#: the largest single event a decoder accepts by default (a tool call's arguments or an image can be large)
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEventTooLarge(ValueError):
    """One event (or one line of it) is larger than the decoder's ``max_event_bytes``."""


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event. ``event`` is ``None`` when the server sent no ``event:`` line."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    #: the last comment line of the event, without the colon (DashScope says ``HTTP_STATUS/400`` there)
    comment: str | None = None


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes) -> list[SSEEvent]``, then ``flush()`` when the stream ends."""

    __slots__ = (
        "_parts",
        "_pending",
        "_data",
        "_data_size",
        "_event",
        "_id",
        "_retry",
        "_has_data",
        "_pending_cr",
        "_comment",
        "max_event_bytes",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        #: pieces of the line that has not ended yet, and their total size
        self._parts: list[bytes] = []
        self._pending = 0
        self._data: list[str] = []
        self._data_size = 0
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._has_data = False
        self._pending_cr = False
        self._comment: str | None = None
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes from the network; return the events they complete, in order.

        Raises :class:`SSEEventTooLarge` when the event being read grows over ``max_event_bytes``."""
        if not chunk:
            return []
        if self._pending_cr:
            # a "\r" ended the previous read: a "\n" now belongs to the same line end
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        # (find, not ``in``: bytes.__contains__ first tries its operand as an int, an exception raised and cleared)
        has_cr = chunk.find(b"\r") >= 0
        if not has_cr and chunk.find(b"\n") < 0:
            # the line goes on: keep the piece (joined once, when the line ends)
            self._parts.append(chunk)
            self._pending += len(chunk)
            self._check(0)
            return []
        if has_cr:
            if chunk.endswith(b"\r"):
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._parts:
            self._parts.append(chunk)
            buf = b"".join(self._parts)
            self._parts = []
            self._pending = 0
        else:
            buf = chunk
        events: list[SSEEvent] = []
        start = 0
        limit = self.max_event_bytes
        find = buf.find
        size = len(buf)
        # nothing of an event gathered yet: a "data:" line with a blank line after it is a whole event (the common
        # framing), dispatched here without going through the field-by-field path
        clean = not self._has_data and self._event is None and self._id is None and self._retry is None
        clean = clean and self._comment is None
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            if end - start > limit:  # (data lines also count towards their event's size, in _line)
                self._check(end - start)
            if clean and end + 1 < size and buf[end + 1] == 10 and buf.startswith(b"data:", start):  # (10: "\n")
                value = start + 6 if buf[start + 5] == 32 else start + 5  # (32: the optional space)
                events.append(SSEEvent(buf[value:end].decode("utf-8", errors="replace")))
                start = end + 2
                continue
            ev = self._line(buf[start:end])
            if ev is not None:
                events.append(ev)
            # after a blank line nothing is gathered (it dispatched an event or dropped what it had); after any
            # other line something may be
            clean = end == start
            start = end + 1
        if start < size:
            rest = buf[start:]
            self._parts.append(rest)
            self._pending = len(rest)
            self._check(0)
        return events

    def _check(self, line: int) -> None:
        if self._pending + line + self._data_size > self.max_event_bytes:
            size = self._pending + line + self._data_size
            self._parts = []
            self._pending = 0
            self._reset()
            raise SSEEventTooLarge(f"a server-sent event is larger than {self.max_event_bytes} bytes ({size}+)")

    def flush(self) -> list[SSEEvent]:
        """The stream ended: return the last event if the server did not close it with a blank line."""
        events: list[SSEEvent] = []
        if self._parts:
            line = b"".join(self._parts)
            self._parts = []
            self._pending = 0
            ev = self._line(line)
            if ev is not None:
                events.append(ev)
        ev = self._line(b"")
        if ev is not None:
            events.append(ev)
        return events

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            self._comment = line[1:].strip()  # ":HTTP_STATUS/200", ": keep-alive": kept for the event, if any
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(raw)
            self._has_data = True
            if self._data_size > self.max_event_bytes:
                self._check(0)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry":
            try:
                self._retry = int(value)
            except ValueError:
                pass
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_data and self._event is None:
            self._id = None
            self._retry = None
            self._comment = None
            return None
        ev = SSEEvent("\n".join(self._data), self._event, self._id, self._retry, self._comment)
        self._reset()
        return ev

    def _reset(self) -> None:
        self._data = []
        self._data_size = 0
        self._event = None
        self._id = None
        self._retry = None
        self._has_data = False
        self._comment = None


def encode_event(data: str | bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """Encode one event as ``[event: ...\\n][id: ...\\n]data: ...\\n\\n`` (multi-line data split into lines)."""
    if isinstance(data, str):
        data = data.encode()
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id is not None:
        head += b"id: " + id.encode() + b"\n"
    if data.find(b"\n") >= 0:  # (see feed: cheaper than ``in``)
        body = b"".join(b"data: " + line + b"\n" for line in data.split(b"\n"))
    else:
        body = b"data: " + data + b"\n"
    return head + body + b"\n"
