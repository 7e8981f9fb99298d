"""The seam between an inbound API (a *dialect*) and the gateway's one chat path.

A dialect parses a caller's request into the internal :class:`~modelway.types.ChatRequest` (wrapped in a
:class:`Call` with what the dialect needs to answer), and renders what comes back: a whole answer, a stream (its
chunks, its end), an error before the answer started and an error inside a stream. Every chat-like route is served
by :func:`modelway.server.dialects.serve` with its dialect: adding a dialect is one module and one route line.

The rest of the request's path is shared: the control plane's admission and ticket (keys, limits, budgets, usage
records and metrics, labelled with :attr:`Dialect.endpoint`), the router's failover, the disconnect watch and the
bounded shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from ...errors import InvalidRequestError, ModelwayError
from ...types import ChatCompletion, ChatCompletionChunk, ChatRequest
from ..errors import render_error, sse_error

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request

__all__ = ["Call", "Dialect", "StreamRenderer", "model_field", "stream_field"]


@dataclass(slots=True)
class Call:
    """One parsed request: the model name the caller asked for, the internal request, and the dialect's own state
    (``state``: whatever it needs to answer, e.g. an id the caller chose)."""

    model: str
    request: ChatRequest
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return self.request.stream


class StreamRenderer:
    """Renders one stream: ``start`` once before the first chunk, ``chunk`` for each chunk, then either ``end``
    (the stream finished) or ``error`` (it failed after it started; the last frame the caller gets). Returning
    ``b""`` sends nothing. One renderer per stream; it may keep state (open blocks, indices, text so far)."""

    def start(self) -> bytes:
        return b""

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        raise NotImplementedError

    async def end(self) -> bytes:
        """The stream's last frames. Async: a dialect may store the finished answer before the caller hears the
        end (a Responses stream is retrievable once ``response.completed`` arrived)."""
        return b""

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        return sse_error(exc, request_id)


class Dialect:
    """One inbound API. Subclasses set :attr:`endpoint` and implement :meth:`parse`, :meth:`body` and
    :meth:`stream`; the error renderers default to OpenAI's shapes."""

    #: the endpoint label of usage records and metrics (``chat``, ``messages``, ``responses``, ...)
    endpoint: ClassVar[str]

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        """The caller's JSON body → a :class:`Call`; bad input raises
        :class:`~modelway.errors.InvalidRequestError` naming the field (rendered by :meth:`error`)."""
        raise NotImplementedError

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        """A whole answer → the JSON body sent with 200."""
        raise NotImplementedError

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        """A renderer for one streamed answer."""
        raise NotImplementedError

    async def stored(self, resp: ChatCompletion, call: Call, req: Request, gw: Gateway) -> None:
        """Called with a whole answer before it is sent (a dialect that keeps answers stores it here)."""

    def error(self, exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """HTTP status, body and extra headers for an error before the answer started."""
        return render_error(exc, request_id)


def model_field(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required and must be a string", param="model")
    return model


def stream_field(data: dict[str, Any], name: str = "stream") -> bool:
    value = data.get(name, False)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be true or false", param=name)
    return bool(value)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
