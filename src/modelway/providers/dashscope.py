"""Alibaba DashScope (Qwen), native API (``/api/v1/services/...``).

Differences from OpenAI that this adapter translates:

* **Request shape.** ``{"model", "input": {"messages"}, "parameters": {...}}``; ``parameters`` holds only
  what the caller gave, plus ``result_format: "message"`` (unless the caller chose one in ``extra``).
  Provider extras (``top_k``, ``enable_search``, ``repetition_penalty``, ``enable_thinking``, ...) go into
  ``parameters``.
* **Streaming** is switched on by the headers ``X-DashScope-SSE: enable`` and ``Accept: text/event-stream``,
  never by ``stream`` in the body. Streams always ask for ``incremental_output: true`` so the server sends
  deltas, unless the caller passed ``incremental_output=False`` in ``extra``; only then are cumulative frames
  (each repeating the whole text so far) turned into deltas here, with a cheap consistency check.
* **Stream framing.** ``data:{...}`` frames with no ``[DONE]``; ``finish_reason`` is the *string* ``"null"``
  until the last frame; the usage is a running total on every frame and only the final one is attached (to the
  last chunk). A connection that closes before a real ``finish_reason`` raises :class:`StreamError` at
  ``close()``.
* **Errors** are ``{"code": "Dotted.Code", "message", "request_id"}``: as an HTTP error body, as an
  ``event:error`` frame inside a 200 stream, or as a ``data`` frame with a ``code`` and no ``output``.
* **Usage** is ``input_tokens/output_tokens/total_tokens``, renamed to OpenAI's names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
    error_for_status,
)
from ..sse import SSEDecoder, SSEEvent
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
    ToolCall,
    ToolCallDelta,
    Usage,
    whole,
)
from .base import Adapter, HTTPRequest, StreamParser, decode_json, developer_to_system
from .rerank import DashScopeRerank

__all__ = ["DashScopeAdapter", "DashScopeStreamParser", "classify_dashscope_error"]

CHAT_PATH = "/services/aigc/text-generation/generation"
EMBED_PATH = "/services/embeddings/text-embedding/text-embedding"
SSE_HEADERS = {"X-DashScope-SSE": "enable", "Accept": "text/event-stream", "X-Accel-Buffering": "no"}

#: OpenAI parameters DashScope takes under the same name. Not sent: ``frequency_penalty`` (DashScope has no
#: frequency penalty; its ``repetition_penalty`` is multiplicative on another scale, so translating would
#: change the meaning: a caller who wants it passes ``repetition_penalty`` in ``extra``), ``logit_bias`` (no
#: equivalent), ``user`` (no field), ``stream_options`` (the usage comes on every frame anyway).
PASSED_PARAMS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "n",
    "logprobs",
    "top_logprobs",
)

#: error code (exact, or the head of a dotted code: ``Throttling`` covers ``Throttling.RateQuota``) → class
_CODES: tuple[tuple[str, type[ProviderError]], ...] = (
    ("DataInspectionFailed", ContentFilterError),
    ("InvalidApiKey", AuthenticationError),
    ("Arrearage", PermissionDeniedError),
    ("AccessDenied", PermissionDeniedError),
    ("RequestTimeOut", ProviderTimeoutError),
    ("Throttling", RateLimitError),
    ("InternalError", UpstreamServerError),
    ("InvalidParameter", BadRequestError),
    ("BadRequest", BadRequestError),
)
#: lower-case message fragments of a "prompt too long" refusal (it comes as a plain InvalidParameter)
_CONTEXT_HINTS = ("range of input length", "exceed max length", "exceeds max length", "maximum context")
#: chars of the previous cumulative text compared against the next frame (an O(1) check, see _suffix)
_TAIL = 32


def classify_dashscope_error(status: int | None, code: str | None, message: str | None) -> type[ProviderError]:
    """The error class for a DashScope error: by code, then a cheap look at the message, then the status."""
    cls: type[ProviderError] | None = None
    if code:
        for head, c in _CODES:
            if code == head or code.startswith(head + "."):
                cls = c
                break
    if cls is None and status is not None and status != 200:
        cls = error_for_status(status)
    if cls in (None, BadRequestError) and message:
        low = message.lower()
        if any(h in low for h in _CONTEXT_HINTS):
            return ContextLengthError
        if "model not exist" in low:
            return NotFoundError
    return cls or UpstreamServerError


class DashScopeAdapter(DashScopeRerank, Adapter):
    """DashScope native text generation, text embedding and text rerank (:class:`~.rerank.DashScopeRerank`)."""

    name = "dashscope"
    label = "Alibaba DashScope (native API)"
    default_base_url = "https://dashscope.aliyuncs.com/api/v1"
    key_env = ("DASHSCOPE_API_KEY",)
    base_url_env = ("DASHSCOPE_HTTP_BASE_URL",)
    known_models = ("qwen-plus", "qwen-turbo", "qwen-max", "text-embedding-v3")
    supports_embeddings = True

    def base_headers(self) -> dict[str, str]:
        h = super().base_headers()
        workspace = self.settings.options.get("workspace")
        if workspace and "X-DashScope-WorkSpace" not in self.settings.headers:
            h["X-DashScope-WorkSpace"] = str(workspace)
        return h

    # -- chat -------------------------------------------------------------------------------------
    def chat_parameters(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        out: dict[str, Any] = {"result_format": "message"}
        for k in PASSED_PARAMS:
            if k in p:
                out[k] = p[k]
        if "max_completion_tokens" in p:
            out["max_tokens"] = p["max_completion_tokens"]
        elif "max_tokens" in p:
            out["max_tokens"] = p["max_tokens"]
        out.update(req.extra)
        effort = p.get("reasoning_effort", out.pop("reasoning_effort", None))  # also from a library's extra_body
        if effort is not None:  # Qwen3 and QwQ: a switch (the caller's own enable_thinking wins)
            out.setdefault("enable_thinking", effort != "none")
        out.pop("stream", None)  # streaming is the headers' job; "stream" in the body is not DashScope's
        if req.stream:
            out.setdefault("incremental_output", True)
        return out

    def chat_request(self, req: ChatRequest) -> HTTPRequest:
        payload = {
            "model": req.model,
            "input": {"messages": developer_to_system(req.messages)},
            "parameters": self.chat_parameters(req),
        }
        return self.json_request(CHAT_PATH, payload, dict(SSE_HEADERS) if req.stream else None)

    def parse_chat(self, body: bytes, headers: Mapping[str, str], req: ChatRequest) -> ChatCompletion:
        data = decode_json(body, provider=self.name)
        if not isinstance(data, dict) or not isinstance(data.get("output"), dict):
            raise self.error_from_payload(200, headers, data)
        output = data["output"]
        choices = []
        if output.get("choices"):
            for i, c in enumerate(output["choices"]):
                msg = c.get("message") or {}
                tcs = msg.get("tool_calls")
                message = ChatMessage(
                    content=_text(msg.get("content")),
                    role=msg.get("role") or "assistant",
                    tool_calls=[ToolCall.from_openai(t) for t in tcs] if tcs else None,
                    reasoning_content=msg.get("reasoning_content") or None,
                )
                choices.append(Choice(c.get("index", i), message, _finish(c.get("finish_reason"))))
        else:  # result_format "text"
            fr = _finish(output.get("finish_reason"))
            choices.append(Choice(0, ChatMessage(content=output.get("text")), fr))
        return ChatCompletion(
            id=_rid(data, headers) or "",
            created=int(time.time()),
            model=req.model,
            choices=choices,
            usage=_usage(data.get("usage")),
            provider=self.name,
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return DashScopeStreamParser(self, req)

    # -- embeddings -------------------------------------------------------------------------------
    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        params = dict(req.params)
        # native embeddings are always floats and have no end-user field
        params.pop("encoding_format", None)
        params.pop("user", None)
        if "dimensions" in params:
            params["dimension"] = params.pop("dimensions")
        payload = {"model": req.model, "input": {"texts": req.texts}, "parameters": params}
        return self.json_request(EMBED_PATH, payload)

    def parse_embed(self, body: bytes, headers: Mapping[str, str], req: EmbeddingRequest) -> EmbeddingResponse:
        data = decode_json(body, provider=self.name)
        output = data.get("output") if isinstance(data, dict) else None
        if not isinstance(output, dict) or not isinstance(output.get("embeddings"), list):
            raise self.error_from_payload(200, headers, data)
        items = [
            Embedding(index=int(e.get("text_index", i)), embedding=list(e.get("embedding") or ()))
            for i, e in enumerate(output["embeddings"])
        ]
        items.sort(key=lambda e: e.index)
        u = data.get("usage")
        total = whole(u.get("total_tokens")) if isinstance(u, dict) else None
        return EmbeddingResponse(
            data=items,
            model=req.model,
            usage=Usage(total, 0, total) if total is not None else None,
            provider=self.name,
        )

    # -- errors -----------------------------------------------------------------------------------
    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return self.error_from_payload(status, headers, _error_body(body))

    def error_from_payload(self, status: int | None, headers: Mapping[str, str], data: Any) -> ProviderError:
        """Typed error from ``{"code","message","request_id"}`` (or an OpenAI-shaped ``{"error": {...}}``)."""
        message: str | None = None
        code: str | None = None
        rid: Any = None
        if isinstance(data, dict):
            err = data["error"] if isinstance(data.get("error"), dict) else data
            message = str(err["message"]) if err.get("message") else None
            code = str(err["code"]) if err.get("code") else None
            rid = data.get("request_id") or err.get("request_id")
        elif isinstance(data, str) and data.strip():
            message = data.strip()[:500]
        rid = rid or headers.get("x-request-id")
        cls = classify_dashscope_error(status, code, message)
        return self.provider_error(cls, status, headers, message=message, code=code, request_id=rid, body=data)


class DashScopeStreamParser(StreamParser):
    """Turns DashScope's ``data:{...}`` frames into delta chunks; see the module docstring."""

    def __init__(self, adapter: DashScopeAdapter, req: ChatRequest) -> None:
        self.adapter = adapter
        self.provider = adapter.name
        self.model = req.model
        self.created = int(time.time())
        # only a caller's explicit incremental_output=False makes the server send cumulative text
        self.cumulative = req.extra.get("incremental_output", True) is False
        self.expected = max(1, int(req.params.get("n") or 1))
        self.request_id: str | None = None
        self.done = False
        self.finished: set[int] = set()
        self.usage: dict[str, Any] | None = None
        self.usage_by_choice: dict[int, dict[str, Any]] = {}  # n > 1: each frame counts its own choice
        self.usage_sent = False
        self._seen: dict[tuple[Any, ...], tuple[int, str]] = {}  # cumulative mode: key → (length, tail)
        self._tool_ids: set[tuple[int, int]] = set()

    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        if ev.event == "error":
            raise self._error(_error_body(ev.data.encode()), _frame_status(ev.comment))
        if not ev.data.strip():
            return []
        obj = decode_json(ev.data.encode(), provider=self.provider, what="stream event")
        if not isinstance(obj, dict):
            raise StreamError(
                f"unexpected stream event: {ev.data[:200]!r}", provider=self.provider, request_id=self.request_id
            )
        rid = obj.get("request_id")
        if rid:
            self.request_id = str(rid)
        output = obj.get("output")
        if not isinstance(output, dict):
            if obj.get("code"):
                raise self._error(obj)
            return []
        choices = self._choices(output)
        u = obj.get("usage")
        if isinstance(u, dict):
            self.usage = u
            if self.expected > 1 and len(choices) == 1:
                self.usage_by_choice[choices[0].index] = u
        if not choices:
            return []
        chunk = ChatCompletionChunk(self.request_id or "", self.created, self.model, choices, provider=self.provider)
        if any(c.finish_reason is not None for c in choices):
            self.done = True
            if not self.usage_sent and len(self.finished) >= self.expected:
                chunk.usage = self._final_usage()
                self.usage_sent = True
        return [chunk]

    def close(self) -> list[ChatCompletionChunk]:
        if not self.done:
            raise StreamError(
                "the stream ended before DashScope sent a finish_reason",
                provider=self.provider,
                request_id=self.request_id,
            )
        if self.usage_sent or self.usage is None:
            return []
        # fewer choices finished than n asked for (the model ignored n): the usage goes on its own last chunk
        self.usage_sent = True
        return [
            ChatCompletionChunk(
                self.request_id or "", self.created, self.model, [], self._final_usage(), provider=self.provider
            )
        ]

    def _error(self, data: Any, status: int | None = None) -> ProviderError:
        err = self.adapter.error_from_payload(status, {}, data)
        if err.request_id is None:
            err.request_id = self.request_id
        return err

    def _choices(self, output: dict[str, Any]) -> list[ChunkChoice]:
        raw = output.get("choices")
        if not raw and "text" in output:  # result_format "text"
            raw = [{"message": {"content": output.get("text")}, "finish_reason": output.get("finish_reason")}]
        out = []
        for j, c in enumerate(raw or ()):
            idx = int(c.get("index", j))
            msg = c.get("message") or {}
            content = _text(msg.get("content"))
            reasoning = msg.get("reasoning_content")
            if self.cumulative:
                content = self._suffix((idx, "content"), content)
                reasoning = self._suffix((idx, "reasoning"), reasoning)
            fr = _finish(c.get("finish_reason"))
            if fr is not None:
                self.finished.add(idx)
            tools = self._tools(idx, msg.get("tool_calls"))
            delta = Delta(content, msg.get("role"), reasoning or None, tools or None)
            out.append(ChunkChoice(idx, delta, fr))
        return out

    def _tools(self, idx: int, tcs: Any) -> list[ToolCallDelta]:
        out = []
        for j, t in enumerate(tcs or ()):
            ti = int(t.get("index", j))
            fn = t.get("function") or {}
            name: str | None = fn.get("name") or None
            args = fn.get("arguments")
            if args is not None and not isinstance(args, str):
                args = orjson.dumps(args).decode()
            if self.cumulative:
                name = self._suffix((idx, "name", ti), name) or None
                args = self._suffix((idx, "args", ti), args)
            tid: str | None = t.get("id") or None
            if tid is not None and (idx, ti) in self._tool_ids:
                tid = None  # the id goes on the first piece only; later pieces may repeat it
            elif tid is not None:
                self._tool_ids.add((idx, ti))
            if tid is None and name is None and not args:
                continue
            out.append(ToolCallDelta(ti, tid, name, args, (t.get("type") or "function") if tid else None))
        return out

    def _suffix(self, key: tuple[Any, ...], text: str | None) -> str | None:
        """Cumulative mode: the part of ``text`` not sent yet.

        The check is O(1) per frame: the new text must be at least as long as the previous one and must hold
        the previous text's last 32 characters at the same place. A frame that fails it (the server rewrote
        earlier text) raises :class:`StreamError` instead of emitting a garbled delta. It catches rewrites
        near the end of the text, not every change earlier on: a full comparison would make a stream O(n²).
        """
        if text is None:
            return None
        prev_len, tail = self._seen.get(key, (0, ""))
        if len(text) < prev_len or (tail and not text.startswith(tail, prev_len - len(tail))):
            raise StreamError(
                "DashScope sent a cumulative frame that does not extend the previous one",
                provider=self.provider,
                request_id=self.request_id,
            )
        self._seen[key] = (len(text), text[-_TAIL:])
        return text[prev_len:]

    def _final_usage(self) -> Usage | None:
        if len(self.usage_by_choice) > 1:
            parts = list(self.usage_by_choice.values())
            prompt = max(whole(u.get("input_tokens")) for u in parts)
            return Usage.of(prompt, sum(whole(u.get("output_tokens")) for u in parts))
        return _usage(self.usage)


