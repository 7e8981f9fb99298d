"""``POST /v1/rerank`` (and ``/rerank``): Cohere's and Jina's rerank shape, for every rerank model.

Request: ``{"model", "query", "documents": [str | {"text": str}], "top_n"?, "return_documents"?}`` (checked by
:func:`modelway.rerank.rerank_request`: errors are 400 naming the field; other fields go to the provider as they
are). Answer: ``{"id", "model", "results": [{"index", "relevance_score", "document"?: {"text"}}], "usage":
{"prompt_tokens", "total_tokens"}}``, results best first, plus ``"meta": {"billed_units": {"search_units"}}`` when the
provider bills search units (Cohere). ``return_documents`` defaults to true, as in Cohere's v1 and Jina's APIs.

The control plane applies as to embeddings: the key's model list, its limits, a usage record with endpoint
``rerank`` (the tokens as prompt tokens), the metrics. Retries and failover are the router's (:meth:`Router.rerank`).
"""

from __future__ import annotations

import orjson

from ..rerank import RERANK_FIELDS, rerank_request
from .dialects.base import model_field
from .disconnect import watched
from .gateway import Gateway
from .http import Request, Send

__all__ = ["rerank"]


async def rerank(gw: Gateway, req: Request, send: Send) -> None:
    data = await req.json(gw.config.server.max_body_bytes)
    model = model_field(data)
    rreq = rerank_request(
        model,
        data.get("query"),
        data.get("documents"),
        top_n=data.get("top_n"),
        return_documents=data.get("return_documents"),
        extra={k: v for k, v in data.items() if k not in RERANK_FIELDS},
    )
    ticket = await gw.control.begin(req.request_id, req.caller, model, "rerank", False)
    async with ticket:
        resp = await watched(req, gw.router.rerank(model, rreq, ticket))
        body = resp.to_dict()
        body["model"] = model
        if not body["id"]:
            body["id"] = f"rerank-{req.request_id}"
        await ticket.answer(req, send, resp.usage, orjson.dumps(body))
