"""OpenAI Chat Completions (``POST /v1/chat/completions``): the internal shape, so parsing is validation and
rendering is framing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidRequestError
from ...types import ChatCompletion, ChatCompletionChunk, ChunkChoice
from ...validate import chat_body_request
from .base import Call, Dialect, StreamRenderer, model_field, stream_field

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request

__all__ = ["ChatDialect", "ChunkRenderer"]

_TOP = frozenset({"model", "messages", "stream"})
_DONE = b"data: [DONE]\n\n"
_MISSING: Any = object()


class ChatDialect(Dialect):
    endpoint = "chat"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        model = data.get("model")
        if type(model) is not str or not model:
            model = model_field(data)  # (raises, or takes a str subclass)
        messages = data.get("messages", _MISSING)
        if messages is _MISSING:
            raise InvalidRequestError("messages is required", param="messages")
        stream = data.get("stream", False)
        if type(stream) is not bool:
            stream = stream_field(data)
        return Call(model, chat_body_request(model, messages, stream, data, _TOP), {})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        return orjson.dumps(resp.to_dict())

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return ChunkRenderer(call.model, call.request.include_usage, request_id)


class ChunkRenderer(StreamRenderer):
    """OpenAI SSE framing of internal chunks: one id for the whole stream, the requested model name, and usage as
    OpenAI sends it (with ``include_usage``: ``"usage": null`` on every chunk, then a ``choices: []`` usage chunk;
    without it: no usage at all); ``data: [DONE]`` at the end.

    The frame's envelope (``data: {"id":...,"object":...,"created":...,"model":...,"choices":``) is encoded once per
    stream, and a choice whose delta is plain text is encoded without building its dicts: the bytes are those
    ``orjson.dumps`` gives for the whole chunk's ``to_dict()`` (keys in the same order)."""

    __slots__ = ("model", "include_usage", "id", "created", "request_id", "head", "tail")

    def __init__(self, model: str, include_usage: bool, request_id: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id: str | None = None
        self.request_id = request_id
        self.created = int(time.time())
        #: the frame up to its choices' first one, and after their last (the head is set with the id, at the first
        #: chunk)
        self.head = b""
        self.tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        if self.id is None:
            self.id = chunk.id or f"chatcmpl-{self.request_id}"
            self.head = (
                b'data: {"id":'
                + orjson.dumps(self.id)
                + b',"object":"chat.completion.chunk","created":'
                + orjson.dumps(self.created)
                + b',"model":'
                + orjson.dumps(self.model)
                + b',"choices":['
            )
        out = b""
        choices = chunk.choices
        if choices:
            if len(choices) == 1:
                out = self.head + _choice(choices[0]) + self.tail
            else:
                out = self.head + b",".join([_choice(c) for c in choices]) + self.tail
        if chunk.usage is not None and self.include_usage:
            out += self.head + b'],"usage":' + orjson.dumps(chunk.usage.to_dict()) + b"}\n\n"
        return out

    async def end(self) -> bytes:
        return _DONE


_INDEX_0 = b'{"index":0,"delta":'


def _choice(c: ChunkChoice) -> bytes:
    """``orjson.dumps(c.to_dict())``, with less work for the common choice: an index 0, a delta of text alone."""
    index = c.index
    head = _INDEX_0 if type(index) is int and index == 0 else b'{"index":' + orjson.dumps(index) + b',"delta":'
    d = c.delta
    if d.role is None and d.reasoning_content is None and not d.tool_calls:
        text = d.content
        delta = b"{}" if text is None else b'{"content":' + orjson.dumps(text) + b"}"
    else:
        delta = orjson.dumps(d.to_dict())
    fr = c.finish_reason
    out = head + delta + (b',"finish_reason":null' if fr is None else b',"finish_reason":' + orjson.dumps(fr))
    if c.logprobs is not None:
        out += b',"logprobs":' + orjson.dumps(c.logprobs)
    return out + b"}"