def _finish(reason: Any) -> str | None:
    """DashScope's finish reason; the string ``"null"`` (every frame but the last) means none."""
    if reason is None or reason == "null" or reason == "":
        return None
    return str(reason)


def _text(content: Any) -> str | None:
    """Message content: a string, or (multimodal models) a list of ``{"text": ...}`` parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return str(content)


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    prompt = whole(u.get("input_tokens"))
    completion = whole(u.get("output_tokens"))
    total = u.get("total_tokens")
    return Usage(
        prompt,
        completion,
        int(total) if total is not None else prompt + completion,
        u.get("prompt_tokens_details") or u.get("input_tokens_details"),
        u.get("output_tokens_details") or u.get("completion_tokens_details"),
    )


def _rid(data: dict[str, Any], headers: Mapping[str, str]) -> str | None:
    rid = data.get("request_id") or headers.get("x-request-id")
    return str(rid) if rid else None


def _frame_status(comment: str | None) -> int | None:
    """The status an error frame claims in its ``:HTTP_STATUS/429`` comment line, if any."""
    if comment and comment.startswith("HTTP_STATUS/"):
        code = comment[12:]
        if code.isdigit():
            return int(code)
    return None


def _error_body(body: bytes) -> Any:
    """Decode an error body: JSON, or (a stream refused before it started) an SSE body holding the JSON."""
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    dec = SSEDecoder()
    for ev in [*dec.feed(body), *dec.flush()]:
        try:
            obj = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return body.decode("utf-8", errors="replace")
