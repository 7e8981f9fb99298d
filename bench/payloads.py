"""The request bodies every target receives, and the model names they address.

The same bytes go to wrk (in its Lua script) and to the time-to-first-byte client, so every target parses and
forwards exactly the same request.
"""

from __future__ import annotations

import orjson

__all__ = ["MODEL", "chat_body"]

#: the alias every gateway serves; the upstream answers for any model name
MODEL = "bench-model"

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
