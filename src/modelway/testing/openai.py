"""OpenAI Chat Completions simulators: OpenAI itself and the DeepSeek, Moonshot and DashScope
compatible-mode flavours (protocols.md sections 3, 5 and 2.7)."""

from __future__ import annotations

import base64
import secrets
import struct
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from aiohttp import web

from . import openai_responses
from ._common import REC, Plan, Stream, count_tokens, embedding_texts, fake_embedding, no_stream, now
from ._server import BaseSimulator
from .script import Fault, Reply

__all__ = ["DashScopeCompatibleSimulator", "DeepSeekSimulator", "MoonshotSimulator", "OpenAISimulator"]

ErrorSpec = tuple[str, str | None, str]  # (type, code, message)


class OpenAISimulator(BaseSimulator):
    """``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models[/{id}]``.

    SSE is chosen by ``"stream": true`` in the body. Model requests (chat, embeddings) take the next
    scripted item; ``GET /models`` does not. ``models`` overrides the model list.
    """

    provider = "openai"
    base_path = "/v1"
    default_api_key = "sk-test-openai"
    #: prefixes the routes are served under (relative to :attr:`url`)
    route_prefixes: ClassVar[tuple[str, ...]] = ("/v1",)
    default_models: ClassVar[tuple[str, ...]] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    owned_by: ClassVar[str] = "openai"
    has_embeddings: ClassVar[bool] = True
    #: whether ``Reply.reasoning`` is sent (as ``reasoning_content``)
    supports_reasoning: ClassVar[bool] = False
    #: models that reason by default (a default reasoning text when the reply has none)
    reasoning_models: ClassVar[frozenset[str]] = frozenset()
    errors: ClassVar[dict[int, ErrorSpec]] = {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: (
            "invalid_request_error",
            "unsupported_country_region_territory",
            "Country, region, or territory not supported",
        ),
        404: (
            "invalid_request_error",
            "model_not_found",
            "The model does not exist or you do not have access to it.",
        ),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
        500: (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        ),
        503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    }
    stream_error: ClassVar[ErrorSpec] = (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    )

    def __init__(self, *, models: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = list(models) if models is not None else list(self.default_models)

    # ------------------------------------------------------------------ routes

    def _add_routes(self, app: web.Application) -> None:
        for prefix in self.route_prefixes:
            app.router.add_post(prefix + "/chat/completions", self._chat)
            if self.has_embeddings:
                app.router.add_post(prefix + "/embeddings", self._embeddings)
            app.router.add_get(prefix + "/models", self._list_models)
            app.router.add_get(prefix + "/models/{model_id}", self._get_model)
            if self.provider == "openai":  # OpenAI's own Responses API (testing/openai_responses.py)
                openai_responses.add_routes(self, app, prefix)

    def _request_id(self) -> str:
        return "req_" + secrets.token_hex(16)

    def _completion_id(self) -> str:
        return "chatcmpl-" + secrets.token_hex(12)

    # ------------------------------------------------------------------ errors and auth

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        etype, dcode, dmessage = self.errors.get(status, ("api_error", None, f"HTTP {status}"))
        return {"error": {"message": message or dmessage, "type": etype, "param": None, "code": code or dcode}}

    def _auth_message(self, token: str | None) -> str | None:
        if not token:
            return "You didn't provide an API key. You need to provide your API key in an Authorization header."
        return f"Incorrect API key provided: {token[:3]}***{token[-4:]}."

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        etype, code, message = self.stream_error
        err = {"message": fault.message or message, "type": etype, "param": None, "code": fault.code or code}
        return b"data: " + orjson.dumps({"error": err}) + b"\n\n"

    def _bad_request(self, request: web.Request, message: str) -> web.Response:
        return self.error_response(request, 400, message=message)

    # ------------------------------------------------------------------ chat

    def _prelude(self, stream: bool) -> bytes:
        return b""

    def _wants_reasoning(self, body: dict[str, Any], model: str) -> bool:
        return model in self.reasoning_models

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self._bad_request(request, "We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return self._bad_request(request, "you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            return self._bad_request(request, "Invalid 'messages': expected a non-empty array.")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        reasons = self.supports_reasoning and self._wants_reasoning(body, model)
        meta = {"id": self._completion_id(), "created": now(), "system_fingerprint": "fp_modelway_sim"}

        def plan(reply: Reply) -> Plan:
            return Plan.make(reply, messages, model, default_reasoning=reasons)

        return await self._answer(
            request,
            stream=stream,
            render=lambda r: orjson.dumps(self._completion(plan(r), meta)),
            render_stream=lambda r: self._chunks(plan(r), meta, include_usage),
            prelude=self._prelude(stream),
        )

    def _usage(self, p: Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": p.completion_tokens,
            "total_tokens": p.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
        }

    def _message(self, p: Plan) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": p.text}
        if self.supports_reasoning and p.reasoning is not None:
            msg["reasoning_content"] = p.reasoning
        if p.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in p.tool_calls
            ]
        return msg

    def _completion(self, p: Plan, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": meta["id"],
            "object": "chat.completion",
            "created": meta["created"],
            "model": p.model,
            "choices": [{"index": 0, "message": self._message(p), "logprobs": None, "finish_reason": p.finish_reason}],
            "usage": self._usage(p),
            "system_fingerprint": meta["system_fingerprint"],
        }

    def _finish_choice_extra(self, p: Plan) -> dict[str, Any]:
        return {}

    def _chunks(self, p: Plan, meta: dict[str, Any], include_usage: bool) -> Stream:
        head = {
            "id": meta["id"],
            "object": "chat.completion.chunk",
            "created": meta["created"],
            "model": p.model,
            "system_fingerprint": meta["system_fingerprint"],
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data: dict[str, Any] = {
                **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}],
            }
            if include_usage:
                data["usage"] = None
            return b"data: " + orjson.dumps(data) + b"\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        if self.supports_reasoning:
            events += [chunk({"reasoning_content": r}) for r in p.reasoning_pieces]
        events += [chunk({"content": piece}) for piece in p.pieces]
        for i, call in enumerate(p.tool_calls):
            first = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append(chunk({"tool_calls": [first]}))
            events += [chunk({"tool_calls": [{"index": i, "function": {"arguments": a}}]}) for a in call.pieces]
        events.append(chunk({}, p.finish_reason, **self._finish_choice_extra(p)))
        if include_usage:
            events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": self._usage(p)}) + b"\n\n")
        return Stream(events, b"data: [DONE]\n\n")

    # ------------------------------------------------------------------ embeddings and models

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self._bad_request(request, "We could not parse the JSON body of your request.")
        texts = embedding_texts(body.get("input"))
        if not isinstance(body.get("model"), str) or texts is None:
            return self._bad_request(request, "'input' and 'model' are required.")
        dim = body.get("dimensions") or self.embedding_dim
        fmt = body.get("encoding_format") or "float"
        if not isinstance(dim, int) or dim < 1 or fmt not in ("float", "base64"):
            return self._bad_request(request, "Invalid 'dimensions' or 'encoding_format'.")

        def render(reply: Reply) -> bytes:
            data = []
            for i, text in enumerate(texts):
                vec = fake_embedding(text, dim)
                emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if fmt == "base64" else vec
                data.append({"object": "embedding", "index": i, "embedding": emb})
            tokens = max(1, sum(count_tokens(t) for t in texts))
            return orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        return await self._answer(request, stream=False, render=render, render_stream=no_stream)

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": self.owned_by}

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [self._model(m) for m in self.models]}, dumps=_dumps)

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            return self.error_response(request, 404, message=f"The model `{model_id}` does not exist.")
        return web.json_response(self._model(model_id), dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class DeepSeekSimulator(OpenAISimulator):
    """DeepSeek: routes at the root and under ``/v1``; ``keepalive`` ``: keep-alive`` comment lines before
    a stream's first chunk and empty lines before a non-stream body; ``reasoning_content`` (by default for
    ``deepseek-reasoner``); cache-hit usage fields; ``GET /user/balance``; 402 insufficient balance."""

    provider = "deepseek"
    base_path = ""
    default_api_key = "sk-test-deepseek"
    route_prefixes = ("", "/v1")
    default_models = ("deepseek-chat", "deepseek-reasoner")
    owned_by = "deepseek"
    has_embeddings = False
    supports_reasoning = True
    reasoning_models = frozenset({"deepseek-reasoner"})
    errors = {
        400: (
            "invalid_request_error",
            "invalid_request_error",
            "Invalid format: please check the request body.",
        ),
        401: (
            "authentication_error",
            "invalid_request_error",
            "Authentication Fails, Your api key is invalid",
        ),
        402: ("unknown_error", "invalid_request_error", "Insufficient Balance"),
        404: ("invalid_request_error", "invalid_request_error", "Model Not Exist"),
        422: ("invalid_request_error", "invalid_request_error", "Invalid Parameters"),
        429: ("rate_limit_error", "rate_limit_exceeded", "Rate Limit Reached"),
        500: ("server_error", "internal_error", "Server Error"),
        503: ("server_error", "server_overloaded", "Server Overloaded"),
    }

    def __init__(self, *, keepalive: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keepalive = keepalive

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/user/balance", self._balance)

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _completion_id(self) -> str:
        return str(uuid.uuid4())

    def _auth_message(self, token: str | None) -> str | None:
        return None

    def _prelude(self, stream: bool) -> bytes:
        return (b": keep-alive\n\n" if stream else b"\n") * self.keepalive

    def _usage(self, p: Plan) -> dict[str, Any]:
        usage = super()._usage(p)
        usage["prompt_cache_hit_tokens"] = 0
        usage["prompt_cache_miss_tokens"] = p.prompt_tokens
        return usage

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        info = {
            "currency": "CNY",
            "total_balance": "110.00",
            "granted_balance": "10.00",
            "topped_up_balance": "100.00",
        }
        return web.json_response({"is_available": True, "balance_infos": [info]}, dumps=_dumps)


class MoonshotSimulator(OpenAISimulator):
    """Moonshot / Kimi: streamed usage in ``choices[0].usage`` on the finish chunk, and with
    ``include_usage`` also on a trailing top-level chunk (same numbers); Moonshot error types."""

    provider = "moonshot"
    default_api_key = "sk-test-moonshot"
    default_models = ("moonshot-v1-8k", "moonshot-v1-32k", "kimi-k2-0905-preview", "kimi-k2-thinking")
    owned_by = "moonshot"
    has_embeddings = False
    supports_reasoning = True
    reasoning_models = frozenset({"kimi-k2-thinking"})
    errors = {
        400: ("content_filter", None, "The request was rejected because it was considered high risk"),
        401: ("invalid_authentication_error", None, "Invalid Authentication"),
        403: ("permission_denied_error", None, "The API you are accessing is not open"),
        404: ("resource_not_found_error", None, "Not found the model or Permission denied"),
        429: (
            "rate_limit_reached_error",
            None,
            "Your account request reached organization max RPM, please try again after 1 seconds",
        ),
        500: ("server_error", None, "Internal server error"),
        503: ("engine_overloaded_error", None, "The engine is currently overloaded, please try again later"),
    }

    def _auth_message(self, token: str | None) -> str | None:
        return None

    def _finish_choice_extra(self, p: Plan) -> dict[str, Any]:
        return {
            "usage": {
                "prompt_tokens": p.prompt_tokens,
                "completion_tokens": p.completion_tokens,
                "total_tokens": p.total_tokens,
            }
        }


class DashScopeCompatibleSimulator(OpenAISimulator):
    """DashScope OpenAI-compatible mode under ``/compatible-mode/v1``: ``data_inspection_failed`` (400
    and mid-stream), ``limit_requests`` (429), ``request_id`` in error bodies, ``reasoning_content`` (by
    default with ``"enable_thinking": true`` or a QwQ model)."""

    provider = "dashscope-compatible"
    base_path = "/compatible-mode/v1"
    default_api_key = "sk-test-dashscope"
    route_prefixes = ("/compatible-mode/v1",)
    default_models = ("qwen-plus", "qwen-turbo", "qwen-max", "qwq-plus", "text-embedding-v3")
    owned_by = "system"
    supports_reasoning = True
    reasoning_models = frozenset({"qwq-plus", "qwq-32b"})
    errors = {
        400: (
            "data_inspection_failed",
            "data_inspection_failed",
            "Input data may contain inappropriate content.",
        ),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided. "),
        403: ("AccessDenied", "AccessDenied", "Access denied."),
        404: (
            "invalid_request_error",
            "model_not_found",
            "The model does not exist or you do not have access to it.",
        ),
        429: ("limit_requests", "limit_requests", "You exceeded your current requests list."),
        500: (
            "internal_error",
            "internal_error",
            "An internal error has occured, please try again later or contact service support.",
        ),
        503: ("ServiceUnavailable", "ServiceUnavailable", "The service is temporarily unavailable."),
    }
    stream_error = (
        "data_inspection_failed",
        "data_inspection_failed",
        "Output data may contain inappropriate content.",
    )

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _completion_id(self) -> str:
        return "chatcmpl-" + str(uuid.uuid4())

    def _auth_message(self, token: str | None) -> str | None:
        return None

    def _wants_reasoning(self, body: dict[str, Any], model: str) -> bool:
        return model in self.reasoning_models or body.get("enable_thinking") is True

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        return {**super()._error_body(status, code, message, rid), "id": rid, "request_id": rid}
