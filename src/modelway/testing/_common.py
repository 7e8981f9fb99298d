"""Data and helpers shared by the provider simulators: recorded requests, resolved replies (:class:`Plan`),
rendered streams, token counts and fake embeddings."""

from __future__ import annotations

import hashlib
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .script import Reply

__all__ = [
    "REC",
    "RID",
    "Plan",
    "RecordedRequest",
    "Stream",
    "ToolCallPlan",
    "count_tokens",
    "embedding_texts",
    "fake_embedding",
    "no_stream",
    "now",
    "split",
    "text_of",
]


@dataclass(slots=True)
class RecordedRequest:
    """One request as the simulator received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # parsed body, or None when empty or not JSON
    query: dict[str, str] = field(default_factory=dict)
    #: how the caller authenticated: "key" (the raw key), "jwt" (Zhipu ``Bearer <JWT>``), "bare-jwt"
    #: (Zhipu JWT without ``Bearer``); None when authentication failed or was not checked
    auth_kind: str | None = None


@dataclass(slots=True)
class Stream:
    """A rendered stream: ``events`` count as chunks for faults; ``tail`` ends a clean stream."""

    events: list[bytes]
    tail: bytes = b""


def count_tokens(text: str | None) -> int:
    """The simulators' deterministic token count: 1 per non-ASCII character plus 1 per 4 ASCII ones."""
    if not text:
        return 0
    wide = sum(1 for ch in text if ord(ch) > 127)
    return wide + (len(text) - wide + 3) // 4


def fake_embedding(text: str, dim: int = 8) -> list[float]:
    """The deterministic unit vector every simulator returns for ``text`` (float32-exact values, so the
    ``float`` and ``base64`` encodings agree)."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dim:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dim}I", raw[: 4 * dim])
    vec = [i / 2**31 - 1.0 for i in ints]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *(v / norm for v in vec))))


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []


def text_of(content: Any) -> str:
    """Plain text of a message content: a string, or a list of parts (OpenAI ``{"type":"text","text"}``,
    DashScope ``{"text"}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


@dataclass(slots=True)
class ToolCallPlan:
    id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass(slots=True)
class Plan:
    """A reply resolved against a request: everything a renderer needs."""

    model: str
    text: str | None
    pieces: list[str]
    reasoning: str | None
    reasoning_pieces: list[str]
    tool_calls: list[ToolCallPlan]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def make(
        cls,
        reply: Reply,
        messages: Iterable[Any],
        model: str,
        *,
        default_reasoning: bool = False,
        call_id: Callable[[], str] | None = None,
    ) -> Plan:
        msgs = [m for m in messages if isinstance(m, dict)]
        last_user = next((text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
        text = reply.text
        if text is None and reply.chunks is not None:
            text = "".join(reply.chunks)
        if text is None and not reply.tool_calls:
            text = f"You said: {last_user}" if last_user else "Hello!"
        pieces = list(reply.chunks) if reply.chunks is not None else split(text or "", reply.chunk_size)
        reasoning = reply.reasoning
        if reasoning is None and default_reasoning:
            reasoning = f"The user said {last_user!r}; I will repeat it."
        new_id = call_id or (lambda: "call_" + secrets.token_hex(12))
        calls = []
        for call in reply.tool_calls or ():
            args = call.get("arguments", "{}")
            if not isinstance(args, str):
                args = orjson.dumps(args).decode()
            calls.append(
                ToolCallPlan(str(call.get("id") or new_id()), str(call["name"]), args, split(args, reply.chunk_size))
            )
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        reasoning_tokens = count_tokens(reasoning)
        if reply.usage is not None:
            prompt, completion = reply.usage
            reasoning_tokens = min(reasoning_tokens, completion)
        else:
            prompt = max(1, sum(count_tokens(text_of(m.get("content"))) for m in msgs))
            completion = count_tokens(text) + reasoning_tokens
            completion += sum(count_tokens(c.name + c.arguments) for c in calls)
            completion = max(1, completion)
        return cls(
            reply.model or model,
            text,
            pieces,
            reasoning,
            split(reasoning or "", reply.chunk_size),
            calls,
            finish,
            prompt,
            completion,
            reasoning_tokens,
        )


def embedding_texts(value: Any) -> list[str] | None:
    """Inputs of an embeddings request: str, [str], [int] (tokens) or [[int]]; None when invalid."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) for v in value):
            return [" ".join(map(str, v)) for v in value]
    return None


#: request storage keys: the request id, and the RecordedRequest (with the parsed body)
RID = web.RequestKey("modelway_sim_rid", str)
REC = web.RequestKey("modelway_sim_rec", RecordedRequest)


def now() -> int:
    return int(time.time())


def no_stream(reply: Reply) -> Stream:
    raise AssertionError("not a streaming endpoint")
