"""The generic OpenAI-compatible adapter, driven by a :class:`OpenAISpec`.

OpenAI itself, DeepSeek, Moonshot, DashScope compatible mode, Qianfan v2, Volcengine Ark, SiliconFlow, vLLM,
Ollama and a modelway gateway all speak this protocol; each one's differences are data in its spec.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..errors import (
    ContentFilterError,
    ContextLengthError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
    error_for_status,
)
from ..sse import SSEEvent
from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelInfo,
    ToolCall,
    ToolCallDelta,
    Usage,
    whole,
)
from . import openai_responses
from .base import Adapter, HTTPRequest, StreamParser, decode_json

__all__ = ["OpenAICompatAdapter", "OpenAISpec", "classify_error", "make_adapter_class"]

_EMPTY: dict[str, Any] = {}
_UNSET: Any = object()
_loads = orjson.loads

#: error codes/types that mean the same thing at every OpenAI-compatible provider
COMMON_CODES: dict[str, type[ProviderError]] = {
    "content_filter": ContentFilterError,
    "data_inspection_failed": ContentFilterError,
    "DataInspectionFailed": ContentFilterError,
    "context_length_exceeded": ContextLengthError,
    "string_above_max_length": ContextLengthError,
    "insufficient_quota": PermissionDeniedError,
    "Arrearage": PermissionDeniedError,
    "rate_limit_exceeded": RateLimitError,
    "limit_requests": RateLimitError,
    "server_error": UpstreamServerError,
    "engine_overloaded_error": RateLimitError,
}


@dataclass(frozen=True, slots=True)
class OpenAISpec:
    """Everything that makes one OpenAI-compatible provider different from OpenAI."""

    name: str
    label: str
    base_url: str
    key_env: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    known_models: tuple[str, ...] = ()
    embeddings: bool = False
    #: send ``stream_options.include_usage`` on every stream so the final usage is known
    stream_usage: bool = True
    #: OpenAI parameters this provider rejects; dropped (logged at debug level) instead of sent
    drop_params: frozenset[str] = frozenset()
    #: OpenAI parameter → provider parameter name
    rename_params: Mapping[str, str] = field(default_factory=dict)
    #: provider error code/type → error class (on top of :data:`COMMON_CODES`)
    codes: Mapping[str, type[ProviderError]] = field(default_factory=dict)
    #: provider finish reason → OpenAI finish reason
    finish_reasons: Mapping[str, str] = field(default_factory=dict)
    #: provider finish reasons that mean the generation failed: raise this error instead of finishing
    finish_errors: Mapping[str, type[ProviderError]] = field(default_factory=dict)
    #: header carrying the key (``Authorization: Bearer`` unless the provider wants another)
    auth_header: str = "Authorization"
    #: self-hosted servers (Ollama, vLLM) may run without a key
    key_required: bool = True
    #: how the provider takes ``reasoning_effort`` (see :func:`reasoning_payload`)
    reasoning: ReasoningStyle = "pass"
    #: whether assistant messages may carry ``reasoning_content`` back to the provider (DeepSeek's thinking mode
    #: wants it in tool loops); where not, it is taken out of the messages sent
    reasoning_in_messages: bool = True


ReasoningStyle = Literal["pass", "drop", "thinking", "enable_thinking", "deepseek"]
"""``pass``: ``reasoning_effort`` as is (OpenAI, vLLM, Ollama); ``drop``: not sent (thinking is chosen by the model
name); ``thinking``: ``thinking: {"type": "enabled"|"disabled"}`` (Zhipu, Volcengine); ``enable_thinking``: a
boolean (Qwen on DashScope, SiliconFlow); ``deepseek``: ``reasoning_effort`` as is, and ``none`` as
``thinking: {"type": "disabled"}``."""


def reasoning_payload(style: ReasoningStyle, effort: Any, payload: dict[str, Any]) -> None:
    """Put the caller's ``reasoning_effort`` into ``payload`` the way the provider takes it (``none``: no
    thinking). A value the caller set in the provider's own terms (``thinking``, ``enable_thinking``) wins."""
    off = effort == "none"
    if style == "pass":
        payload["reasoning_effort"] = effort
    elif style == "thinking":
        payload.setdefault("thinking", {"type": "disabled" if off else "enabled"})
    elif style == "enable_thinking":
        payload.setdefault("enable_thinking", not off)
    elif style == "deepseek":
        if off:
            payload.setdefault("thinking", {"type": "disabled"})
        else:
            payload["reasoning_effort"] = effort


def without_reasoning(messages: list[Message]) -> list[Message]:
    """The messages without ``reasoning_content`` (copied only when one has it)."""
    for m in messages:
        if "reasoning_content" in m:
            break
    else:
        return messages
    return [
        {k: v for k, v in m.items() if k != "reasoning_content"} if "reasoning_content" in m else m for m in messages
    ]


