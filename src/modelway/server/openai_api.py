"""The OpenAI-compatible endpoints: chat completions, embeddings, models."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

from ..errors import InvalidRequestError, UnknownModelError
from ..types import ChatCompletionChunk, Usage
from ..validate import chat_request, embedding_request
from .disconnect import watched
from .gateway import Gateway
from .http import Request, Send, send_json
from .ticket import Ticket

__all__ = ["answer", "chat_completions", "embeddings", "list_models", "retrieve_model"]

_TOP = frozenset({"model", "messages", "stream"})


def _model_field(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required and must be a string", param="model")
    return model


async def chat_completions(gw: Gateway, req: Request, send: Send) -> None:
    data = await req.json(gw.config.server.max_body_bytes)
    model = _model_field(data)
    if "messages" not in data:
        raise InvalidRequestError("messages is required", param="messages")
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequestError("stream must be true or false", param="stream")
    params = {k: v for k, v in data.items() if k not in _TOP}
    creq = chat_request(model, data["messages"], stream=bool(stream), params=params)
    router = gw.router
    ticket = await gw.control.begin(req.request_id, req.caller, model, "chat", bool(stream))
    ticket.messages = creq.messages
    if not stream:
        async with ticket:
            resp = await watched(req, router.complete(model, creq, ticket))
            resp.model = model
            await answer(ticket, req, send, resp.usage, orjson.dumps(resp.to_dict()))
        return
    renderer = ChunkRenderer(model, creq.include_usage, req.request_id)
    await ticket.respond_stream(req, send, router.stream(model, creq, ticket), renderer)


class ChunkRenderer:
    """OpenAI SSE framing of internal chunks: one id for the whole stream, the requested model name, and usage as
    OpenAI sends it (with ``include_usage``: ``"usage": null`` on every chunk, then a ``choices: []`` usage chunk;
    without it: no usage at all)."""

    __slots__ = ("model", "include_usage", "id", "created", "request_id")

    def __init__(self, model: str, include_usage: bool, request_id: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id: str | None = None
        self.request_id = request_id
        self.created = int(time.time())

    def __call__(self, chunk: ChatCompletionChunk) -> bytes:
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


async def embeddings(gw: Gateway, req: Request, send: Send) -> None:
    data = await req.json(gw.config.server.max_body_bytes)
    model = _model_field(data)
    if "input" not in data:
        raise InvalidRequestError("input is required", param="input")
    fmt = data.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequestError("encoding_format must be 'float' or 'base64'", param="encoding_format")
    params = {k: v for k, v in data.items() if k not in ("model", "input", "encoding_format")}
    ereq = embedding_request(model, data["input"], params)
    ticket = await gw.control.begin(req.request_id, req.caller, model, "embeddings", False)
    async with ticket:
        resp = await watched(req, gw.router.embed(model, ereq, ticket))
        body = resp.to_dict()
        body["model"] = model
        if fmt == "base64":
            for item in body["data"]:
                vec = item["embedding"]
                item["embedding"] = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        await answer(ticket, req, send, resp.usage, orjson.dumps(body))


async def answer(ticket: Ticket, req: Request, send: Send, usage: Usage | None, payload: bytes) -> None:
    """Send a whole JSON answer, its request counted first: no answered request goes unrecorded."""
    ticket.usage = usage
    ticket.settle(200, usage)
    await send_json(send, 200, payload, request_id=req.request_id, headers=ticket.rate_headers())


async def list_models(gw: Gateway, req: Request, send: Send) -> None:
    models = gw.models()
    key = req.caller.key
    if key is not None and key.models is not None:  # a key sees the models it may call
        allowed = set(key.models)
        models = [m for m in models if m.id in allowed]
    await send_json(send, 200, {"object": "list", "data": [m.to_dict() for m in models]}, request_id=req.request_id)


async def retrieve_model(gw: Gateway, req: Request, send: Send, model_id: str) -> None:
    key = req.caller.key
    # a model outside the caller's key's list does not exist for it (as in /v1/models)
    info = None if key is not None and key.models is not None and model_id not in key.models else gw.model(model_id)
    if info is None:
        raise UnknownModelError(f"the model {model_id!r} does not exist or is not served by this gateway")
    await send_json(send, 200, info.to_dict(), request_id=req.request_id)
