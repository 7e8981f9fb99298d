"""Zhipu AI / BigModel (GLM) API v4 simulator (protocols.md section 1)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from ._common import (
    REC,
    RID,
    Plan,
    RecordedRequest,
    Stream,
    count_tokens,
    embedding_texts,
    fake_embedding,
    no_stream,
    now,
)
from ._rerank import zhipu_rerank
from ._server import BaseSimulator
from .script import Fault, Reply

__all__ = ["ZhipuSimulator"]

_AUTH_MESSAGES = {
    "1001": "Header中未收到Authorization参数，无法进行身份验证。",
    "1002": "Authorization Token非法，请确认Authorization Token正确传递。",
    "1003": "Authorization Token已过期。",
    "1004": "Authorization Token验证失败。",
}

_ERRORS = {
    400: (
        "1301",
        "系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。",
    ),
    401: ("1002", _AUTH_MESSAGES["1002"]),
    404: ("1211", "模型不存在，请检查模型代码。"),
    429: ("1302", "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"),
    500: ("500", "Internal Error"),
    503: ("1305", "当前API请求过多，请稍后重试。"),
}


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class ZhipuSimulator(BaseSimulator):
    """``POST /api/paas/v4/chat/completions`` and ``/embeddings`` (also under ``/api/coding/paas/v4``).

    Credentials: the raw ``id.secret`` key as ``Bearer``, a ``Bearer <JWT>`` (HS256 with the secret,
    ``sign_type: SIGN``, ``exp``/``timestamp`` in milliseconds, checked), or the bare JWT of zhipuai 2.0.x.
    ``jwt_tokens`` lists the distinct JWTs accepted, in order (token caching shows as one entry for many
    requests); ``RecordedRequest.auth_kind`` says which form each request used.
    """

    provider = "zhipu"
    base_path = "/api/paas/v4"
    default_api_key = "test-id.test-secret"
    sse_content_type = "text/event-stream;charset=UTF-8"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jwt_tokens: dict[str, None] = {}
        self.jwt_requests = 0

    @property
    def jwt_tokens(self) -> list[str]:
        with self._lock:
            return list(self._jwt_tokens)

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self._jwt_tokens.clear()
            self.jwt_requests = 0

    def _add_routes(self, app: web.Application) -> None:
        for prefix in ("/api/paas/v4", "/api/coding/paas/v4"):
            app.router.add_post(prefix + "/chat/completions", self._chat)
            app.router.add_post(prefix + "/embeddings", self._embeddings)
            app.router.add_post(prefix + "/rerank", zhipu_rerank(self))

    def _request_id(self) -> str:
        return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(9)

    # ------------------------------------------------------------------ auth and errors

    def _authenticate(self, request: web.Request, rec: RecordedRequest) -> web.Response | None:
        header = request.headers.get("Authorization", "").strip()
        if not header:
            return self._auth_error(request, "1001")
        bearer = header[:7].lower() == "bearer "
        cred = header[7:].strip() if bearer else header
        if bearer and hmac.compare_digest(cred.encode(), self.api_key.encode()):
            rec.auth_kind = "key"
            return None
        if cred.count(".") != 2:
            return self._auth_error(request, "1002")
        code = self._check_jwt(cred)
        if code is not None:
            return self._auth_error(request, code)
        rec.auth_kind = "jwt" if bearer else "bare-jwt"
        with self._lock:
            self._jwt_tokens[cred] = None
            self.jwt_requests += 1
        return None

    def _check_jwt(self, token: str) -> str | None:
        """None when ``token`` is a valid JWT for our key, else the Zhipu error code."""
        key_id, _, secret = self.api_key.partition(".")
        head_b64, payload_b64, sig_b64 = token.split(".")
        try:
            header = orjson.loads(_b64url(head_b64))
            payload = orjson.loads(_b64url(payload_b64))
            signature = _b64url(sig_b64)
        except (ValueError, binascii.Error):
            return "1002"
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return "1002"
        if header.get("alg") != "HS256" or header.get("sign_type") != "SIGN" or payload.get("api_key") != key_id:
            return "1002"
        expected = hmac.new(secret.encode(), f"{head_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return "1004"
        exp, stamp = payload.get("exp"), payload.get("timestamp")
        # both in milliseconds: a value below 1e12 is seconds (a common adapter bug)
        if not isinstance(exp, int) or not isinstance(stamp, int) or exp < 10**12 or stamp < 10**12:
            return "1002"
        if exp <= time.time() * 1000:
            return "1003"
        return None

    def _auth_error(self, request: web.Request, code: str) -> web.Response:
        return self.error_response(request, 401, code=code, message=_AUTH_MESSAGES[code])

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        dcode, dmessage = _ERRORS.get(status, ("500" if status >= 500 else "1210", f"HTTP {status}"))
        return {"error": {"code": code or dcode, "message": message or dmessage}}

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        err = {
            "code": fault.code or "1234",
            "message": fault.message or f"网络错误，错误id：{rid}，请联系客服",
        }
        return b"data: " + orjson.dumps({"error": err}) + b"\n\n"

    # ------------------------------------------------------------------ chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self.error_response(request, 400, code="1210", message="API 调用参数有误，请检查文档。")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return self.error_response(request, 400, code="1210", message="API 调用参数有误，请检查文档。")
        if not isinstance(messages, list) or not messages:
            return self.error_response(request, 400, code="1214", message="messages 参数非法。请检查文档。")
        if isinstance(body.get("request_id"), str) and body["request_id"]:
            request[RID] = body["request_id"]  # echoed as id and request_id
        rid = request[RID]
        created = now()

        def plan(reply: Reply) -> Plan:
            return Plan.make(reply, messages, model, call_id=lambda: f"call_{-secrets.randbits(62)}")

        return await self._answer(
            request,
            stream=body.get("stream") is True,
            render=lambda r: orjson.dumps(self._completion(plan(r), rid, created)),
            render_stream=lambda r: self._chunks(plan(r), rid, created),
        )

    @staticmethod
    def _usage(p: Plan) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": p.prompt_tokens,
            "completion_tokens": p.completion_tokens,
            "total_tokens": p.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        if p.reasoning is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": p.reasoning_tokens}
        return usage

    @staticmethod
    def _tool_calls(p: Plan) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "index": i,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for i, c in enumerate(p.tool_calls)
        ]

    def _completion(self, p: Plan, rid: str, created: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": p.text}
        if p.reasoning is not None:
            message["reasoning_content"] = p.reasoning
        if p.tool_calls:
            message["tool_calls"] = self._tool_calls(p)
        return {
            "id": rid,
            "request_id": rid,
            "created": created,
            "model": p.model,
            "choices": [{"index": 0, "finish_reason": p.finish_reason, "message": message}],
            "usage": self._usage(p),
        }

    def _chunks(self, p: Plan, rid: str, created: int) -> Stream:
        head = {"id": rid, "created": created, "model": p.model}

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", **delta}}
            if finish is not None:  # non-final chunks omit finish_reason entirely
                choice["finish_reason"] = finish
            data: dict[str, Any] = {**head, "choices": [choice]}
            if usage:
                data["usage"] = self._usage(p)
            return b"data: " + orjson.dumps(data) + b"\n\n"

        events = [chunk({"reasoning_content": r}) for r in p.reasoning_pieces]
        events += [chunk({"content": piece}) for piece in p.pieces]
        if p.tool_calls:  # whole calls in one delta, then a separate usage chunk
            events.append(chunk({"tool_calls": self._tool_calls(p)}, p.finish_reason))
        events.append(chunk({"content": ""}, p.finish_reason, usage=True))
        return Stream(events, b"data: [DONE]\n\n")

    # ------------------------------------------------------------------ embeddings

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        texts = embedding_texts(body.get("input")) if isinstance(body, dict) else None
        if not isinstance(body, dict) or texts is None or not isinstance(body.get("model"), str):
            return self.error_response(request, 400, code="1214", message="input 参数非法。请检查文档。")
        dim = body.get("dimensions") or self.embedding_dim
        if not isinstance(dim, int) or dim < 1:
            return self.error_response(request, 400, code="1214", message="dimensions 参数非法。请检查文档。")

        def render(reply: Reply) -> bytes:
            data = [
                {"index": i, "object": "embedding", "embedding": fake_embedding(t, dim)} for i, t in enumerate(texts)
            ]
            tokens = max(1, sum(count_tokens(t) for t in texts))
            usage = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
            return orjson.dumps({"model": body["model"], "object": "list", "data": data, "usage": usage})

        return await self._answer(request, stream=False, render=render, render_stream=no_stream)
