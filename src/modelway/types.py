"""Request, response, stream chunk and usage types, in the OpenAI Chat Completions shape.

These are plain slotted dataclasses (no validation cost on the hot path). Responses and chunks are
built by the provider adapters and read by callers like the OpenAI SDK's objects
(``resp.choices[0].message.content``, ``chunk.choices[0].delta.content``); ``to_dict()`` gives the
OpenAI wire JSON.

Messages are plain dicts in the OpenAI shape (``{"role": "user", "content": "..."}``): they travel
unchanged from the caller to the adapter, which translates only what its provider needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = [
    "CHAT_PARAMS",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "Delta",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FinishReason",
    "FunctionCall",
    "Message",
    "ModelInfo",
    "NativeBody",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]

Message = dict[str, Any]
"""One chat message in the OpenAI shape: ``role`` (system/user/assistant/tool), ``content``, optional
``tool_calls`` (assistant) and ``tool_call_id`` (tool)."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call", "error"] | str
"""OpenAI finish reasons. Providers' own reasons (Zhipu ``sensitive``, ``network_error``) are mapped by the
adapter: ``sensitive`` → ``content_filter``; ``network_error`` raises :class:`~modelway.errors.UpstreamServerError`."""

#: Standard OpenAI chat parameters an adapter translates. Anything else a caller passes goes in
#: ``ChatRequest.extra`` and is sent to the provider as is.
CHAT_PARAMS: frozenset[str] = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stream_options",
        "user",
        "reasoning_effort",
    }
)


