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


FaultKind = Literal["http", "slow_first_byte", "cut_stream", "error_frame", "malformed_json"]


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject. Build one with the class methods; the fields are their arguments."""

    kind: FaultKind
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    after_chunks: int = 0
    reply: Reply | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)

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
