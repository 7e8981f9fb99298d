"""What a simulator answers: a scripted :class:`Reply` or a :class:`Fault`.

A simulator keeps a queue of these. Each request to a model endpoint takes the next item; when the queue
is empty it answers with its default reply (``Reply()``: an echo of the last user message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultKind", "Reply"]


@dataclass(slots=True)
class Reply:
    """A successful answer.

    * ``text``: the assistant text. ``None`` means the default: ``"You said: <last user message>"`` when
      there are no ``tool_calls``, no text when there are.
    * ``reasoning``: sent as ``reasoning_content`` (streamed before the text) where the provider has it.
    * ``tool_calls``: ``[{"name": ..., "arguments": "<json str>" | dict}]``; an ``"id"`` key is optional
      (ids are generated otherwise).
    * ``finish_reason``: default ``"tool_calls"`` when ``tool_calls`` are given, else ``"stop"``. Any
      string is sent as is (``"length"``, Zhipu ``"sensitive"``, DeepSeek ``"insufficient_system_resource"``).
    * ``chunks``: explicit stream pieces of the text; by default the text is cut into pieces of
      ``chunk_size`` characters (characters, not bytes: Chinese text is never split inside a character).
    * ``chunk_delay``: seconds to sleep between stream events.
    * ``usage``: ``(prompt_tokens, completion_tokens)``; by default computed from lengths
      (see :func:`modelway.testing.count_tokens`).
    * ``headers``: extra response headers; ``model``: the model name to answer with (default: the
      requested one).
    """

    text: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    chunks: list[str] | None = None
    chunk_size: int = 4
    chunk_delay: float = 0.0
    usage: tuple[int, int] | None = None
    headers: dict[str, str] | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        for call in self.tool_calls or ():
            if "name" not in call:
                raise ValueError(f"tool call without a name: {call!r}")


FaultKind = Literal[
    "http",
    "slow_first_byte",
    "cut_stream",
    "error_frame",
    "malformed_json",
    "reset",
    "stall",
    "oversized",
    "long_line",
    "gzip_bomb",
    "content_type",
]


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject. Build one with the class methods; the fields are their arguments.

    Every kind works for stream and non-stream requests on every simulator (:mod:`modelway.testing.faults`
    plays them): :meth:`http`, :meth:`slow_first_byte`, :meth:`cut_stream`, :meth:`error_frame`,
    :meth:`malformed_json`, :meth:`reset`, :meth:`stall`, :meth:`oversized`, :meth:`long_line`,
    :meth:`gzip_bomb`, :meth:`content_type` and :meth:`json_for_stream`.
    """

    kind: FaultKind
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float | None = 0.0
    #: events sent before the fault (None for :meth:`reset`: before any response byte)
    after_chunks: int | None = 0
    reply: Reply | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    keepalive: float | None = None
    nbytes: int = 0
    media_type: str | None = None
    body: bytes | None = None

    @classmethod
    def http(
        cls,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Answer with HTTP ``status`` and the provider's own error body (with a realistic default code
        for the status when ``code`` is not given). ``retry_after`` adds a ``Retry-After`` header."""
        if status < 400:
            raise ValueError("Fault.http needs an error status (>= 400)")
        return cls(
            "http",
            status=status,
            code=code,
            message=message,
            retry_after=retry_after,
            headers=dict(headers or {}),
        )

    @classmethod
    def slow_first_byte(cls, seconds: float, then: Reply | None = None) -> Fault:
        """Sleep ``seconds`` before sending the response headers, then answer ``then`` (or the default)."""
        return cls("slow_first_byte", seconds=seconds, reply=then)

    @classmethod
    def cut_stream(cls, after_chunks: int = 2, *, reply: Reply | None = None) -> Fault:
        """Send ``after_chunks`` stream events, then close the connection without ending the body (a
        truncated chunked body: no terminator, no ``[DONE]``). A non-stream request gets a body cut in
        the middle (shorter than its ``Content-Length``)."""
        return cls("cut_stream", after_chunks=after_chunks, reply=reply)

    @classmethod
    def error_frame(
        cls,
        after_chunks: int = 2,
        *,
        code: str | None = None,
        message: str | None = None,
        status: int | None = None,
        reply: Reply | None = None,
    ) -> Fault:
        """Inside a 200 stream, after ``after_chunks`` events, send the provider's mid-stream error and end
        the stream. ``status`` is the status the error frame claims (DashScope ``:HTTP_STATUS/...``;
        default 400 there). A non-stream request gets the error as an ordinary HTTP error (status
        default 500)."""
        return cls("error_frame", after_chunks=after_chunks, code=code, message=message, status=status, reply=reply)

    @classmethod
    def malformed_json(cls, after_chunks: int = 0, *, reply: Reply | None = None) -> Fault:
        """Non-stream: a 200 answer whose JSON body is broken. Stream: after ``after_chunks`` events, a
        ``data: {broken`` event, then the stream closes."""
        return cls("malformed_json", after_chunks=after_chunks, reply=reply)

    @classmethod
    def reset(cls, after_chunks: int | None = None, *, reply: Reply | None = None) -> Fault:
        """A TCP reset (``SO_LINGER`` 0, then close: the client sees ``ECONNRESET``). ``after_chunks=None``:
        before any response byte. Otherwise the status line and headers go out first, then ``after_chunks``
        stream events (a non-stream request: half of its JSON body, shorter than its ``Content-Length``);
        the bytes sent before the reset are flushed to the client first."""
        if after_chunks is not None and after_chunks < 0:
            raise ValueError("after_chunks must be >= 0 or None")
        return cls("reset", after_chunks=after_chunks, reply=reply)

    @classmethod
    def stall(
        cls,
        after_chunks: int = 1,
        seconds: float | None = None,
        *,
        keepalive: float | None = None,
        reply: Reply | None = None,
    ) -> Fault:
        """After ``after_chunks`` stream events, send nothing more for ``seconds``, then the rest of the
        stream as usual; ``seconds=None`` stalls until the client goes away (recorded in
        :attr:`~modelway.testing.BaseSimulator.disconnects`). ``keepalive=x`` sends an SSE comment
        (``: keep-alive``) every ``x`` seconds meanwhile: an upstream that sends nothing but keep-alives.
        A non-stream request gets the headers and half of its body (``Content-Length`` set), then the
        stall, then the other half; with ``keepalive`` it gets a blank line every ``x`` seconds before
        the body instead (as DeepSeek does while it works; JSON allows leading whitespace)."""
        if after_chunks < 0 or (seconds is not None and seconds < 0) or (keepalive is not None and keepalive <= 0):
            raise ValueError("Fault.stall needs after_chunks >= 0, seconds >= 0 or None, keepalive > 0 or None")
        return cls("stall", after_chunks=after_chunks, seconds=seconds, keepalive=keepalive, reply=reply)

    @classmethod
    def oversized(cls, nbytes: int, *, reply: Reply | None = None) -> Fault:
        """A 200 answer of about ``nbytes``, far larger than any real one, written out in pieces (never
        built in memory). Non-stream: a valid completion whose content is ``nbytes`` of ASCII filler
        (``Content-Length`` set). Stream: valid content events of 1 KiB each, totalling about ``nbytes``
        with the usual head and end (every copied event repeats the same ``id:`` on DashScope, and content
        is not cumulative there)."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        return cls("oversized", nbytes=nbytes, reply=reply)

    @classmethod
    def long_line(cls, nbytes: int, *, after_chunks: int = 0, reply: Reply | None = None) -> Fault:
        """Stream: after ``after_chunks`` events, one ``data:`` line of ``nbytes`` with no newline (sent
        in pieces), then the body ends and the connection closes. A non-stream request gets
        :meth:`oversized` (a JSON body is a single line already)."""
        if nbytes < 0 or after_chunks < 0:
            raise ValueError("nbytes and after_chunks must be >= 0")
        return cls("long_line", nbytes=nbytes, after_chunks=after_chunks, reply=reply)

    @classmethod
    def gzip_bomb(cls, decoded_bytes: int, *, reply: Reply | None = None) -> Fault:
        """A ``Content-Encoding: gzip`` 200 answer, about 1000 times smaller on the wire than decoded,
        that inflates to exactly ``decoded_bytes``: for a non-stream request, valid completion JSON whose
        content is a huge filler string (``Content-Length`` is the compressed size); for a stream, the
        :meth:`oversized` event stream, gzip-encoded (chunked). The gzip stream is assembled from a few
        deflate pieces computed once per answer, the big one repeated as it is, so it needs no memory and
        little CPU even for gigabytes (the CRC-32 of the decoded bytes: about 0.25 s per GiB)."""
        if decoded_bytes < 0:
            raise ValueError("decoded_bytes must be >= 0")
        return cls("gzip_bomb", nbytes=decoded_bytes, reply=reply)

    @classmethod
    def content_type(
        cls, value: str, body: str | bytes | None = None, *, status: int = 200, reply: Reply | None = None
    ) -> Fault:
        """Answer ``status`` (default 200) with ``Content-Type: value``, whatever the request asked for.
        ``body`` defaults by type: for a JSON type the ordinary non-stream completion (so
        ``content_type("application/json")`` answers a stream request with plain JSON); for
        ``text/event-stream`` the ordinary stream events; for an HTML type an nginx page (the welcome
        page for 200, the error page otherwise); otherwise a line of plain text."""
        raw = body.encode() if isinstance(body, str) else body
        return cls("content_type", status=status, media_type=value, body=raw, reply=reply)

    @classmethod
    def json_for_stream(cls, reply: Reply | None = None) -> Fault:
        """Answer a stream request with an ordinary non-stream JSON completion (``application/json``), as
        servers that ignore ``"stream": true`` do. A non-stream request gets its ordinary answer."""
        return cls.content_type("application/json", reply=reply)
