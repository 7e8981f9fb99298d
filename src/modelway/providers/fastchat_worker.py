"""FastChat and DB-GPT model workers as upstreams (sans-I/O), for workers registered with the gateway's controller
(see :mod:`modelway.cluster.controller`) or configured as deployments (``fastchat-worker/<model>`` with
``api_base`` set to the worker's address).

FastChat (``fastchat-worker``): the messages are rendered into one prompt with the worker's conversation template
(:mod:`modelway.cluster.prompt`; the gateway fetches it from ``/worker_get_conv_template`` and hands it to the
adapter, or a deployment gives it in ``options.conv_template``), then ``POST /worker_generate_stream`` with
FastChat's generate parameters answers NUL-delimited JSON frames whose ``text`` is *cumulative*: each frame's new
suffix becomes a delta chunk. ``/worker_generate`` answers the last frame, for non-stream requests. A frame with a
non-zero ``error_code`` raises the matching typed error (FastChat's ``ErrorCode`` values; Chatchat's online
workers send 500). Usage comes from the last frame's ``usage``. A worker takes text only: ``tools``,
``tool_choice`` and ``response_format`` are not sent (FastChat's own API server drops them too), and ``n`` must
be 1.

DB-GPT (``dbgpt-worker``): ``POST /api/worker/generate_stream`` takes the messages themselves (roles ``human``,
``ai``, ``system``) and answers NUL-delimited ``ModelOutput`` frames, cumulative too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from ..cluster.prompt import ConvTemplate, render_prompt
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
    error_for_status,
)
from ..nul import NULDecoder
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
    Usage,
    whole,
)
from .base import Adapter, HTTPRequest, ProviderSettings, StreamParser, decode_json

__all__ = ["ERROR_CODES", "DBGPTWorkerAdapter", "FastChatWorkerAdapter", "WorkerStreamParser"]

#: FastChat's ``ErrorCode`` values (``fastchat/constants.py``) → our error classes
ERROR_CODES: dict[int, type[ProviderError]] = {
    40001: BadRequestError,  # VALIDATION_TYPE_ERROR
    40101: AuthenticationError,  # INVALID_AUTH_KEY
    40102: AuthenticationError,  # INCORRECT_AUTH_KEY
    40103: PermissionDeniedError,  # NO_PERMISSION
    40301: NotFoundError,  # INVALID_MODEL
    40302: BadRequestError,  # PARAM_OUT_OF_RANGE
    40303: ContextLengthError,  # CONTEXT_OVERFLOW
    42901: RateLimitError,  # RATE_LIMIT
    42902: RateLimitError,  # QUOTA_EXCEEDED
    42903: RateLimitError,  # ENGINE_OVERLOADED
    50001: UpstreamServerError,  # INTERNAL_ERROR
    50002: UpstreamServerError,  # CUDA_OUT_OF_MEMORY
    50003: UpstreamServerError,  # GRADIO_REQUEST_ERROR
    50004: UpstreamServerError,  # GRADIO_STREAM_UNKNOWN_ERROR
    50005: UpstreamServerError,  # CONTROLLER_NO_WORKER
    50006: UpstreamServerError,  # CONTROLLER_WORKER_TIMEOUT
}

#: what a request without max_tokens asks for (FastChat's API server computes the room left in the context)
DEFAULT_MAX_NEW_TOKENS = 1024


def error_class(code: int) -> type[ProviderError]:
    """The error class of a worker's ``error_code``: FastChat's table, else by its HTTP-like prefix (500 → 5xx)."""
    cls = ERROR_CODES.get(code)
    if cls is not None:
        return cls
    status = code // 100 if code >= 10000 else code
    return error_for_status(status) if 400 <= status < 600 else UpstreamServerError


class FastChatWorkerAdapter(Adapter):
    name: ClassVar[str] = "fastchat-worker"
    label: ClassVar[str] = "FastChat model worker (its address as api_base, or registered with the controller)"
    default_base_url: ClassVar[str] = "http://127.0.0.1:21002"
    supports_embeddings: ClassVar[bool] = True
    stream_path: ClassVar[str] = "/worker_generate_stream"
    generate_path: ClassVar[str] = "/worker_generate"
    embed_path: ClassVar[str] = "/worker_get_embeddings"

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        opts = settings.options
        conv = opts.get("conv_template")
        #: per model name: the worker's conversation template (the gateway sets them once fetched)
        self.templates: dict[str, ConvTemplate] = {}
        self.default_template = ConvTemplate.from_dict(conv) if isinstance(conv, dict) else None
        self.max_new_tokens = int(opts.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))

    def stream_decoder(self, max_event_bytes: int) -> NULDecoder:
        """The stream's framing (see :func:`modelway.calls._decoder`): NUL-delimited JSON, not SSE."""
        return NULDecoder(max_event_bytes)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # -- chat -----------------------------------------------------------------------------------
    def template(self, model: str) -> ConvTemplate | None:
        return self.templates.get(model, self.default_template)

    def generate_params(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        if int(p.get("n") or 1) > 1:
            raise InvalidRequestError("a model worker gives one answer per request (n must be 1)", param="n")
        out: dict[str, Any] = {}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"):
            if p.get(name) is not None:
                out[name] = p[name]
        limit = p.get("max_completion_tokens", p.get("max_tokens"))
        out["max_new_tokens"] = int(limit) if limit is not None else self.max_new_tokens
        stop = p.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
        out["stop"] = stops
        out["echo"] = False
        for k, v in req.extra.items():  # worker-specific parameters (top_k, repetition_penalty, ...), as given
            out.setdefault(k, v)
        return out

    def chat_request(self, req: ChatRequest) -> HTTPRequest:
        conv = self.template(req.model)
        payload = {"model": req.model, "prompt": render_prompt(conv, req.messages), **self.generate_params(req)}
        if conv is not None:
            payload["stop"] = list(dict.fromkeys([*payload["stop"], *conv.stop_str]))
            if conv.stop_token_ids:
                payload.setdefault("stop_token_ids", list(conv.stop_token_ids))
        return self.json_request(self.stream_path if req.stream else self.generate_path, payload)

    def parse_chat(self, body: bytes, headers: Mapping[str, str], req: ChatRequest) -> ChatCompletion:
        data = self.last_frame(body)
        if whole(data.get("error_code") or 0):
            raise self.frame_error(data)
        text = frame_text(data)
        usage = data.get("usage")
        choice = Choice(0, ChatMessage(text), str(data.get("finish_reason") or "stop"))
        return ChatCompletion(
            new_id(),
            int(time.time()),
            req.model,
            [choice],
            Usage.from_openai(usage) if isinstance(usage, dict) else None,
            provider=self.name,
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return WorkerStreamParser(self, req)

    # -- embeddings -----------------------------------------------------------------------------
    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        return self.json_request(self.embed_path, {"model": req.model, "input": req.texts})

    def parse_embed(self, body: bytes, headers: Mapping[str, str], req: EmbeddingRequest) -> EmbeddingResponse:
        data = self.last_frame(body)
        if whole(data.get("error_code") or 0):
            raise self.frame_error(data)
        vectors = data.get("embedding")
        if not isinstance(vectors, list):
            raise StreamError(f"the worker's answer has no embedding: {body[:200]!r}", provider=self.name)
        tokens = whole(data.get("token_num"))
        items = [Embedding(i, [float(x) for x in v]) for i, v in enumerate(vectors)]
        return EmbeddingResponse(items, req.model, Usage(tokens, 0, tokens), provider=self.name)

    # -- errors ---------------------------------------------------------------------------------
    def last_frame(self, body: bytes) -> dict[str, Any]:
        """The JSON object of a whole answer, which may be one NUL-terminated frame or several."""
        frames = [f for f in body.split(b"\0") if f.strip()]
        data = decode_json(frames[-1] if frames else body, provider=self.name)
        if not isinstance(data, dict):
            raise StreamError(f"unexpected answer from the worker: {body[:200]!r}", provider=self.name)
        return data

    def frame_error(self, data: dict[str, Any]) -> ProviderError:
        code = whole(data.get("error_code"))
        message = str(data.get("text") or data.get("message") or f"the worker reported error {code}")[:1000]
        cls = error_class(code)
        return cls(message, provider=self.name, status_code=None, code=str(code), body=data)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            data: Any = self.last_frame(body)
        except ProviderError:
            data = None
        if isinstance(data, dict) and data.get("error_code"):
            err = self.frame_error(data)
            err.status_code = status
            return err
        message = body[:500].decode("utf-8", errors="replace").strip() or None
        return self.provider_error(
            error_for_status(status), status, headers, message=message, code=None, request_id=None, body=data
        )


class DBGPTWorkerAdapter(FastChatWorkerAdapter):
    """A DB-GPT model worker: the same frames (``ModelOutput``), messages sent as they are."""

    name: ClassVar[str] = "dbgpt-worker"
    label: ClassVar[str] = "DB-GPT model worker (its address as api_base, or registered with the controller)"
    default_base_url: ClassVar[str] = "http://127.0.0.1:8001"
    stream_path: ClassVar[str] = "/api/worker/generate_stream"
    generate_path: ClassVar[str] = "/api/worker/generate"
    embed_path: ClassVar[str] = "/api/worker/embeddings"

    def chat_request(self, req: ChatRequest) -> HTTPRequest:
        payload = {"model": req.model, "messages": dbgpt_messages(req.messages), **self.generate_params(req)}
        return self.json_request(self.stream_path if req.stream else self.generate_path, payload)

    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        return self.json_request(self.embed_path, {"model": req.model, "input": req.texts})

    def parse_embed(self, body: bytes, headers: Mapping[str, str], req: EmbeddingRequest) -> EmbeddingResponse:
        data = decode_json(body, provider=self.name)
        if not isinstance(data, list):
            raise StreamError(f"the worker's answer is not a list of vectors: {body[:200]!r}", provider=self.name)
        items = [Embedding(i, [float(x) for x in v]) for i, v in enumerate(data)]
        return EmbeddingResponse(items, req.model, None, provider=self.name)


_DBGPT_ROLES = {"user": "human", "assistant": "ai", "system": "system", "developer": "system", "tool": "human"}


def dbgpt_messages(messages: list[Message]) -> list[dict[str, str]]:
    """OpenAI messages → DB-GPT ``ModelMessage`` dicts (roles ``human``, ``ai``, ``system``; text content)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        out.append({"role": _DBGPT_ROLES.get(str(m.get("role")), "human"), "content": str(content or "")})
    return out


def frame_text(data: dict[str, Any]) -> str:
    """A frame's text: FastChat's ``text``; DB-GPT's ``text`` or its ``content`` (``{"type": "text", ...}``)."""
    text = data.get("text")
    if isinstance(text, str):
        return text.replace("\ufffd", "")  # half a character still being decoded, as FastChat's API server does
    content = data.get("content")
    if isinstance(content, dict):
        obj = content.get("object")
        if isinstance(obj, dict) and isinstance(obj.get("data"), str):
            return str(obj["data"])
        if isinstance(content.get("text"), str):
            return str(content["text"])
    return ""


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class WorkerStreamParser(StreamParser):
    """Cumulative frames → delta chunks; the finish reason and usage on the last chunk.

    A worker that ends its stream without a finish reason (Chatchat's online workers send none) finished with
    ``stop`` when it sent at least one frame; a stream with no frame at all is broken.
    """

    def __init__(self, adapter: FastChatWorkerAdapter, req: ChatRequest) -> None:
        self.adapter = adapter
        self.provider = adapter.name
        self.model = req.model
        self.id = new_id()
        self.created = int(time.time())
        self.sent = ""
        self.frames = 0
        self.usage: Usage | None = None
        self.done = False

    def _chunk(self, delta: Delta, finish: str | None = None, usage: Usage | None = None) -> ChatCompletionChunk:
        choice = ChunkChoice(0, delta, finish)
        return ChatCompletionChunk(self.id, self.created, self.model, [choice], usage, provider=self.provider)

    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        data = decode_json(ev.data.encode(), provider=self.provider, what="stream frame")
        if not isinstance(data, dict):
            raise StreamError(f"unexpected stream frame: {ev.data[:200]!r}", provider=self.provider)
        if whole(data.get("error_code") or 0):
            raise self.adapter.frame_error(data)
        if self.done:
            return []
        self.frames += 1
        text = frame_text(data)
        if data.get("incremental") is True:  # a DB-GPT worker that sends deltas
            text = self.sent + text
        out: list[ChatCompletionChunk] = []
        if len(text) > len(self.sent):
            role = None if self.sent else "assistant"
            out.append(self._chunk(Delta(text[len(self.sent) :], role)))
            self.sent = text
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage.from_openai(usage)
        finish = data.get("finish_reason")
        if finish:
            self.done = True
            out.append(self._chunk(Delta(), str(finish), self.usage))
        return out

    def close(self) -> list[ChatCompletionChunk]:
        if self.done:
            return []
        if not self.frames:
            raise StreamError("the worker's stream ended without any frame", provider=self.provider)
        self.done = True
        return [self._chunk(Delta(), "stop", self.usage)]
