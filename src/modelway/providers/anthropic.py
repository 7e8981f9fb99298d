"""Anthropic Messages API (``POST /v1/messages``).

Differences from OpenAI that this adapter translates:

* **Auth and version.** ``x-api-key: <key>`` and ``anthropic-version: 2023-06-01`` (override the version with
  ``options={"version": ...}``; ``options={"beta": ...}`` adds an ``anthropic-beta`` header).
* **Request shape.** System and developer messages become the top-level ``system`` string (joined with a blank
  line); assistant ``tool_calls`` become ``tool_use`` blocks (the JSON arguments decoded into ``input``);
  ``tool`` messages become ``tool_result`` blocks in a user turn, and consecutive messages of one role are merged
  into one turn (so several tool results travel together, as Anthropic wants). ``max_tokens`` is **required** by
  Anthropic: the caller's ``max_tokens``/``max_completion_tokens`` is sent, else ``options["max_tokens"]``,
  else :data:`DEFAULT_MAX_TOKENS` (4096). ``stop`` → ``stop_sequences``, ``tools`` → ``{name, description,
  input_schema}``, ``tool_choice`` → ``{"type": "auto"|"any"|"none"|"tool"}``, ``parallel_tool_calls=False`` →
  ``tool_choice.disable_parallel_tool_use``, ``user`` → ``metadata.user_id``, ``reasoning_effort`` → ``thinking``
  with a budget (:data:`THINKING_BUDGETS`, below ``max_tokens``; ``none``: no thinking). Extras (``top_k``,
  ``thinking``, ...) are sent as given.
* **Native requests.** A request that came in Anthropic's own shape (``req.native``, API ``anthropic.messages``)
  is sent as it came, model and ``stream`` set; its ``anthropic-beta`` header joins the configured one. The answer
  keeps the upstream's body (``ChatCompletion.raw``) and each stream chunk the frame it came from
  (``ChatCompletionChunk.raw``; frames with nothing to translate come as chunks without choices).
* **Not sent** (Anthropic has no such parameter): ``seed``, ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``response_format``, ``logprobs``, ``top_logprobs``, ``stream_options`` (the usage always
  comes). ``n`` > 1 raises :class:`~modelway.errors.InvalidRequestError`: Anthropic returns one message.
* **Response.** Text blocks are joined into ``content``, ``thinking`` blocks into ``reasoning_content``,
  ``tool_use`` blocks become ``tool_calls``. ``stop_reason`` is mapped to OpenAI's finish reasons (see
  :data:`STOP_REASONS`).
* **Usage.** ``prompt_tokens`` is ``input_tokens`` plus the cache tokens (OpenAI counts cached tokens in the
  prompt); ``prompt_tokens_details`` gives ``cached_tokens`` (cache reads) and ``cache_creation_tokens``.
* **Streaming.** Typed events (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``,
  ``ping``), no ``[DONE]``. The input usage comes in ``message_start``, the output usage in ``message_delta``:
  both ride on the finish chunk, the last chunk of the stream. A stream that closes before ``message_stop``
  raises :class:`~modelway.errors.StreamError` at ``close()``; an ``event: error`` raises the typed error.
* **Errors** are ``{"type": "error", "error": {"type", "message"}, "request_id"}``, classified by the error
  type (see :data:`ERROR_TYPES`), then by the HTTP status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
    error_for_status,
)
from ..sse import SSEEvent, encode_event
from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
    whole,
)
from .anthropic_request import (
    NATIVE_API,
    THINKING_BUDGETS,
    AnthropicNativeBody,
    native_of,
    native_payload,
    thinking_for,
    tool,
    tool_choice,
    translate_messages,
)
from .base import Adapter, HTTPRequest, StreamParser, decode_json

__all__ = [
    "NATIVE_API",
    "AnthropicAdapter",
    "AnthropicNativeBody",
    "AnthropicStreamParser",
    "classify_anthropic_error",
]

CHAT_PATH = "/v1/messages"
DEFAULT_VERSION = "2023-06-01"
#: ``max_tokens`` sent when the caller gave none (Anthropic requires one)
DEFAULT_MAX_TOKENS = 4096
#: Anthropic ``stop_reason`` → OpenAI ``finish_reason`` (unknown reasons pass through unchanged)
STOP_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: Anthropic error type → class
ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "billing_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "timeout_error": ProviderTimeoutError,
    "api_error": UpstreamServerError,
    "overloaded_error": UpstreamServerError,
}
#: lower-case message fragments of a "prompt too long" refusal (an invalid_request_error)
_CONTEXT_HINTS = ("prompt is too long", "context window", "context length")


def classify_anthropic_error(status: int | None, etype: str | None, message: str | None) -> type[ProviderError]:
    """The error class for an Anthropic error: by error type, then by status; "prompt is too long" → context."""
    cls = ERROR_TYPES.get(etype or "")
    if cls is None and status is not None and status != 200:
        cls = error_for_status(status)
    if cls in (None, BadRequestError) and message and any(h in message.lower() for h in _CONTEXT_HINTS):
        return ContextLengthError
    return cls or UpstreamServerError


class AnthropicAdapter(Adapter):
    """Anthropic Messages API (chat only: Anthropic serves no embeddings)."""

    name = "anthropic"
    label = "Anthropic"
    default_base_url = "https://api.anthropic.com"
    key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = ("ANTHROPIC_BASE_URL",)
    known_models = ("claude-sonnet-4-5", "claude-haiku-4-5")

    def auth_headers(self) -> dict[str, str]:
        h = {
            "x-api-key": self.require_key(),
            "anthropic-version": str(self.settings.options.get("version") or DEFAULT_VERSION),
        }
        beta = self.settings.options.get("beta")
        if beta:
            h["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(map(str, beta))
        return h

    # -- chat -------------------------------------------------------------------------------------
    def chat_payload(self, req: ChatRequest) -> dict[str, Any]:
        native = native_of(req)
        if native is not None:
            return native_payload(req, native.body)
        p = req.params
        n = p.get("n")
        if n is not None and n != 1:
            raise InvalidRequestError("Anthropic returns a single message: n must be 1", param="n")
        system, messages = translate_messages(req.messages)
        out: dict[str, Any] = {"model": req.model}
        if system is not None:
            out["system"] = system
        out["messages"] = messages
        max_tokens = p.get("max_completion_tokens", p.get("max_tokens"))
        effort = p.get("reasoning_effort", req.extra.get("reasoning_effort"))
        if max_tokens is None:
            max_tokens = self.settings.options.get("max_tokens", DEFAULT_MAX_TOKENS)
            if isinstance(effort, str) and isinstance(max_tokens, int):  # room for the thinking besides the answer
                max_tokens += THINKING_BUDGETS.get(effort, 0)
        out["max_tokens"] = max_tokens
        for k in ("temperature", "top_p"):
            if p.get(k) is not None:
                out[k] = p[k]
        stop = p.get("stop")
        if stop:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if p.get("tools"):
            out["tools"] = [tool(t) for t in p["tools"]]
        choice = tool_choice(p.get("tool_choice"))
        if p.get("parallel_tool_calls") is False and p.get("tools"):
            choice = choice or {"type": "auto"}
            if choice["type"] != "none":
                choice["disable_parallel_tool_use"] = True
        if choice is not None:
            out["tool_choice"] = choice
        if p.get("user"):
            out["metadata"] = {"user_id": str(p["user"])}
        # seed, frequency_penalty, presence_penalty, logit_bias, response_format, logprobs, top_logprobs and
        # stream_options have no Anthropic equivalent: they are dropped (see the module docstring)
        for k, v in req.extra.items():
            if k == "metadata" and isinstance(v, dict) and isinstance(out.get("metadata"), dict):
                out["metadata"] = {**out["metadata"], **v}
            elif k != "reasoning_effort":
                out[k] = v
        thinking = thinking_for(effort, max_tokens) if isinstance(max_tokens, int) else None
        if thinking is not None and "thinking" not in out:
            out["thinking"] = thinking
        out.pop("stream", None)
        if req.stream:
            out["stream"] = True
        return out

    def chat_request(self, req: ChatRequest) -> HTTPRequest:
        headers = {"Accept": "text/event-stream"} if req.stream else {}
        native = native_of(req)
        beta = native.beta if isinstance(native, AnthropicNativeBody) else None
        if beta:
            mine = self.auth_headers().get("anthropic-beta")
            names = [b.strip() for b in f"{mine or ''},{beta}".split(",") if b.strip()]
            headers["anthropic-beta"] = ",".join(dict.fromkeys(names))
        return self.json_request(CHAT_PATH, self.chat_payload(req), headers)

    def parse_chat(self, body: bytes, headers: Mapping[str, str], req: ChatRequest) -> ChatCompletion:
        data = decode_json(body, provider=self.name)
        if not isinstance(data, dict) or data.get("type") == "error" or not isinstance(data.get("content"), list):
            raise self.error_from_payload(200, headers, data)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "thinking":
                thoughts.append(str(block.get("thinking") or ""))
            elif kind == "tool_use":
                args = orjson.dumps(block.get("input") or {}).decode()
                calls.append(ToolCall(str(block.get("id") or ""), FunctionCall(str(block.get("name") or ""), args)))
        message = ChatMessage(
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls or None,
            reasoning_content="".join(thoughts) if thoughts else None,
        )
        rid = data.get("id") or headers.get("request-id") or ""
        return ChatCompletion(
            id=str(rid),
            created=int(time.time()),
            model=req.model,
            choices=[Choice(0, message, _finish(data.get("stop_reason")))],
            usage=_usage(data.get("usage")),
            provider=self.name,
            raw=data if native_of(req) is not None else None,
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return AnthropicStreamParser(self, req)

    # -- errors -----------------------------------------------------------------------------------
    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        data: Any = None
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = body.decode("utf-8", errors="replace")
        return self.error_from_payload(status, headers, data)

    def error_from_payload(self, status: int | None, headers: Mapping[str, str], data: Any) -> ProviderError:
        """Typed error from ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
        message: str | None = None
        etype: str | None = None
        rid: Any = None
        if isinstance(data, dict):
            err = data["error"] if isinstance(data.get("error"), dict) else data
            message = str(err["message"]) if err.get("message") else None
            etype = str(err["type"]) if err.get("type") and err.get("type") != "error" else None
            rid = data.get("request_id")
        elif isinstance(data, str) and data.strip():
            message = data.strip()[:500]
        rid = rid or headers.get("request-id") or headers.get("x-request-id")
        cls = classify_anthropic_error(status, etype, message)
        return self.provider_error(cls, status, headers, message=message, code=etype, request_id=rid, body=data)


