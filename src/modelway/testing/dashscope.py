"""Alibaba DashScope (Qwen) native API simulator (protocols.md section 2; compatible mode is
:class:`~modelway.testing.DashScopeCompatibleSimulator`)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from ._common import REC, RID, Plan, Stream, count_tokens, fake_embedding, no_stream
from ._rerank import DASHSCOPE_RERANK, dashscope_rerank
from ._server import BaseSimulator
from .script import Fault, Reply

__all__ = ["DashScopeSimulator"]

_ERRORS = {
    400: ("DataInspectionFailed", "Input data may contain inappropriate content."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    404: ("ModelNotFound", "Model not found."),
    408: ("RequestTimeOut", "Request timed out, please try again later."),
    413: ("BadRequest.TooLarge", "Payload Too Large"),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: (
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    ),
    503: ("ServiceUnavailable", "The service is temporarily unavailable, please try again later."),
}

GENERATION = "/services/aigc/text-generation/generation"
EMBEDDING = "/services/embeddings/text-embedding/text-embedding"


def _frame(index: int, data: bytes, *, event: str = "result", status: int = 200) -> bytes:
    return b"id:%d\nevent:%s\n:HTTP_STATUS/%d\ndata:%s\n\n" % (index, event.encode(), status, data)


class DashScopeSimulator(BaseSimulator):
    """``POST /api/v1/services/aigc/text-generation/generation`` and
    ``/api/v1/services/embeddings/text-embedding/text-embedding``.

    SSE only when the request has ``X-DashScope-SSE: enable`` or ``Accept: text/event-stream``. Output is
    cumulative unless ``parameters.incremental_output`` is true; ``result_format`` defaults to ``"text"``
    (a reply with tool calls is always answered in ``"message"`` format).
    """

    provider = "dashscope"
    base_path = "/api/v1"
    default_api_key = "sk-test-dashscope"
    sse_content_type = "text/event-stream;charset=UTF-8"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.base_path + GENERATION, self._generation)
        app.router.add_post(self.base_path + EMBEDDING, self._embedding)
        app.router.add_post(self.base_path + DASHSCOPE_RERANK, dashscope_rerank(self))

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _auth_message(self, token: str | None) -> str | None:
        return None if token else "No API-key provided."

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        dcode, dmessage = _ERRORS.get(status, ("InternalError" if status >= 500 else "BadRequest", f"HTTP {status}"))
        return {"code": code or dcode, "message": message or dmessage, "request_id": rid}

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        body = {
            "code": fault.code or "DataInspectionFailed",
            "message": fault.message or "Output data may contain inappropriate content.",
            "request_id": rid,
        }
        return _frame(index, orjson.dumps(body), event="error", status=fault.status or 400)

    def _malformed_event(self, index: int) -> bytes:
        return _frame(index, b"{broken")

    def _bad(self, request: web.Request, code: str, message: str) -> web.Response:
        return self.error_response(request, 400, code=code, message=message)

    # ------------------------------------------------------------------ generation

    async def _generation(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self._bad(request, "InvalidParameter", "The request body is not valid JSON.")
        model, inp = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model:
            return self._bad(request, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        if not isinstance(inp, dict):
            return self._bad(request, "BadRequest.EmptyInput", "Required input parameter missing from request.")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            return self._bad(request, "InvalidParameter", "parameters must be an object.")
        messages, prompt = inp.get("messages"), inp.get("prompt")
        if not (isinstance(messages, list) and messages) and not (isinstance(prompt, str) and prompt):
            return self._bad(
                request,
                "InvalidParameter",
                'Either "prompt" or "messages" must exist and cannot both be none',
            )
        msgs: list[Any] = list(messages) if isinstance(messages, list) else []
        if isinstance(prompt, str) and prompt:
            msgs.append({"role": "user", "content": prompt})
        sse = request.headers.get("X-DashScope-SSE", "").lower() == "enable"
        sse = sse or "text/event-stream" in request.headers.get("Accept", "")
        incremental = params.get("incremental_output") is True
        as_message = params.get("result_format") == "message"
        thinking = params.get("enable_thinking") is True
        rid = request[RID]

        def plan(reply: Reply) -> Plan:
            return Plan.make(reply, msgs, model, default_reasoning=thinking)

        return await self._answer(
            request,
            stream=sse,
            render=lambda r: orjson.dumps(self._response(plan(r), as_message, rid)),
            render_stream=lambda r: self._frames(plan(r), as_message, incremental, rid),
        )

    @staticmethod
    def _usage(p: Plan, output_tokens: int | None = None) -> dict[str, Any]:
        out = p.completion_tokens if output_tokens is None else output_tokens
        usage: dict[str, Any] = {
            "input_tokens": p.prompt_tokens,
            "output_tokens": out,
            "total_tokens": p.prompt_tokens + out,
        }
        if p.reasoning is not None:
            usage["output_tokens_details"] = {"reasoning_tokens": p.reasoning_tokens}
        return usage

    @staticmethod
    def _calls(p: Plan, arguments: list[str] | None = None) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "type": "function",
                "index": i,
                "function": {"name": c.name, "arguments": c.arguments if arguments is None else arguments[i]},
            }
            for i, c in enumerate(p.tool_calls)
            if arguments is None or i < len(arguments)
        ]

    def _response(self, p: Plan, as_message: bool, rid: str) -> dict[str, Any]:
        if as_message or p.tool_calls:
            message: dict[str, Any] = {"role": "assistant", "content": p.text or ""}
            if p.reasoning is not None:
                message["reasoning_content"] = p.reasoning
            if p.tool_calls:
                message["tool_calls"] = self._calls(p)
            output: dict[str, Any] = {"choices": [{"finish_reason": p.finish_reason, "message": message}]}
        else:
            output = {"text": p.text or "", "finish_reason": p.finish_reason}
        return {"output": output, "usage": self._usage(p), "request_id": rid}

    def _frames(self, p: Plan, as_message: bool, incremental: bool, rid: str) -> Stream:
        as_message = as_message or bool(p.tool_calls)
        events: list[bytes] = []
        reasoning = content = ""
        args: list[str] = []  # tool call arguments so far

        def emit(message: dict[str, Any], finish: str = "null") -> None:
            if as_message:
                output: dict[str, Any] = {
                    "choices": [{"message": {"role": "assistant", **message}, "finish_reason": finish}]
                }
            else:
                output = {"text": message.get("content", ""), "finish_reason": finish}
            so_far = count_tokens(reasoning) + count_tokens(content) + sum(map(count_tokens, args))
            used = p.completion_tokens if finish != "null" else min(so_far, p.completion_tokens)
            data = {"output": output, "usage": self._usage(p, used), "request_id": rid}
            events.append(_frame(len(events) + 1, orjson.dumps(data)))

        def full(**extra: Any) -> dict[str, Any]:  # cumulative message so far
            msg: dict[str, Any] = {"content": content, **extra}
            if reasoning and as_message:
                msg["reasoning_content"] = reasoning
            if args:
                msg["tool_calls"] = self._calls(p, args)
            return msg

        for piece in p.reasoning_pieces if as_message else ():
            reasoning += piece
            emit({"content": "", "reasoning_content": piece} if incremental else full())
        for piece in p.pieces:
            content += piece
            emit({"content": piece} if incremental else full())
        for i, call in enumerate(p.tool_calls):
            args.append("")
            first = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            emit({"content": "", "tool_calls": [first]} if incremental else full())
            for piece in call.pieces:
                args[i] += piece
                delta = {"index": i, "id": "", "type": "function", "function": {"arguments": piece}}
                emit({"content": "", "tool_calls": [delta]} if incremental else full())
        emit({"content": ""} if incremental else full(), p.finish_reason)
        return Stream(events)  # no [DONE]: the stream just ends

    # ------------------------------------------------------------------ embeddings

    async def _embedding(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        inp = body.get("input") if isinstance(body, dict) else None
        texts = inp.get("texts") if isinstance(inp, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return self._bad(request, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._bad(request, "InvalidParameter", "input.texts must be a non-empty list of strings.")
        params = body.get("parameters") or {}
        dim = (params.get("dimension") if isinstance(params, dict) else None) or self.embedding_dim
        if not isinstance(dim, int) or dim < 1:
            return self._bad(request, "InvalidParameter", "parameters.dimension must be a positive integer.")
        rid = request[RID]

        def render(reply: Reply) -> bytes:
            embeddings = [{"text_index": i, "embedding": fake_embedding(t, dim)} for i, t in enumerate(texts)]
            tokens = max(1, sum(count_tokens(t) for t in texts))
            return orjson.dumps(
                {"output": {"embeddings": embeddings}, "usage": {"total_tokens": tokens}, "request_id": rid}
            )

        return await self._answer(request, stream=False, render=render, render_stream=no_stream)
