"""Rerank-only simulators: Jina AI (and the servers that copy it) and Cohere v2.

Scores are :func:`~modelway.testing.rerank_score` (word overlap with the query), so a test knows the order to
expect; every :class:`~modelway.testing.Fault` works on the rerank route (it takes the next scripted item).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson
from aiohttp import web

from ._common import REC, RID, no_stream
from ._rerank import document_texts, ranking, rerank_tokens
from ._server import BaseSimulator
from .script import Fault, Reply

__all__ = ["CohereSimulator", "JinaSimulator"]

_JINA_ERRORS = {
    400: "Bad request",
    401: "Unauthorized: invalid API key",
    402: "Insufficient balance",
    404: "Model not found",
    422: "Unprocessable entity",
    429: "Rate limit exceeded, please try again later",
    500: "Internal server error",
    503: "Service temporarily unavailable",
}

_COHERE_ERRORS = {
    400: "invalid request: list of documents must not be empty",
    401: "invalid api token",
    402: "Please add a payment method to continue",
    404: "model not found, make sure the correct model ID was used and that you have access to the model.",
    422: "invalid request",
    429: "You are using a Trial key, which is limited to 10 API calls / minute.",
    500: "internal server error, this has been reported to our developers.",
    503: "service unavailable",
}


class JinaSimulator(BaseSimulator):
    """``POST /v1/rerank``: ``{model, query, documents: [str | {"text"}], top_n?, return_documents? (default
    true)}`` → ``{model, usage: {total_tokens}, results: [{index, document?: {text}, relevance_score}]}``.
    Errors are FastAPI's ``{"detail": "..."}``."""

    provider = "jina"
    base_path = "/v1"
    default_api_key = "jina_test"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.base_path + "/rerank", self._rerank)

    def _request_id(self) -> str:
        return uuid.uuid4().hex

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        return {"detail": message or _JINA_ERRORS.get(status, f"HTTP {status}")}

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        return b"data: " + orjson.dumps({"detail": fault.message or "stream error"}) + b"\n\n"

    async def _rerank(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json
        if not isinstance(body, dict):
            return self.error_response(request, 422, message="body: Input should be a valid dictionary")
        model, query, docs = body.get("model"), body.get("query"), document_texts(body.get("documents"))
        top_n = body.get("top_n")
        if not isinstance(model, str) or not model:
            return self.error_response(request, 422, message="model: Field required")
        if not isinstance(query, str) or not query:
            return self.error_response(request, 422, message="query: Input should be a non-empty string")
        if docs is None:
            return self.error_response(request, 422, message="documents: Input should be a non-empty list")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            return self.error_response(request, 422, message="top_n: Input should be a positive integer")
        echo = body.get("return_documents", True) is not False

        def render(reply: Reply) -> bytes:
            results = []
            for index, score in ranking(query, docs, top_n):
                item: dict[str, Any] = {"index": index}
                if echo:
                    item["document"] = {"text": docs[index]}
                item["relevance_score"] = score
                results.append(item)
            usage = {"total_tokens": rerank_tokens(query, docs, reply)}
            return orjson.dumps({"model": reply.model or model, "usage": usage, "results": results})

        return await self._answer(request, stream=False, render=render, render_stream=no_stream)


class CohereSimulator(BaseSimulator):
    """``POST /v2/rerank``: ``{model, query, documents: [str], top_n?, max_tokens_per_doc?}`` → ``{id, results:
    [{index, relevance_score}], meta: {api_version: {version: "2"}, billed_units: {search_units}}}`` (one search
    unit per 100 documents). Errors are ``{"id", "message"}``."""

    provider = "cohere"
    base_path = ""
    default_api_key = "co-test"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/rerank", self._rerank)

    def _request_id(self) -> str:
        return str(uuid.uuid4())

    def _auth_message(self, token: str | None) -> str | None:
        return "no api key supplied" if not token else "invalid api token"

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        return {"id": rid, "message": message or _COHERE_ERRORS.get(status, f"HTTP {status}")}

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        return b"data: " + orjson.dumps({"id": rid, "message": fault.message or "stream error"}) + b"\n\n"

    async def _rerank(self, request: web.Request) -> web.StreamResponse:
        body = request[REC].json

        def bad(message: str) -> web.Response:
            return self.error_response(request, 400, message=message)

        if not isinstance(body, dict):
            return bad("invalid request: the body must be a JSON object")
        model, query = body.get("model"), body.get("query")
        docs = document_texts(body.get("documents"), objects=False)
        top_n, max_tokens = body.get("top_n"), body.get("max_tokens_per_doc")
        if not isinstance(model, str) or not model:
            return bad("a model parameter is required for this endpoint.")
        if not isinstance(query, str) or not query.strip():
            return bad("invalid request: query must not be empty or be only whitespace")
        if docs is None:
            return bad("invalid request: list of documents must not be empty")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            return bad("invalid request: top_n must be a positive integer")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
            return bad("invalid request: max_tokens_per_doc must be an integer")
        rid = request[RID]

        def render(reply: Reply) -> bytes:
            results = [{"index": i, "relevance_score": s} for i, s in ranking(query, docs, top_n)]
            meta = {
                "api_version": {"version": "2"},
                "billed_units": {"search_units": max(1, math.ceil(len(docs) / 100))},
            }
            return orjson.dumps({"id": rid, "results": results, "meta": meta})

        return await self._answer(request, stream=False, render=render, render_stream=no_stream)