@dataclass(slots=True)
class ChatRequest:
    """A chat request, as the adapters receive it.

    ``params`` holds only the OpenAI parameters the caller gave (``temperature=0`` is kept: a value is a
    value). ``extra`` holds provider-specific parameters, sent to the provider unchanged.
    """

    model: str
    messages: list[Message]
    stream: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the caller's request in an upstream's own API (the gateway's ``/v1/messages`` and ``/v1/responses``): an
    #: adapter that speaks that API sends it as it came (model replaced) instead of translating ``messages``
    native: NativeBody | None = None

    @property
    def include_usage(self) -> bool:
        """Whether the caller asked for a final usage chunk (``stream_options.include_usage``)."""
        opts = self.params.get("stream_options")
        return bool(opts and opts.get("include_usage"))


@dataclass(slots=True)
class NativeBody:
    """A request body in one provider API's own shape, forwarded without lossy conversion to adapters that speak
    that API (so Anthropic prompt-cache prefixes keep hitting). ``api`` names it: ``"anthropic.messages"``,
    ``"openai.responses"``. Answers of a native request carry the upstream's own body (``ChatCompletion.raw``)
    and stream frames (``ChatCompletionChunk.raw``) beside their translation."""

    api: str
    body: dict[str, Any]


@dataclass(slots=True)
class EmbeddingRequest:
    """An embeddings request. ``input`` is one string or a list of strings."""

    model: str
    input: str | list[str]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


#: the largest token count (or timestamp) taken from a provider: beyond it the answer is malformed
_MAX_WHOLE = 2**53


def whole(value: Any) -> int:
    """A token count or timestamp a provider sent: a non-negative whole number (``None`` is 0), else
    :class:`ValueError` (the answer is malformed: a count like ``1e300`` could not even be written on)."""
    if type(value) is int and 0 <= value < _MAX_WHOLE:  # (the common case, first)
        return value
    if value is None:
        return 0
    whole_float = isinstance(value, float) and value.is_integer()
    digits = isinstance(value, str) and value.isascii() and value.isdigit()
    if type(value) is not int and not whole_float and not digits:
        raise ValueError(f"not a whole number: {value!r:.40}")
    n = int(value)
    if not 0 <= n < _MAX_WHOLE:
        raise ValueError(f"out of range: {n:.3g}")
    return n


@dataclass(slots=True)
class Usage:
    """Token counts. ``details`` keeps provider extras (cached tokens, reasoning tokens) in OpenAI's names."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None

    @classmethod
    def of(cls, prompt: int, completion: int, total: int | None = None) -> Usage:
        return cls(prompt, completion, prompt + completion if total is None else total)

    @classmethod
    def from_openai(cls, d: dict[str, Any]) -> Usage:
        prompt = whole(d.get("prompt_tokens"))
        completion = whole(d.get("completion_tokens"))
        total = d.get("total_tokens")
        total = whole(total) if total is not None else prompt + completion
        prompt_details = d.get("prompt_tokens_details")
        if not prompt_details:
            hit = d.get("prompt_cache_hit_tokens")  # DeepSeek's name for cached prompt tokens
            if hit is not None:
                prompt_details = {"cached_tokens": hit}
        return cls(prompt, completion, total, prompt_details, d.get("completion_tokens_details"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.prompt_tokens_details:
            d["prompt_tokens_details"] = self.prompt_tokens_details
        if self.completion_tokens_details:
            d["completion_tokens_details"] = self.completion_tokens_details
        return d


@dataclass(slots=True)
class FunctionCall:
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class ToolCall:
    id: str
    function: FunctionCall
    type: str = "function"

    @classmethod
    def from_openai(cls, d: dict[str, Any]) -> ToolCall:
        fn = d.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = orjson.dumps(args).decode() if args is not None else ""
        return cls(str(d.get("id") or ""), FunctionCall(str(fn.get("name") or ""), args), d.get("type") or "function")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": self.function.to_dict()}


@dataclass(slots=True)
class ChatMessage:
    """The assistant's message in a non-streaming response."""

    content: str | None
    role: str = "assistant"
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        if self.reasoning_content is not None:
            d["reasoning_content"] = self.reasoning_content
        return d


@dataclass(slots=True)
class Choice:
    index: int
    message: ChatMessage
    finish_reason: str | None = None
    #: the provider's log probabilities, as it sent them (when the caller asked with ``logprobs``)
    logprobs: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "message": self.message.to_dict(),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


@dataclass(slots=True)
class ChatCompletion:
    """A non-streaming chat response."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    provider: str | None = None
    object: str = "chat.completion"
    #: the upstream's own JSON body, for a request sent natively (``ChatRequest.native``)
    raw: dict[str, Any] | None = None

    @property
    def content(self) -> str | None:
        """Shortcut for ``choices[0].message.content``."""
        return self.choices[0].message.content if self.choices else None

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self.id, self.object, self.created, self.model, self.choices, self.usage)

    def to_chunk(self) -> ChatCompletionChunk:
        """The whole answer as one stream chunk (for a server that answered a stream request with JSON)."""
        choices = []
        for c in self.choices:
            m = c.message
            calls = None
            if m.tool_calls:
                calls = [
                    ToolCallDelta(i, t.id, t.function.name, t.function.arguments, t.type)
                    for i, t in enumerate(m.tool_calls)
                ]
            delta = Delta(m.content, "assistant", m.reasoning_content, calls)
            choices.append(ChunkChoice(c.index, delta, c.finish_reason, c.logprobs))
        return ChatCompletionChunk(self.id, self.created, self.model, choices, self.usage, self.provider)


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call: the first carries ``id`` and ``name``, later ones ``arguments`` pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            d["id"] = self.id
            d["type"] = self.type or "function"
        fn: dict[str, Any] = {}
        if self.name is not None:
            fn["name"] = self.name
        if self.arguments is not None:
            fn["arguments"] = self.arguments
        if fn:
            d["function"] = fn
        return d


@dataclass(slots=True)
class Delta:
    """What one stream chunk adds. Absent fields are ``None``; ``content`` is never required."""

    content: str | None = None
    role: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.role is not None:
            d["role"] = self.role
        if self.content is not None:
            d["content"] = self.content
        if self.reasoning_content is not None:
            d["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            d["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        return d


@dataclass(slots=True)
class ChunkChoice:
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: Any = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "delta": self.delta.to_dict(), "finish_reason": self.finish_reason}
        if self.logprobs is not None:
            d["logprobs"] = self.logprobs
        return d


@dataclass(slots=True)
class ChatCompletionChunk:
    """One streamed chunk. The last chunk of a stream carries ``usage`` (with ``choices`` empty when the
    caller asked for ``stream_options.include_usage``, as OpenAI does)."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    provider: str | None = None
    object: str = "chat.completion.chunk"
    #: the upstream's own SSE frame(s) this chunk was parsed from, for a request sent natively
    #: (``ChatRequest.native``); a frame with nothing to translate (``ping``) comes as a chunk with no choices
    raw: bytes | None = None

    @property
    def content(self) -> str | None:
        """Shortcut for ``choices[0].delta.content`` (``None`` when this chunk has no text)."""
        return self.choices[0].delta.content if self.choices else None

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self.id, self.object, self.created, self.model, self.choices, self.usage)


def _envelope(
    id: str, object: str, created: int, model: str, choices: list[Choice] | list[ChunkChoice], usage: Usage | None
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "choices": [c.to_dict() for c in choices],
    }
    if usage is not None:
        d["usage"] = usage.to_dict()
    return d


@dataclass(slots=True)
class Embedding:
    index: int
    embedding: list[float]
    object: str = "embedding"

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "index": self.index, "embedding": self.embedding}


def _index(e: Embedding) -> int:
    return e.index


@dataclass(slots=True)
class EmbeddingResponse:
    data: list[Embedding]
    model: str
    usage: Usage | None = None
    provider: str | None = None
    object: str = "list"

    @property
    def vectors(self) -> list[list[float]]:
        """The embeddings alone, in the order of the input (``client.embed(model, texts).vectors``)."""
        return [e.embedding for e in sorted(self.data, key=_index)]

    def to_dict(self) -> dict[str, Any]:
        u = self.usage or Usage()
        return {
            "object": self.object,
            "data": [e.to_dict() for e in self.data],
            "model": self.model,
            "usage": {"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens},
        }


@dataclass(slots=True)
class ModelInfo:
    """One entry of ``models()``: the address to call it by, and who serves it."""

    id: str
    owned_by: str
    created: int = 0
    object: str = "model"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "created": self.created, "owned_by": self.owned_by}
