"""Bounded decoding of compressed answers: a gzip bomb stops at the answer cap, whatever the reads look like.

The transport asks providers for ``gzip`` or ``deflate`` and decodes answers itself instead of letting aiohttp do it:
aiohttp's decoder bounds the output of one step, but its C parser goes on decoding a whole network read before the
reader can look, so a 256 KiB read of a bomb could become 256 MiB at once (the process peaked at 474 MiB with a
64 MiB cap when the machine was busy and reads were large). Here decoding goes in steps of at most 256 KiB and stops
as soon as the answer is over the cap, so nothing much larger than the cap ever exists.
"""

from __future__ import annotations

import zlib

__all__ = ["ACCEPT_ENCODING", "STEP", "InflateError", "Inflater"]

#: what the transport tells providers it can decode
ACCEPT_ENCODING = "gzip, deflate"
#: the most one decoding step returns (memory stays within the cap plus one step)
STEP = 256 * 1024
#: the Content-Encoding values :class:`Inflater` decodes
_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})


class InflateError(ValueError):
    """The answer's encoding is not one we asked for, or its compressed data is broken or cut short."""


class Inflater:
    """Decodes one answer's body, read by read: ``feed(data, left)`` returns pieces of at most :data:`STEP` bytes,
    no more of them once they hold more than ``left`` bytes (the answer is over its cap); ``close()`` checks the
    body was whole."""

    __slots__ = ("_deflate", "_obj", "_seen")

    def __init__(self, coding: str) -> None:
        coding = coding.strip().lower()
        if coding not in _CODINGS:
            raise InflateError(f"the provider answered with Content-Encoding {coding[:40]!r}, which was not asked for")
        self._deflate = coding == "deflate"
        self._obj: zlib._Decompress | None = None
        self._seen = False

    def feed(self, data: bytes, left: int) -> list[bytes]:
        """The decoded pieces of ``data`` (each at most :data:`STEP` bytes), stopping once they hold more than
        ``left`` bytes: the caller, counting, finds the answer over its cap then."""
        out: list[bytes] = []
        try:
            while data:
                obj = self._obj
                if obj is None:
                    # gzip and zlib-wrapped deflate are told apart by their header (wbits 32 + 15); some servers send
                    # raw deflate as "deflate" (no zlib header: the low nibble of a zlib header's first byte is 8)
                    raw = self._deflate and (data[0] & 0x0F) != 8
                    obj = self._obj = zlib.decompressobj(-zlib.MAX_WBITS if raw else 32 + zlib.MAX_WBITS)
                piece = obj.decompress(data, STEP)
                self._seen = True
                if piece:
                    out.append(piece)
                    left -= len(piece)
                    if left < 0:
                        break  # over the cap: the caller stops here
                if obj.unconsumed_tail:  # the step's limit stopped it
                    data = obj.unconsumed_tail
                elif obj.eof:  # the end of one gzip member: another may follow
                    data = obj.unused_data
                    self._obj = None
                else:
                    data = b""
        except zlib.error as exc:
            raise InflateError(f"the provider's compressed answer is broken: {exc}") from None
        return out

    def close(self) -> None:
        """The body ended: raise :class:`InflateError` if it stopped in the middle of its compressed data."""
        if self._obj is not None and not self._obj.eof and self._seen:
            raise InflateError("the provider's compressed answer was cut short")
