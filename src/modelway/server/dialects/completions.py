"""OpenAI legacy text completions (``POST /v1/completions``), as DB-GPT's API server and older OpenAI clients send
them, served by any chat model.

The prompt becomes one user message; the answer's text is the assistant's content (``echo`` puts the prompt in
front). What a chat model cannot do is refused with a 400 naming the field, never silently dropped: several prompts
in one request, token-id prompts, ``suffix``, ``best_of`` above 1, and ``logprobs`` (legacy integer log
probabilities of the sampled and top tokens; chat models report them differently).
"""

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

__all__ = ["CompletionsDialect"]

#: legacy fields with the same name and meaning in chat
_SAME: tuple[str, ...] = ("max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty")
_SAME += ("seed", "user", "logit_bias", "stream_options")
_KNOWN = frozenset({"model", "prompt", "stream", "echo", "suffix", "best_of", "logprobs", *_SAME})


def _prompt(data: dict[str, Any]) -> str:
    prompt = data.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if prompt and all(isinstance(p, str) for p in prompt):
            raise InvalidRequestError(
                "several prompts in one request are not supported: send one request per prompt", param="prompt"
            )
        raise InvalidRequestError("prompt must be a string (token-id prompts are not supported)", param="prompt")
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt is required and must be a string", param="prompt")
    return prompt


class CompletionsDialect(Dialect):
    endpoint = "completions"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        model = model_field(data)
        if "messages" in data:
            raise InvalidRequestError(
                "messages is not a field of /v1/completions (it takes a prompt): use /v1/chat/completions",
                param="messages",
            )
        prompt = _prompt(data)
        stream = stream_field(data)
        echo = data.get("echo", False)
        if echo is not None and not isinstance(echo, bool):
            raise InvalidRequestError("echo must be true or false", param="echo")
        if data.get("suffix") is not None:
            raise InvalidRequestError("suffix is not supported: chat models do not fill in the middle", param="suffix")
        best_of = data.get("best_of")
        if best_of is not None and best_of != 1:
            raise InvalidRequestError("best_of above 1 is not supported", param="best_of")
        if data.get("logprobs") is not None:
            raise InvalidRequestError(
                "logprobs is not supported on /v1/completions: use /v1/chat/completions with logprobs: true",
                param="logprobs",
            )
        params = {k: data[k] for k in _SAME if data.get(k) is not None}
        # anything else travels to the provider as the chat endpoint would send it
        params.update({k: v for k, v in data.items() if k not in _KNOWN})
        creq = chat_request(model, [{"role": "user", "content": prompt}], stream=stream, params=params)
        return Call(model, creq, {"echo": prompt if echo else ""})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        echo = call.state["echo"]
        body: dict[str, Any] = {
            "id": _id(resp.id),
            "object": "text_completion",
            "created": resp.created,
            "model": call.model,
            "choices": [
                {
                    "text": echo + (c.message.content or ""),
                    "index": c.index,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                }
                for c in resp.choices
            ],
        }
        if resp.usage is not None:
            body["usage"] = resp.usage.to_dict()
        return orjson.dumps(body)

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return _Renderer(call.model, call.request.include_usage, call.state["echo"], request_id)


def _id(upstream: str) -> str:
    return upstream if upstream.startswith("cmpl-") else "cmpl-" + upstream.removeprefix("chatcmpl-")


class _Renderer(StreamRenderer):
    """``text_completion`` chunks: the text of each delta (the echoed prompt first), usage when asked for."""

    __slots__ = ("model", "include_usage", "echo", "id", "created", "echoed")

    def __init__(self, model: str, include_usage: bool, echo: str, request_id: str) -> None:
        self.model = model
        self.include_usage = include_usage
        self.echo = echo
        self.echoed: set[int] = set()
        self.id = f"cmpl-{request_id}"
        self.created = int(time.time())

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        choices = []
        for c in chunk.choices:
            text = c.delta.content or ""
            if self.echo and c.index not in self.echoed:
                self.echoed.add(c.index)
                text = self.echo + text
            if not text and c.finish_reason is None:
                continue  # reasoning, tool calls and role-only deltas have no place in a text completion
            choices.append({"text": text, "index": c.index, "logprobs": None, "finish_reason": c.finish_reason})
        out = b""
        base = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model}
        if choices:
            out = b"data: " + orjson.dumps({**base, "choices": choices}) + b"\n\n"
        if chunk.usage is not None and self.include_usage:
            out += b"data: " + orjson.dumps({**base, "choices": [], "usage": chunk.usage.to_dict()}) + b"\n\n"
        return out

    async def end(self) -> bytes:
        return b"data: [DONE]\n\n"