class AnthropicStreamParser(StreamParser):
    """Turns Anthropic's typed stream events into delta chunks; see the module docstring."""

    def __init__(self, adapter: AnthropicAdapter, req: ChatRequest) -> None:
        self.adapter = adapter
        self.provider = adapter.name
        self.model = req.model
        self.created = int(time.time())
        self.id = ""
        self.done = False
        self.finished = False
        self.usage: dict[str, Any] = {}
        #: content block index → tool ordinal (the OpenAI ``tool_calls[].index``)
        self.tools: dict[int, int] = {}
        #: tool ordinals that have received argument text
        self.with_args: set[int] = set()
        #: a native request: each chunk keeps the frame it came from
        self.native = native_of(req) is not None

    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        chunks = self._event(ev)
        if self.native:
            raw = encode_event(ev.data, event=ev.event)
            if not chunks:
                return [ChatCompletionChunk(self.id, self.created, self.model, [], provider=self.provider, raw=raw)]
            chunks[0].raw = raw
            for c in chunks[1:]:
                c.raw = b""
        return chunks

    def _event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        if not ev.data.strip():
            return []
        obj = decode_json(ev.data.encode(), provider=self.provider, what="stream event")
        if not isinstance(obj, dict):
            raise StreamError(f"unexpected stream event: {ev.data[:200]!r}", provider=self.provider)
        kind = obj.get("type") or ev.event
        if kind == "error" or ev.event == "error":
            err = self.adapter.error_from_payload(None, {}, obj)
            err.request_id = err.request_id or self.id or None
            raise err
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.id = str(msg.get("id") or "")
            self._add_usage(msg.get("usage"))
            return [self._chunk(Delta(content="", role="assistant"))]
        if kind == "content_block_start":
            return self._block_start(int(obj.get("index", 0)), obj.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(obj.get("index", 0)), obj.get("delta") or {})
        if kind == "content_block_stop":
            ti = self.tools.get(int(obj.get("index", 0)))
            if ti is not None and ti not in self.with_args:  # a call with no arguments at all: say so in JSON
                self.with_args.add(ti)
                return [self._chunk(Delta(tool_calls=[ToolCallDelta(ti, arguments="{}")]))]
            return []
        if kind == "message_delta":
            self._add_usage(obj.get("usage"))
            reason = (obj.get("delta") or {}).get("stop_reason")
            if reason is None or self.finished:
                return []
            self.finished = True
            chunk = self._chunk(Delta(), _finish(reason))
            chunk.usage = _usage(self.usage)
            return [chunk]
        if kind == "message_stop":
            self.done = True
            if not self.finished:  # no message_delta came: finish here, still with the usage on the last chunk
                self.finished = True
                chunk = self._chunk(Delta(), "stop")
                chunk.usage = _usage(self.usage) if self.usage else None
                return [chunk]
        return []  # ping and event types this adapter does not know

    def close(self) -> list[ChatCompletionChunk]:
        if not self.done:
            raise StreamError(
                "the stream ended before Anthropic sent message_stop",
                provider=self.provider,
                request_id=self.id or None,
            )
        return []

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            self.id, self.created, self.model, [ChunkChoice(0, delta, finish)], provider=self.provider
        )

    def _add_usage(self, u: Any) -> None:
        if isinstance(u, dict):
            self.usage.update({k: v for k, v in u.items() if v is not None})

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ChatCompletionChunk]:
        kind = block.get("type")
        if kind == "tool_use":
            ti = len(self.tools)
            self.tools[index] = ti
            args = ""
            if block.get("input"):  # normally {} with the arguments in input_json_delta events
                args = orjson.dumps(block["input"]).decode()
                self.with_args.add(ti)
            tcd = ToolCallDelta(ti, str(block.get("id") or ""), str(block.get("name") or ""), args, "function")
            return [self._chunk(Delta(tool_calls=[tcd]))]
        if kind == "text" and block.get("text"):
            return [self._chunk(Delta(content=str(block["text"])))]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk(Delta(reasoning_content=str(block["thinking"])))]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ChatCompletionChunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk(Delta(content=str(text)))] if text else []
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return [self._chunk(Delta(reasoning_content=str(text)))] if text else []
        if kind == "input_json_delta":
            piece = delta.get("partial_json")
            ti = self.tools.get(index)
            if not piece or ti is None:
                return []
            self.with_args.add(ti)
            return [self._chunk(Delta(tool_calls=[ToolCallDelta(ti, arguments=str(piece))]))]
        return []  # signature_delta, citations_delta


# -- response helpers ------------------------------------------------------------------------------


def _finish(reason: Any) -> str | None:
    if reason is None:
        return None
    return STOP_REASONS.get(str(reason), str(reason))


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    created = whole(u.get("cache_creation_input_tokens"))
    read = whole(u.get("cache_read_input_tokens"))
    prompt = whole(u.get("input_tokens")) + created + read
    details = {"cached_tokens": read, "cache_creation_tokens": created} if created or read else None
    completion = whole(u.get("output_tokens"))
    return Usage(prompt, completion, prompt + completion, details)
