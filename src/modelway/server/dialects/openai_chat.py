"""OpenAI Chat Completions (``POST /v1/chat/completions``): the internal shape, so parsing is validation and
rendering is framing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidRequestError
from ...types import ChatCompletion, ChatCompletionChunk
from ...validate import chat_request
from .base import Call, Dialect, StreamRenderer, model_field, stream_field

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request

__all__ = ["ChatDialect", "ChunkRenderer"]

_TOP = frozenset({"model", "messages", "stream"})
_DONE = b"data: [DONE]\n\n"


class ChatDialect(Dialect):
    endpoint = "chat"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        model = model_field(data)
        if "messages" not in data:
            raise InvalidRequestError("messages is required", param="messages")
        stream = stream_field(data)
        params = {k: v for k, v in data.items() if k not in _TOP}
        return Call(model, chat_request(model, data["messages"], stream=stream, params=params))

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        return orjson.dumps(resp.to_dict())

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return ChunkRenderer(call.model, call.request.include_usage, request_id)


class ChunkRenderer(StreamRenderer):
    """OpenAI SSE framing of internal chunks: one id for the whole stream, the requested model name, and usage as
    OpenAI sends it (with ``include_usage``: ``"usage": null`` on every chunk, then a ``choices: []`` usage chunk;
    without it: no usage at all); ``data: [DONE]`` at the end."""

    __slots__ = ("model", "include_usage", "id", "created", "request_id")

    def __init__(self, model: str, include_usage: bool, request_id: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id: str | None = None
        self.request_id = request_id
        self.created = int(time.time())

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        if self.id is None:
            self.id = chunk.id or f"chatcmpl-{self.request_id}"
        base = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        out = b""
        if chunk.choices:
            d = {**base, "choices": [c.to_dict() for c in chunk.choices]}
            if self.include_usage:
                d["usage"] = None
            out = b"data: " + orjson.dumps(d) + b"\n\n"
        if chunk.usage is not None and self.include_usage:
            d = {**base, "choices": [], "usage": chunk.usage.to_dict()}
            out += b"data: " + orjson.dumps(d) + b"\n\n"
        return out

    async def end(self) -> bytes:
        return _DONE
