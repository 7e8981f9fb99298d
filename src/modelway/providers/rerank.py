"""Rerank on the wire, one mixin per wire format; an adapter serves rerank by listing its mixin first in its bases.

* :class:`DashScopeRerank`: DashScope native ``POST /services/rerank/text-rerank/text-rerank`` with
  ``{model, input: {query, documents}, parameters: {top_n, return_documents, ...}}`` → ``output.results`` and
  ``usage.total_tokens`` (``gte-rerank-v2``, ``qwen3-rerank``, ``qwen3-vl-rerank`` with text documents).
* :class:`ZhipuRerank`: Zhipu ``POST /rerank`` (model ``rerank``), flat ``{model, query, documents, top_n,
  return_documents, return_raw_scores}`` → ``{id, created, results, usage: {prompt_tokens, total_tokens}}``.
* :class:`JinaRerank`: Jina ``POST /v1/rerank``, the shape vLLM, Xinference and SiliconFlow serve too (and DashScope's
  OpenAI-compatible ``/compatible-api/v1/reranks``, with ``rerank_path: /reranks``) → ``{results, usage}``.
* :class:`CohereRerank`: Cohere ``POST /v2/rerank`` ``{model, query, documents, top_n, max_tokens_per_doc}`` →
  ``{id, results, meta: {billed_units: {search_units}}}``.

Every one asks its provider not to echo the documents (where the wire has the switch): the answer's documents are
the request's own texts, put in by :func:`rerank_response`. Results are sorted here, best first, and cut to
``top_n`` here too (a server that ignores ``top_n`` still answers as asked). A provider's path can be changed with
the ``rerank_path`` option (``options: {rerank_path: /reranks}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import StreamError
from ..rerank import RerankRequest, RerankResponse, RerankResult
from ..types import ModelInfo, Usage, whole
from .base import Adapter, HTTPRequest, decode_json

__all__ = [
    "CohereRerank",
    "DashScopeRerank",
    "JinaRerank",
    "RerankMixin",
    "ZhipuRerank",
    "rerank_response",
    "rerank_usage",
]

DASHSCOPE_RERANK_PATH = "/services/rerank/text-rerank/text-rerank"


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    score = float(value)
    return score if math.isfinite(score) else None


def _units(value: Any) -> int | float | None:
    """A billed amount: a finite number ≥ 0 (an integer when it is one)."""
    score = _score(value)
    if score is None or score < 0:
        return None
    return int(score) if score.is_integer() else score


def _first_whole(part: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if part.get(key) is not None:
            return whole(part[key])
    return None


def rerank_usage(data: Mapping[str, Any]) -> tuple[Usage | None, int | float | None]:
    """Tokens and search units from an answer: ``usage.total_tokens`` (Jina, DashScope, Zhipu; else
    ``prompt_tokens`` or ``input_tokens``), else Cohere-style ``meta.billed_units`` / ``meta.tokens`` input tokens;
    ``meta.billed_units.search_units``. Every token of a rerank is a prompt token."""
    tokens: int | None = None
    units: int | float | None = None
    u = data.get("usage")
    if isinstance(u, Mapping):
        tokens = _first_whole(u, ("total_tokens", "prompt_tokens", "input_tokens"))
    meta = data.get("meta")
    if isinstance(meta, Mapping):
        billed = meta.get("billed_units")
        if isinstance(billed, Mapping):
            units = _units(billed.get("search_units"))
        for part in (billed, meta.get("tokens")):
            if tokens is None and isinstance(part, Mapping):
                tokens = _first_whole(part, ("total_tokens", "input_tokens"))
    return (Usage(tokens, 0, tokens) if tokens is not None else None), units


def rerank_response(
    provider: str,
    req: RerankRequest,
    raw: Any,
    *,
    rid: Any,
    usage: Usage | None,
    search_units: int | float | None = None,
) -> RerankResponse:
    """The response from a provider's list of ``{index, relevance_score}``: checked (an index must name a document of
    the request, a score must be a finite number), sorted best first (ties: the earlier document first), cut to
    ``top_n``, documents filled in from the request when asked for. An odd list raises :class:`StreamError`."""
    if not isinstance(raw, list):
        raise StreamError(f"the rerank answer has no list of results (got {type(raw).__name__})", provider=provider)
    n = len(req.documents)
    seen: set[int] = set()
    results: list[RerankResult] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise StreamError(f"rerank result {i} is not an object", provider=provider)
        index = item.get("index")
        if type(index) is not int or not 0 <= index < n:
            raise StreamError(f"rerank result {i} names document {index!r}; the request had {n}", provider=provider)
        score = _score(item.get("relevance_score", item.get("score")))
        if score is None:
            raise StreamError(f"rerank result {i} has no numeric relevance_score", provider=provider)
        if index not in seen:
            seen.add(index)
            results.append(RerankResult(index, score))
    results.sort(key=lambda r: (-r.relevance_score, r.index))
    if req.top_n is not None:
        del results[req.top_n :]
    if req.return_documents:
        for r in results:
            r.document = req.documents[r.index]
    return RerankResponse(
        id=str(rid) if rid else "",
        model=req.model,
        results=results,
        usage=usage,
        search_units=search_units,
        provider=provider,
    )


class RerankMixin(Adapter):
    """What every rerank mixin shares: the flag, the path option, and its models in ``models()``."""

    supports_rerank: ClassVar[bool] = True
    #: rerank models added to ``models()``
    rerank_models: ClassVar[tuple[str, ...]] = ()
    #: the path of the rerank endpoint under the base URL (``options.rerank_path`` overrides it)
    rerank_path: ClassVar[str] = "/rerank"

    def rerank_url_path(self) -> str:
        path = str(self.settings.options.get("rerank_path") or self.rerank_path)
        return path if path.startswith("/") else "/" + path

    def models(self) -> list[ModelInfo]:
        out = super().models()
        have = {m.id for m in out}
        out += [
            ModelInfo(id=f"{self.name}/{m}", owned_by=self.name)
            for m in self.rerank_models
            if f"{self.name}/{m}" not in have
        ]
        return out

    def _flat_body(self, req: RerankRequest, *, echo_switch: bool = True) -> dict[str, Any]:
        """``{model, query, documents, top_n?, return_documents: false}`` plus the caller's extras."""
        payload: dict[str, Any] = {"model": req.model, "query": req.query, "documents": req.documents}
        if req.top_n is not None:
            payload["top_n"] = req.top_n
        if echo_switch:
            payload["return_documents"] = False
        for k, v in req.extra.items():
            payload.setdefault(k, v)
        return payload

    def _flat_answer(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        """An answer with ``results`` at the top (Zhipu, Jina, Cohere and the servers that copy them)."""
        data = decode_json(body, provider=self.name)
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise self.parse_error(200, headers, body)
        usage, units = rerank_usage(data)
        rid = data.get("id") or data.get("request_id") or headers.get("x-request-id")
        return rerank_response(self.name, req, data["results"], rid=rid, usage=usage, search_units=units)


class DashScopeRerank(RerankMixin):
    """DashScope native text rerank."""

    rerank_models = ("gte-rerank-v2", "qwen3-rerank")
    rerank_path = DASHSCOPE_RERANK_PATH

    def rerank_request(self, req: RerankRequest) -> HTTPRequest:
        params: dict[str, Any] = {"return_documents": False}
        if req.top_n is not None:
            params["top_n"] = req.top_n
        params.update({k: v for k, v in req.extra.items() if k not in params})  # instruct, ...
        payload = {"model": req.model, "input": {"query": req.query, "documents": req.documents}, "parameters": params}
        return self.json_request(self.rerank_url_path(), payload)

    def parse_rerank(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        data = decode_json(body, provider=self.name)
        output = data.get("output") if isinstance(data, dict) else None
        if not isinstance(output, dict) or not isinstance(output.get("results"), list):
            raise self.parse_error(200, headers, body)  # {"code", "message"} answered with 200
        usage, units = rerank_usage(data)
        rid = data.get("request_id") or headers.get("x-request-id")
        return rerank_response(self.name, req, output["results"], rid=rid, usage=usage, search_units=units)


class ZhipuRerank(RerankMixin):
    """Zhipu ``/rerank`` (``return_raw_scores``, ``request_id``, ``user_id`` pass through as extras)."""

    rerank_models = ("rerank",)

    def rerank_request(self, req: RerankRequest) -> HTTPRequest:
        return self.json_request(self.rerank_url_path(), self._flat_body(req))

    def parse_rerank(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        return self._flat_answer(body, headers, req)


class JinaRerank(RerankMixin):
    """Jina ``/v1/rerank`` and the servers that speak it."""

    rerank_models = ("jina-reranker-v2-base-multilingual", "jina-reranker-m0")

    def rerank_request(self, req: RerankRequest) -> HTTPRequest:
        return self.json_request(self.rerank_url_path(), self._flat_body(req))

    def parse_rerank(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        return self._flat_answer(body, headers, req)


class CohereRerank(RerankMixin):
    """Cohere ``/v2/rerank``: no ``return_documents`` on the wire (v2 never sends documents back)."""

    rerank_models = ("rerank-v3.5", "rerank-multilingual-v3.0", "rerank-english-v3.0")
    rerank_path = "/v2/rerank"

    def rerank_request(self, req: RerankRequest) -> HTTPRequest:
        return self.json_request(self.rerank_url_path(), self._flat_body(req, echo_switch=False))

    def parse_rerank(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        return self._flat_answer(body, headers, req)
