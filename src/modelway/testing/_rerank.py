"""Rerank for the simulators: the deterministic relevance score, and the DashScope and Zhipu rerank routes.

Every simulator scores a document by :func:`rerank_score`: the share of the query's terms (lower-case words; each
CJK character a term of its own) that the document contains, in [0, 1]. Ties keep the documents' order. The token
count is DashScope's formula: the query's tokens once per document plus every document's tokens (``Reply.usage``'s
first number replaces it). Each route takes the next scripted item, so every :class:`~modelway.testing.Fault`
works on it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ._common import REC, RID, count_tokens, no_stream, now
from .script import Reply

if TYPE_CHECKING:
    from ._server import BaseSimulator

__all__ = [
    "DASHSCOPE_RERANK",
    "dashscope_rerank",
    "document_texts",
    "ranking",
    "rerank_score",
    "rerank_tokens",
    "zhipu_rerank",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DASHSCOPE_RERANK = "/services/rerank/text-rerank/text-rerank"
#: the most documents DashScope (500) and Zhipu (128) take in one request
DASHSCOPE_MAX_DOCUMENTS = 500
ZHIPU_MAX_DOCUMENTS = 128

_WORD = re.compile(r"[^\W_]+")


def _terms(text: str) -> set[str]:
    terms: set[str] = set()
    for word in _WORD.findall(text.lower()):
        if word.isascii():
            terms.add(word)
        else:
            terms.update(word)  # CJK text has no spaces: one term per character
    return terms


def rerank_score(query: str, document: str) -> float:
    """The simulators' relevance score: the share of the query's terms found in the document (0 to 1)."""
    q = _terms(query)
    if not q:
        return 0.0
    return round(len(q & _terms(document)) / len(q), 6)


def ranking(query: str, documents: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
    """``(index, score)`` of every document, best first (ties: the earlier document first), cut to ``top_n``."""
    scored = sorted(((i, rerank_score(query, d)) for i, d in enumerate(documents)), key=lambda p: (-p[1], p[0]))
    return scored[:top_n] if top_n else scored


def rerank_tokens(query: str, documents: list[str], reply: Reply) -> int:
    if reply.usage is not None:
        return reply.usage[0]
    return max(1, count_tokens(query) * len(documents) + sum(count_tokens(d) for d in documents))


def document_texts(value: Any, *, objects: bool = True) -> list[str] | None:
    """The texts of a ``documents`` array (strings, or ``{"text": str}`` objects when ``objects``); None if invalid."""
    if not isinstance(value, list) or not value:
        return None
    out: list[str] = []
    for doc in value:
        if isinstance(doc, str):
            out.append(doc)
        elif objects and isinstance(doc, dict) and isinstance(doc.get("text"), str):
            out.append(doc["text"])
        else:
            return None
    return out


def _top_n(value: Any) -> tuple[bool, int | None]:
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return False, None
    return True, value or None


def dashscope_rerank(sim: BaseSimulator) -> Handler:
    """DashScope ``POST /api/v1/services/rerank/text-rerank/text-rerank``: ``{model, input: {query, documents},
    parameters: {top_n, return_documents}}`` → ``{output: {results}, usage: {total_tokens}, request_id}``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = request[REC].json

        def bad(code: str, message: str) -> web.Response:
            return sim.error_response(request, 400, code=code, message=message)

        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return bad("BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
        inp = body.get("input")
        query = inp.get("query") if isinstance(inp, dict) else None
        docs = document_texts(inp.get("documents")) if isinstance(inp, dict) else None
        if not isinstance(query, str) or not query:
            return bad("InvalidParameter", "input.query must be a non-empty string.")
        if docs is None or len(docs) > DASHSCOPE_MAX_DOCUMENTS:
            return bad("InvalidParameter", f"input.documents must be a list of 1 to {DASHSCOPE_MAX_DOCUMENTS} texts.")
        params = body.get("parameters") or {}
        ok, top_n = _top_n(params.get("top_n") if isinstance(params, dict) else None)
        echo = isinstance(params, dict) and params.get("return_documents") is True
        if not isinstance(params, dict) or not ok:
            return bad("InvalidParameter", "parameters.top_n must be a positive integer.")
        rid = request[RID]

        def render(reply: Reply) -> bytes:
            results = []
            for index, score in ranking(query, docs, top_n):
                item: dict[str, Any] = {"index": index, "relevance_score": score}
                if echo:
                    item["document"] = {"text": docs[index]}
                results.append(item)
            usage = {"total_tokens": rerank_tokens(query, docs, reply)}
            return orjson.dumps({"output": {"results": results}, "usage": usage, "request_id": rid})

        return await sim._answer(request, stream=False, render=render, render_stream=no_stream)

    return handle


def zhipu_rerank(sim: BaseSimulator) -> Handler:
    """Zhipu ``POST /api/paas/v4/rerank``: ``{model, query, documents, top_n, return_documents, return_raw_scores}``
    → ``{created, id, request_id, results: [{index, relevance_score, document?: str}], usage}``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = request[REC].json

        def bad(message: str) -> web.Response:
            return sim.error_response(request, 400, code="1214", message=message)

        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return sim.error_response(request, 400, code="1210", message="API 调用参数有误，请检查文档。")
        query, docs = body.get("query"), document_texts(body.get("documents"), objects=False)
        if not isinstance(query, str) or not query:
            return bad("query 参数非法。请检查文档。")
        if docs is None or len(docs) > ZHIPU_MAX_DOCUMENTS:
            return bad("documents 参数非法。请检查文档。")
        ok, top_n = _top_n(body.get("top_n"))
        if not ok:
            return bad("top_n 参数非法。请检查文档。")
        if isinstance(body.get("request_id"), str) and body["request_id"]:
            request[RID] = body["request_id"]
        rid, task = request[RID], now_id()
        echo = body.get("return_documents") is True

        def render(reply: Reply) -> bytes:
            results = []
            for index, score in ranking(query, docs, top_n):
                item: dict[str, Any] = {"index": index, "relevance_score": score}
                if echo:
                    item["document"] = docs[index]
                results.append(item)
            tokens = rerank_tokens(query, docs, reply)
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return orjson.dumps({"created": now(), "id": task, "request_id": rid, "results": results, "usage": usage})

        return await sim._answer(request, stream=False, render=render, render_stream=no_stream)

    return handle


def now_id() -> str:
    """A Zhipu-style task id: a timestamp and random hex."""
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)
