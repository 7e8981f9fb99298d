"""Anthropic Messages API simulator (protocols.md section 4)."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from aiohttp import web

from ._common import REC, RID, Plan, RecordedRequest, Stream
from ._server import BaseSimulator
from .script import Fault, Reply

__all__ = ["AnthropicSimulator"]

#: default error type and message per HTTP status
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

#: Plan finish reasons (OpenAI names) → Anthropic stop reasons; other strings are sent as they are
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _input(arguments: str) -> Any:
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class AnthropicSimulator(BaseSimulator):
    """``POST /v1/messages`` (``base_url`` is the server root, as for the anthropic SDK).

    Accepts ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` and any ``anthropic-version``. SSE when the
    body has ``"stream": true``. ``Reply.reasoning`` (or ``thinking: {"type": "enabled"}`` in the request) adds a
    ``thinking`` block before the text; tool calls become ``tool_use`` blocks. ``Fault.http(status, code=...)``
    takes an Anthropic error type as ``code`` (default by status: 429 ``rate_limit_error``, 529
    ``overloaded_error``, ...); ``Fault.error_frame`` sends ``event: error`` (default ``overloaded_error``).
    """

    provider = "anthropic"
    base_path = ""
    default_api_key = "sk-ant-test"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.on_response_prepare.append(self._request_id_header)

    async def _request_id_header(self, request: web.Request, response: web.StreamResponse) -> None:
        rid = request.get(RID)
        if rid and "request-id" not in response.headers:
            response.headers["request-id"] = rid

    def _request_id(self) -> str:
        return "req_011C" + secrets.token_hex(10)

    # ------------------------------------------------------------------ errors and auth

    def _authenticate(self, request: web.Request, rec: RecordedRequest) -> web.Response | None:
        token = request.headers.get("x-api-key")
        if token is None:
            token = self._bearer(request)
        if token is not None and secrets.compare_digest(token.encode(), self.api_key.encode()):
            rec.auth_kind = "key"
            return None
        return self.error_response(request, 401, message=None if token else "x-api-key header is required")

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        etype, dmessage = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", ""))
        return {
            "type": "error",
            "error": {"type": code or etype, "message": message or dmessage or f"HTTP {status}"},
            "request_id": rid,
        }

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        err = {"type": fault.code or "overloaded_error", "message": fault.message or "Overloaded"}
        return _event("error", {"error": err})

    def _malformed_event(self, index: int) -> bytes:
        return b"event: content_block_delta\ndata: {broken\n\n"

    def _bad(self, request: web.Request, message: str) -> web.Response:
        return self.error_response(request, 400, message=message)

    # ------------------------------------------------------------------ messages

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self._bad(request, "There was an issue with the JSON body of your request.")
        model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
        if not isinstance(model, str) or not model:
            return self._bad(request, "model: Field required")
        if max_tokens is None:
            return self._bad(request, "max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return self._bad(request, "max_tokens: Input should be a valid integer greater than or equal to 1")
        if not isinstance(messages, list) or not messages:
            return self._bad(request, "messages: at least one message is required")
        for m in messages:  # (system messages inside the list: Anthropic's mid-conversation system instructions)
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
                return self._bad(request, "messages: roles must be 'user', 'assistant' or 'system'")
        msgs: list[Any] = list(messages)
        if body.get("system"):
            msgs.insert(0, {"role": "system", "content": body["system"]})
        thinking = body.get("thinking")
        thinks = isinstance(thinking, dict) and thinking.get("type") == "enabled"
        stream = body.get("stream") is True

        def plan(reply: Reply) -> Plan:
            return Plan.make(
                reply, msgs, model, default_reasoning=thinks, call_id=lambda: "toolu_01" + secrets.token_hex(11)
            )

        msg_id = "msg_01" + secrets.token_hex(11)
        return await self._answer(
            request,
            stream=stream,
            render=lambda r: orjson.dumps(self._message(plan(r), msg_id)),
            render_stream=lambda r: self._events(plan(r), msg_id),
        )

    @staticmethod
    def _usage(p: Plan, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": p.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    @staticmethod
    def _stop_reason(p: Plan) -> str:
        return _STOP_REASONS.get(p.finish_reason, p.finish_reason)

    def _message(self, p: Plan, msg_id: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if p.reasoning is not None:
            content.append({"type": "thinking", "thinking": p.reasoning, "signature": "sig_" + secrets.token_hex(8)})
        if p.text:
            content.append({"type": "text", "text": p.text})
        for c in p.tool_calls:
            content.append({"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)})
        return {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": p.model,
            "content": content,
            "stop_reason": self._stop_reason(p),
            "stop_sequence": None,
            "usage": self._usage(p, p.completion_tokens),
        }

    def _events(self, p: Plan, msg_id: str) -> Stream:
        start: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": p.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(p, 1),
        }
        events = [_event("message_start", {"message": start}), _event("ping", {})]
        index = 0

        def block(content_block: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
            nonlocal index
            events.append(_event("content_block_start", {"index": index, "content_block": content_block}))
            events.extend(_event("content_block_delta", {"index": index, "delta": d}) for d in deltas)
            events.append(_event("content_block_stop", {"index": index}))
            index += 1

        if p.reasoning is not None:
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in p.reasoning_pieces]
            deltas.append({"type": "signature_delta", "signature": "sig_" + secrets.token_hex(8)})
            block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
        if p.text:
            block({"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in p.pieces])
        for c in p.tool_calls:
            pieces = [{"type": "input_json_delta", "partial_json": ""}]
            pieces += [{"type": "input_json_delta", "partial_json": piece} for piece in c.pieces]
            block({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}, pieces)
        delta = {"delta": {"stop_reason": self._stop_reason(p), "stop_sequence": None}}
        events.append(_event("message_delta", {**delta, "usage": {"output_tokens": p.completion_tokens}}))
        events.append(_event("message_stop", {}))
        return Stream(events)  # no [DONE]: message_stop ends the stream