def _text(value: Any) -> str | None:
    """A field of an error body as text: strings and numbers (codes are often numbers); anything else is noise."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def classify_error(
    spec_codes: Mapping[str, type[ProviderError]], status: int | None, code: str | None, err_type: str | None
) -> type[ProviderError]:
    """Pick the error class from the provider's code/type first, then from the HTTP status."""
    for key in (code, err_type):
        if key:
            cls = spec_codes.get(key) or COMMON_CODES.get(key)
            if cls is not None:
                return cls
    if status is None or status == 200:
        return UpstreamServerError
    return error_for_status(status)


class OpenAICompatAdapter(Adapter):
    """Adapter for any provider that speaks OpenAI Chat Completions. Configure it with a spec subclass."""

    spec: OpenAISpec
    #: the key (or none) in a header, the same for every request (a subclass with a token that changes overrides
    #: ``auth_headers``, which turns this off: :attr:`Adapter.static_headers`)
    static_headers = True

    # -- requests ---------------------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        if not self.spec.key_required and not self.api_key:
            return {}
        key = self.require_key()
        if self.spec.auth_header == "Authorization":
            return {"Authorization": f"Bearer {key}"}
        return {self.spec.auth_header: key}

    def chat_payload(self, req: ChatRequest) -> dict[str, Any]:
        spec = self.spec
        messages = req.messages if spec.reasoning_in_messages else without_reasoning(req.messages)
        payload: dict[str, Any] = {"model": req.model, "messages": messages}
        params = req.params
        if not spec.drop_params and not spec.rename_params and "reasoning_effort" not in params:
            payload.update(params)  # (the common case: every parameter as it is)
        else:
            for k, v in params.items():
                if k in spec.drop_params or k == "reasoning_effort":
                    continue
                payload[spec.rename_params.get(k, k)] = v
        extra = req.extra
        if extra:
            payload.update(extra)
            # a library caller's extra_body may carry it too (checked as the OpenAI parameter): never sent raw
            raw_effort = payload.pop("reasoning_effort", None)
        else:
            raw_effort = None
        effort = params.get("reasoning_effort", raw_effort)
        if effort is not None and "reasoning_effort" not in spec.drop_params:
            reasoning_payload(spec.reasoning, effort, payload)
        if req.stream:
            payload["stream"] = True
            if spec.stream_usage:
                opts = dict(payload.get("stream_options") or {})
                opts["include_usage"] = True
                payload["stream_options"] = opts
        else:
            payload.pop("stream_options", None)
        return payload

    def chat_request(self, req: ChatRequest) -> HTTPRequest:
        if req.native is not None and openai_responses.native(self, req):  # a /v1/responses request to OpenAI
            return openai_responses.responses_request(self, req)  # itself: its own API
        return self.json_request("/chat/completions", self.chat_payload(req))

    # -- responses --------------------------------------------------------------------------------
    def finish(self, reason: Any, *, request_id: str | None = None) -> str | None:
        if reason is None:
            return None
        reason = str(reason)
        err = self.spec.finish_errors.get(reason)
        if err is not None:
            raise err(
                f"the provider ended the generation with finish_reason={reason!r}",
                provider=self.name,
                code=reason,
                request_id=request_id,
            )
        return str(self.spec.finish_reasons.get(reason, reason))

    def parse_chat(self, body: bytes, headers: Mapping[str, str], req: ChatRequest) -> ChatCompletion:
        if req.native is not None and openai_responses.native(self, req):
            return openai_responses.parse_response(self, body, headers, req)
        try:
            data = _loads(body)
        except orjson.JSONDecodeError:
            data = decode_json(body, provider=self.name)  # raises its StreamError
        if not isinstance(data, dict) or "choices" not in data:
            raise self.error_from_payload(200, headers, data)
        spec = self.spec
        # finish reasons as they come unless the spec maps some or fails on some (then finish() does it all)
        plain_finish = not spec.finish_errors and not spec.finish_reasons
        request_id: Any = _UNSET  # (looked up when something needs it: an id, an error)
        choices = []
        for i, c in enumerate(data.get("choices") or ()):
            index = c.get("index", i)
            msg = c.get("message") or _EMPTY
            tcs = msg.get("tool_calls")
            message = ChatMessage(
                msg.get("content"),
                msg.get("role") or "assistant",
                [ToolCall.from_openai(t) for t in tcs] if tcs else None,
                msg.get("reasoning_content"),
            )
            fr = c.get("finish_reason")
            if fr is not None and not (plain_finish and type(fr) is str):
                if request_id is _UNSET:
                    request_id = _rid(data, headers)
                fr = self.finish(fr, request_id=request_id)
            choices.append(Choice(index, message, fr, c.get("logprobs")))
        rid = data.get("id")
        if type(rid) is not str or not rid:
            if request_id is _UNSET:
                request_id = _rid(data, headers)
            rid = str(rid or request_id or "")
        created = whole(data.get("created")) or int(time.time())
        model = data.get("model")
        if type(model) is not str or not model:
            model = str(model or req.model)
        usage = data.get("usage")
        return ChatCompletion(
            rid,
            created,
            model,
            choices,
            Usage.from_openai(usage) if isinstance(usage, dict) else None,
            self.name,
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        if openai_responses.native(self, req):
            return openai_responses.ResponsesStreamParser(self, req)
        return OpenAIStreamParser(self, req)

    # -- embeddings -------------------------------------------------------------------------------
    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        if not self.spec.embeddings:
            return super().embed_request(req)
        payload: dict[str, Any] = {"model": req.model, "input": req.input, **req.params}
        payload.setdefault("encoding_format", "float")
        return self.json_request("/embeddings", payload)

    def parse_embed(self, body: bytes, headers: Mapping[str, str], req: EmbeddingRequest) -> EmbeddingResponse:
        data = decode_json(body, provider=self.name)
        if not isinstance(data, dict) or "data" not in data:
            raise self.error_from_payload(200, headers, data)
        items = []
        for i, d in enumerate(data["data"]):
            vec = d.get("embedding")
            if isinstance(vec, str):
                vec = _b64_floats(vec)
            items.append(Embedding(index=d.get("index", i), embedding=vec))
        usage = data.get("usage")
        return EmbeddingResponse(
            data=items,
            model=str(data.get("model") or req.model),
            usage=Usage.from_openai(usage) if isinstance(usage, dict) else None,
            provider=self.name,
        )

    # -- models -----------------------------------------------------------------------------------
    def models_request(self) -> HTTPRequest:
        h = self.base_headers()
        h.pop("Content-Type", None)
        return HTTPRequest("GET", self.base_url + "/models", h, None, self.name)

    def parse_models(self, body: bytes) -> list[ModelInfo]:
        data = decode_json(body, provider=self.name)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self.error_from_payload(200, {}, data)
        return [
            ModelInfo(id=str(m["id"]), owned_by=str(m.get("owned_by") or self.name), created=int(m.get("created") or 0))
            for m in items
            if isinstance(m, dict) and m.get("id")
        ]

    # -- errors -----------------------------------------------------------------------------------
    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            data: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = body.decode("utf-8", errors="replace")
        return self.error_from_payload(status, headers, data)

    def error_from_payload(self, status: int | None, headers: Mapping[str, str], data: Any) -> ProviderError:
        """Typed error from a decoded error body (HTTP error, or an ``{"error": ...}`` event mid-stream)."""
        message: str | None = None
        code: str | None = None
        err_type: str | None = None
        param: str | None = None
        request_id: str | None = headers.get("x-request-id")
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                message = _text(err.get("message"))
                code = _text(err.get("code"))
                err_type = _text(err.get("type"))
                param = _text(err.get("param"))
            elif isinstance(err, str):
                message = err
            else:
                message = _text(data.get("message"))
                code = _text(data.get("code"))
            rid = _text(data.get("request_id") or data.get("id"))
            request_id = request_id or rid
        elif isinstance(data, str) and data.strip():
            message = data.strip()[:500]
        cls = classify_error(self.spec.codes, status, code, err_type)
        return self.provider_error(
            cls, status, headers, message=message, code=code or err_type, request_id=request_id, body=data, param=param
        )


class OpenAIStreamParser(StreamParser):
    """Parses ``data: {chunk}`` events. Usage rides on the last chunk with choices (held back one step)."""

    def __init__(self, adapter: OpenAICompatAdapter, req: ChatRequest) -> None:
        self.adapter = adapter
        self.provider = adapter.name
        self.model = req.model
        self.held: ChatCompletionChunk | None = None
        self.created = int(time.time())  # for providers whose chunks carry no "created"
        self.usage: Usage | None = None
        #: choices that reached their finish reason; a stream that closes without [DONE] is complete only when
        #: every requested choice (``n``) finished
        self.finished: set[int] = set()
        self.expected = int(req.params.get("n") or 1)
        self.done = False
        rid = req.extra.get("request_id")  # Zhipu echoes a caller's request_id as the stream's id
        #: the stream's id, given to an error frame that carries none, so every error names its request
        self.request_id: str | None = str(rid) if rid else None

    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        data = ev.data
        if data == "[DONE]":
            self.done = True
            return self._release()
        try:
            obj = _loads(data)  # (a str: orjson reads it as is, no copy to bytes first)
        except orjson.JSONDecodeError:
            if not data.strip():
                return []
            obj = decode_json(data.encode(), provider=self.provider, what="stream event")  # raises its StreamError
        if type(obj) is not dict:
            raise StreamError(
                f"unexpected stream event: {data[:200]!r}", provider=self.provider, request_id=self.request_id
            )
        if obj.get("error"):
            err = self.adapter.error_from_payload(None, {}, obj)
            if err.request_id is None:
                err.request_id = self.request_id
            raise err
        return self.chunk(obj)

    def chunk(self, obj: dict[str, Any]) -> list[ChatCompletionChunk]:
        # the hot path of every stream: one call per event, so lookups are kept to what the event carries
        rid = obj.get("id")
        if rid and self.request_id is None:
            self.request_id = str(rid)
        choices: list[ChunkChoice] = []
        finished = False
        for i, c in enumerate(obj.get("choices") or ()):
            d = c.get("delta") or _EMPTY
            tcs = d.get("tool_calls")
            index = c.get("index", i)
            fr = c.get("finish_reason")
            if fr is not None:
                fr = self.adapter.finish(fr, request_id=self.request_id)
                if fr is not None:
                    finished = True
                    self.finished.add(index)
            cu = c.get("usage")  # Moonshot puts usage inside the finishing choice
            if cu is not None and type(cu) is dict:
                self.usage = Usage.from_openai(cu)
            choices.append(
                ChunkChoice(
                    index,
                    Delta(
                        d.get("content"),
                        d.get("role"),
                        d.get("reasoning_content"),
                        [_tool_delta(t, j) for j, t in enumerate(tcs)] if tcs else None,
                    ),
                    fr,
                    c.get("logprobs"),
                )
            )
        u = obj.get("usage")
        if u is not None and type(u) is dict:
            # a top-level usage (OpenAI include_usage, Zhipu, DeepSeek) is the final count; Moonshot sends the same
            # numbers twice (in the choice, then here): keeping one value, never a sum, counts it once
            self.usage = Usage.from_openai(u)
        held = self.held
        if not choices:
            if held is not None and self.usage is not None:
                held.usage = self.usage
            return []
        created = obj.get("created")
        model = obj.get("model")
        chunk = ChatCompletionChunk(
            rid if type(rid) is str else str(rid or ""),
            created if type(created) is int and 0 <= created < 2**53 else whole(created) or self.created,
            model if type(model) is str and model else str(model or self.model),
            choices,
            None,
            self.provider,
        )
        if held is not None:
            self.held = None
            if finished:
                self.held = chunk  # wait: the usage may come in the next event
                return [held]
            return [held, chunk]
        if finished:
            self.held = chunk
            return []
        return [chunk]

    def _release(self) -> list[ChatCompletionChunk]:
        if self.held is not None:
            held, self.held = self.held, None
            if held.usage is None:
                held.usage = self.usage
            return [held]
        if self.usage is not None:
            return [
                ChatCompletionChunk(
                    id="",
                    created=int(time.time()),
                    model=self.model,
                    choices=[],
                    usage=self.usage,
                    provider=self.provider,
                )
            ]
        return []

    def close(self) -> list[ChatCompletionChunk]:
        if self.done:
            return []
        if len(self.finished) >= self.expected:
            # no [DONE], but every choice finished: some compatible servers just close
            self.done = True
            return self._release()
        return super().close()


def _tool_delta(t: dict[str, Any], j: int) -> ToolCallDelta:
    fn = t.get("function") or {}
    args = fn.get("arguments")
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCallDelta(
        index=t.get("index", j), id=t.get("id"), name=fn.get("name"), arguments=args, type=t.get("type")
    )


def _rid(data: dict[str, Any], headers: Mapping[str, str]) -> str | None:
    rid = data.get("request_id") or headers.get("x-request-id") or data.get("id")
    return str(rid) if rid else None


def _b64_floats(s: str) -> list[float]:
    import base64
    import struct

    raw = base64.b64decode(s)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def make_adapter_class(spec: OpenAISpec) -> type[OpenAICompatAdapter]:
    """Build the adapter class for a spec (one class per provider, so the registry stays a plain dict)."""
    return type(
        f"{spec.name.title().replace('-', '')}Adapter",
        (OpenAICompatAdapter,),
        {
            "spec": spec,
            "name": spec.name,
            "label": spec.label,
            "default_base_url": spec.base_url,
            "key_env": spec.key_env,
            "base_url_env": spec.base_url_env,
            "known_models": spec.known_models,
            "supports_embeddings": spec.embeddings,
        },
    )
