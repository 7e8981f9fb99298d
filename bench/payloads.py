"""The request bodies every target receives, and the model names they address.

The same bytes go to wrk (in its Lua script) and to the time-to-first-byte client, so every target parses and
forwards exactly the same request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["APIS", "CHAT", "COMPAT_MODEL", "MODEL", "Api", "chat_body"]

#: the alias every gateway serves; the upstream answers for any model name
MODEL = "bench-model"
#: the same upstream as a generic OpenAI-compatible server (vllm/): what a chat-only upstream looks like
COMPAT_MODEL = "bench-compat"

_SYSTEM = "You are a concise assistant. Answer in plain English and keep answers short."
_USER = (
    "Summarise in two sentences why connection pooling matters for an HTTP gateway that forwards requests to "
    "large language model providers, and name one metric that shows whether the pool is too small."
)


def chat_body(model: str = MODEL, *, stream: bool = False) -> bytes:
    """A realistic chat completion request (a system and a user message, sampling parameters); streams ask for usage."""
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}],
        "temperature": 0.2,
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def _messages_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "system": _SYSTEM,
        "messages": [{"role": "user", "content": _USER}],
        "temperature": 0.2,
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    return body


def _responses_body(model: str, stream: bool) -> dict[str, Any]:
    # store: false, as Codex CLI sends it: the row measures the translation, not the response store
    body: dict[str, Any] = {
        "model": model,
        "instructions": _SYSTEM,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": _USER}]}],
        "temperature": 0.2,
        "max_output_tokens": 256,
        "store": False,
    }
    if stream:
        body["stream"] = True
    return body


def _completions_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": f"{_SYSTEM}\n\n{_USER}", "temperature": 0.2, "max_tokens": 256}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass(frozen=True)
class Api:
    """An inbound API a row speaks: its path, its request, and how a stream of it looks: its first output (a read
    with ``first`` in it), its good end (``end`` is in it) or a failure (``error`` is in it)."""

    name: str
    path: str
    first: bytes
    end: bytes
    error: bytes

    def body(self, model: str = MODEL, *, stream: bool = False) -> bytes:
        if self.name == "chat":
            return chat_body(model, stream=stream)
        return orjson.dumps(_BUILDERS[self.name](model, stream))


_BUILDERS = {"messages": _messages_body, "responses": _responses_body, "completions": _completions_body}

CHAT = Api("chat", "/v1/chat/completions", b"data:", b"data: [DONE]", b'"error"')
#: every API a row may speak
APIS: dict[str, Api] = {
    "chat": CHAT,
    "completions": Api("completions", "/v1/completions", b"data:", b"data: [DONE]", b'"error"'),
    "messages": Api("messages", "/v1/messages", b"content_block_delta", b"event: message_stop", b"event: error"),
    "responses": Api("responses", "/v1/responses", b".delta", b"event: response.completed", b"event: response.failed"),
}
