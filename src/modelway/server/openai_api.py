"""The OpenAI-compatible endpoints besides chat (a dialect: :mod:`.dialects.openai_chat`): embeddings, models."""

from __future__ import annotations

import base64
import struct

import orjson

from ..errors import InvalidRequestError, UnknownModelError
from ..validate import embedding_request
from .dialects.base import model_field
from .disconnect import watched
from .gateway import Gateway
from .http import Request, Send, send_json

__all__ = ["embeddings", "list_models", "retrieve_model"]


async def embeddings(gw: Gateway, req: Request, send: Send) -> None:
    data = await req.json(gw.config.server.max_body_bytes)
    model = model_field(data)
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
        await ticket.answer(req, send, resp.usage, orjson.dumps(body))


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
