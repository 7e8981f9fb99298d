"""DB-GPT API v2: ``POST /api/v2/chat/completions``, as DB-GPT's official client (``dbgpt-client``) expects it.

Unlike DB-GPT's own server, the whole conversation goes to the model (not only the first message), ``usage`` is
always filled, ``incremental=false`` streams send cumulative text in ``delta`` chunks the client can parse, and
finish reasons are mapped to the values the client accepts (``stop``, ``length``, or null).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidRequestError
from ...types import ChatCompletion, ChatCompletionChunk, Usage
from ...validate import chat_request
from .base import Call, Dialect, StreamRenderer, model_field, stream_field

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request

__all__ = ["DBGPTDialect"]

_NORMAL_MODES = (None, "chat_normal")
# the client always sends these values; they mean "not set" and are not forwarded
_CLIENT_DEFAULTS: dict[str, Any] = {"top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def _finish(reason: str | None) -> str | None:
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def _messages(raw: Any) -> Any:
    if isinstance(raw, list) and all(isinstance(m, str) for m in raw):
        # DB-GPT <= 0.6 clients send List[str]: alternate user/assistant turns, the last one the user's
        roles = ["user", "assistant"]
        n = len(raw)
        return [{"role": roles[(n - 1 - i) % 2], "content": m} for i, m in enumerate(raw)]
    return raw


def _params(data: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if data.get("temperature") is not None:
        p["temperature"] = data["temperature"]
    max_tokens = data.get("max_new_tokens") if data.get("max_new_tokens") is not None else data.get("max_tokens")
    if max_tokens is not None:
        p["max_tokens"] = max_tokens
    for k, default in _CLIENT_DEFAULTS.items():
        v = data.get(k)
        if v is not None and v != default:
            p[k] = v
    for k in ("stop", "user", "seed"):
        if data.get(k) is not None:
            p[k] = data[k]
    return p


class DBGPTDialect(Dialect):
    endpoint = "dbgpt"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        model = model_field(data)
        mode = data.get("chat_mode")
        if mode not in _NORMAL_MODES:
            raise InvalidRequestError(
                f"chat_mode {mode!r} is not supported by modelway: it serves plain model chat (chat_mode null or "
                "'chat_normal'); knowledge, data, app and flow modes need a DB-GPT server",
                param="chat_mode",
                code="invalid_chat_mode",
            )
        if "messages" not in data:
            raise InvalidRequestError("messages is required", param="messages")
        stream = stream_field(data)
        incremental = data.get("incremental", True)
        if incremental is not None and not isinstance(incremental, bool):
            raise InvalidRequestError("incremental must be true or false", param="incremental")
        try:
            creq = chat_request(model, _messages(data["messages"]), stream=stream, params=_params(data))
        except InvalidRequestError as exc:
            if exc.param == "max_tokens" and data.get("max_new_tokens") is not None:  # named as the caller sent it
                exc.param = "max_new_tokens"
                exc.message = exc.message.replace("max_tokens", "max_new_tokens", 1)
            raise
        conv_id = data.get("conv_uid")
        if conv_id is not None and not isinstance(conv_id, str):
            raise InvalidRequestError("conv_uid must be a string", param="conv_uid")
        return Call(model, creq, {"conv_id": conv_id or req.request_id, "incremental": incremental is not False})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        return orjson.dumps(_body(resp, call.model, call.state["conv_id"]))

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return _Renderer(call.model, f"chatcmpl-{call.state['conv_id']}", call.state["incremental"])


def _body(resp: ChatCompletion, model: str, conv_id: str) -> dict[str, Any]:
    usage = resp.usage or Usage()
    body = {
        "id": conv_id,
        "object": "chat.completion",
        "created": resp.created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "message": {
                    "role": "assistant",
                    "content": c.message.content or "",
                    "reasoning_content": c.message.reasoning_content,
                },
                "finish_reason": _finish(c.finish_reason),
            }
            for c in resp.choices
        ],
        "usage": usage.to_dict(),
    }
    return body


class _Renderer(StreamRenderer):
    """DB-GPT stream chunks: ``delta`` always (cumulative text when ``incremental`` is false), usage on the last."""

    __slots__ = ("model", "id", "incremental", "text", "reasoning", "created")

    def __init__(self, model: str, id: str, incremental: bool) -> None:
        self.model = model
        self.id = id
        self.incremental = incremental
        self.text: dict[int, str] = {}
        self.reasoning: dict[int, str] = {}
        self.created = int(time.time())

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        choices = []
        for c in chunk.choices:
            d = c.delta
            content = d.content
            reasoning = d.reasoning_content
            if not self.incremental:  # each chunk carries everything so far, reasoning included
                content = self.text[c.index] = self.text.get(c.index, "") + (content or "")
                if reasoning is not None or c.index in self.reasoning:
                    reasoning = self.reasoning[c.index] = self.reasoning.get(c.index, "") + (reasoning or "")
            if content is None and reasoning is None and c.finish_reason is None:
                continue
            delta: dict[str, Any] = {"role": "assistant", "content": content or ""}
            if reasoning is not None:
                delta["reasoning_content"] = reasoning
            choices.append({"index": c.index, "delta": delta, "finish_reason": _finish(c.finish_reason)})
        if not choices and chunk.usage is None:
            return b""
        if not choices:
            choices = [{"index": 0, "delta": {}, "finish_reason": None}]
        out: dict[str, Any] = {"id": self.id, "created": self.created, "model": self.model, "choices": choices}
        if chunk.usage is not None:
            out["usage"] = chunk.usage.to_dict()
        return b"data: " + orjson.dumps(out) + b"\n\n"

    async def end(self) -> bytes:
        return b"data: [DONE]\n\n"
