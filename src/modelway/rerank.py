"""Rerank types (request, result, response) and the checks on a caller's rerank input.

The shape is Cohere's and Jina's ``/rerank``: a query, a list of documents (strings, or ``{"text": ...}`` objects),
an optional ``top_n`` and ``return_documents``. The answer lists ``{index, relevance_score, document?}`` sorted by
score, best first, whatever order the provider sent; ``index`` is the document's place in the request.

Documents the answer carries are always the caller's own texts (looked up by index): adapters ask their provider not
to echo the documents back (they may be large), and Cohere's v2 API cannot echo them at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError
from .types import Usage
from .validate import json_kind

__all__ = [
    "MAX_RERANK_DOCUMENTS",
    "RERANK_FIELDS",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "rerank_request",
]

#: the most documents one request may carry. Providers' own limits are lower (Zhipu 128, DashScope 500); Cohere
#: advises against more than 1000 in one request. Beyond this the gateway refuses with 400 (param ``documents``).
MAX_RERANK_DOCUMENTS = 1000
#: the request fields the gateway reads itself; any other field goes to the provider as it is (``extra``)
RERANK_FIELDS = frozenset({"model", "query", "documents", "top_n", "return_documents"})


@dataclass(slots=True)
class RerankRequest:
    """A rerank request as the adapters receive it: the documents as plain texts."""

    model: str
    query: str
    documents: list[str]
    #: how many results to answer (the best ones); ``None``: all
    top_n: int | None = None
    #: whether each result carries its document's text
    return_documents: bool = True
    #: provider-specific fields (``instruct``, ``max_tokens_per_doc``, ``return_raw_scores``, ...), sent as given
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RerankResult:
    index: int
    relevance_score: float
    #: the document's text, when the request asked for documents
    document: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "relevance_score": self.relevance_score}
        if self.document is not None:
            d["document"] = {"text": self.document}
        return d


@dataclass(slots=True)
class RerankResponse:
    """Results best first. ``usage`` holds the tokens the provider reported (all of them prompt tokens);
    ``search_units`` what Cohere-style providers bill instead (``meta.billed_units.search_units``)."""

    id: str
    model: str
    results: list[RerankResult]
    usage: Usage | None = None
    search_units: int | float | None = None
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire shape: Jina's ``usage`` always, Cohere's ``meta.billed_units`` when search units were billed."""
        u = self.usage or Usage()
        d: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "results": [r.to_dict() for r in self.results],
            "usage": {"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens},
        }
        if self.search_units is not None:
            d["meta"] = {"billed_units": {"search_units": self.search_units}}
        return d


_kind = json_kind


def _documents(documents: Any) -> list[str]:
    if not isinstance(documents, list) or not documents:
        raise InvalidRequestError(
            "documents must be a non-empty array of strings or {'text': ...} objects", param="documents"
        )
    if len(documents) > MAX_RERANK_DOCUMENTS:
        raise InvalidRequestError(
            f"documents holds {len(documents)} documents; at most {MAX_RERANK_DOCUMENTS} are accepted in one request",
            param="documents",
            code="too_many_documents",
        )
    texts: list[str] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            texts.append(doc)
        elif isinstance(doc, Mapping) and isinstance(doc.get("text"), str):
            texts.append(doc["text"])
        elif isinstance(doc, Mapping):
            raise InvalidRequestError(
                f"documents[{i}].text must be a string, not {_kind(doc.get('text'))}", param=f"documents[{i}].text"
            )
        else:
            raise InvalidRequestError(
                f"documents[{i}] must be a string or an object with a string 'text', not {_kind(doc)}",
                param=f"documents[{i}]",
            )
    return texts


def rerank_request(
    model: str,
    query: Any,
    documents: Any,
    *,
    top_n: Any = None,
    return_documents: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> RerankRequest:
    """Check a caller's rerank input (before any I/O): a non-empty string ``query``; a non-empty array of at most
    :data:`MAX_RERANK_DOCUMENTS` documents, each a string or ``{"text": str}``; ``top_n`` an integer ≥ 1 (more than
    the documents means all of them); ``return_documents`` a boolean (default true, as Cohere's and Jina's APIs).
    Raises :class:`~modelway.errors.InvalidRequestError` naming the field."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequestError(
            "query is required and must be a non-empty string (not only blanks)"
            if query is None or isinstance(query, str)
            else f"query must be a non-empty string, not {_kind(query)}",
            param="query",
        )
    texts = _documents(documents)
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InvalidRequestError(f"top_n must be an integer of at least 1, not {_show(top_n)}", param="top_n")
    if return_documents is not None and not isinstance(return_documents, bool):
        raise InvalidRequestError(
            f"return_documents must be true or false, not {_kind(return_documents)}", param="return_documents"
        )
    if top_n is not None and top_n > 2**31 - 1:
        top_n = len(texts)  # "all of them", in a number every provider parses
    return RerankRequest(
        model=model,
        query=query,
        documents=texts,
        top_n=top_n,
        return_documents=True if return_documents is None else return_documents,
        extra={k: v for k, v in (extra or {}).items() if k not in RERANK_FIELDS},
    )


def _show(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return repr(v) if v.bit_length() <= 64 else "an integer beyond 64 bits"
    if isinstance(v, str):
        return repr(v) if len(v) <= 30 else repr(v[:27]) + "..."
    return _kind(v) if not isinstance(v, float) else repr(v)
