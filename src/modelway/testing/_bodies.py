"""Huge bodies from a few small pieces, for :meth:`Fault.oversized`, :meth:`Fault.long_line` and
:meth:`Fault.gzip_bomb`.

A body is ``head + unit * count + rest + tail`` (an :class:`Expansion`): the provider renders a reply
whose text is :data:`MARKER`; the marker is cut out and its place filled with ASCII filler (inside a JSON
string, so the body stays valid) or with copies of the content event that carried it. Nothing of the
body's size is ever built in memory, and its gzip encoding reuses one deflated copy of ``unit``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ._common import Stream

__all__ = ["MARKER", "Expansion", "GzipBody", "json_expansion", "line_expansion", "stream_expansion"]

#: the text of the reply rendered to find where the filler goes
MARKER = "modelway-sim-filler-4f1c9e27"
_MARK = MARKER.encode()
#: what the filler is made of: letters inside a JSON string, blanks outside one
_LETTER, _BLANK = b"x", b" "
#: content bytes per copied stream event (realistic events are small; 1 KiB keeps them few)
EVENT_CONTENT = 1024
#: how much one written piece holds
UNIT = 256 * 1024
#: the repeated unit of a gzip body (bigger units deflate better: about 1000:1 for filler)
GZIP_UNIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Expansion:
    """``head + unit * count + rest + tail``."""

    head: bytes
    unit: bytes
    count: int
    rest: bytes
    tail: bytes

    @property
    def size(self) -> int:
        return len(self.head) + len(self.unit) * self.count + len(self.rest) + len(self.tail)

    def pieces(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(self.count):
            yield self.unit
        yield self.rest
        yield self.tail


def json_expansion(body: bytes, nbytes: int, *, total: bool = False, unit: int = UNIT) -> Expansion:
    """``body`` with the marker replaced by ``nbytes`` of letters, or by as many as make the whole body
    ``nbytes`` when ``total`` (a body without the marker, such as an embeddings answer, gets trailing
    blanks instead: still valid JSON)."""
    head, found, tail = body.partition(_MARK)
    fill = _LETTER if found else _BLANK
    count, left = divmod(max(0, nbytes - len(head) - len(tail)) if total else nbytes, unit)
    return Expansion(head, fill * unit, count, fill * left, tail)


def stream_expansion(prelude: bytes, stream: Stream, nbytes: int, unit: int = UNIT) -> Expansion:
    """The stream with its marker event copied (each copy carrying :data:`EVENT_CONTENT` letters) until the
    whole is about ``nbytes``; later events that repeat the marker (cumulative output) get it removed. A
    stream without a marker event gets SSE comment lines as filler."""
    at = next((i for i, event in enumerate(stream.events) if _MARK in event), None)
    if at is None:
        head, template, after = prelude + b"".join(stream.events), b": " + _MARK + b"\n\n", []
    else:
        head, template, after = prelude + b"".join(stream.events[:at]), stream.events[at], stream.events[at + 1 :]
    tail = b"".join(event.replace(_MARK, b"") for event in after) + stream.tail
    event = template.replace(_MARK, _LETTER * EVENT_CONTENT)
    block = event * max(1, unit // len(event))
    count, left = divmod(max(0, nbytes - len(head) - len(tail)), len(block))
    rest = event * (left // len(event))
    overhead = len(template) - len(_MARK)
    if left % len(event) > overhead:
        rest += template.replace(_MARK, _LETTER * (left % len(event) - overhead))
    return Expansion(head, block, count, rest, tail)


def line_expansion(head: bytes, nbytes: int, unit: int = UNIT) -> Expansion:
    """``head`` then one ``data:`` line of ``nbytes`` (``data: `` included) without a newline."""
    count, left = divmod(max(0, nbytes - 6), unit)
    return Expansion(head + b"data: ", _LETTER * unit, count, _LETTER * left, b"")


def _deflate(data: bytes, *, final: bool = False) -> bytes:
    """Raw deflate of ``data`` from a fresh compressor, ending byte-aligned (a full flush) unless
    ``final``: such pieces refer to nothing before them, so they can be concatenated and repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


#: magic, deflate, no flags, no mtime, maximum compression, unknown OS
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


class GzipBody:
    """The gzip encoding (RFC 1952) of an :class:`Expansion`, written from a few deflated pieces; the
    CRC-32 of the decoded bytes is computed on the way."""

    def __init__(self, body: Expansion, batch: int = 64 * 1024) -> None:
        self.body = body
        self._head = _GZIP_HEADER + _deflate(body.head)
        self._unit = _deflate(body.unit)
        self._end = _deflate(body.rest) + _deflate(body.tail, final=True)
        #: copies of the deflated unit per write
        self._per_write = max(1, batch // len(self._unit))

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self._head) + len(self._unit) * self.body.count + len(self._end) + 8

    def pieces(self) -> Iterator[bytes]:
        body = self.body
        crc = zlib.crc32(body.head)
        yield self._head
        left = body.count
        while left:
            n = min(left, self._per_write)
            for _ in range(n):
                crc = zlib.crc32(body.unit, crc)
            yield self._unit * n
            left -= n
        crc = zlib.crc32(body.tail, zlib.crc32(body.rest, crc))
        yield self._end + struct.pack("<II", crc, body.size & 0xFFFFFFFF)
