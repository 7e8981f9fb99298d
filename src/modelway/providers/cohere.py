"""Cohere (``https://api.cohere.com``): rerank on its own v2 API; chat and embeddings on its Compatibility API.

Rerank is ``POST {base}/v2/rerank`` (:class:`~modelway.providers.rerank.CohereRerank`): ``{model, query,
documents, top_n, max_tokens_per_doc}`` (extras pass through) → ``{id, results: [{index, relevance_score}], meta:
{api_version, billed_units: {search_units}}}``. v2 never sends the documents back: the gateway fills them in from
the request (:mod:`modelway.rerank`). Cohere bills search units, not tokens: they are passed on as
``meta.billed_units.search_units``, and the token usage is zero.

Chat and embeddings go to Cohere's OpenAI-compatible API under ``{base}/compatibility/v1`` (the generic adapter;
``stream_options`` is never sent: that API refuses it). The base URL is Cohere's origin, so that both live under it;
a server that copies Cohere's rerank shape elsewhere sets ``options.rerank_path`` (e.g. ``/v1/rerank``).

Errors are ``{"id", "message"}`` (or OpenAI's shape from the Compatibility API), classified by the HTTP status:
400 bad request, 401 key, 402 payment, 404 model, 422 unprocessable, 429 rate limit, 5xx.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, HTTPRequest
from .openai_compat import OpenAICompatAdapter, OpenAISpec
from .rerank import CohereRerank

__all__ = ["COHERE_SPEC", "CohereAdapter"]

#: where Cohere's OpenAI-compatible endpoints live, under its origin
COMPAT_PREFIX = "/compatibility/v1"

COHERE_SPEC = OpenAISpec(
    name="cohere",
    label="Cohere (rerank v2; chat and embeddings via its Compatibility API)",
    base_url="https://api.cohere.com",
    key_env=("CO_API_KEY", "COHERE_API_KEY"),
    base_url_env=("CO_API_URL",),
    known_models=("command-a-03-2025",),
    embeddings=True,
    stream_usage=False,
    drop_params=frozenset({"stream_options"}),
)


class CohereAdapter(CohereRerank, OpenAICompatAdapter):
    """Cohere: native v2 rerank, OpenAI-compatible chat and embeddings."""

    spec = COHERE_SPEC
    name = COHERE_SPEC.name
    label = COHERE_SPEC.label
    default_base_url = COHERE_SPEC.base_url
    key_env = COHERE_SPEC.key_env
    base_url_env = COHERE_SPEC.base_url_env
    known_models = COHERE_SPEC.known_models
    supports_embeddings = COHERE_SPEC.embeddings

    def json_request(self, path: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> HTTPRequest:
        if path != self.rerank_url_path():  # chat, embeddings: the Compatibility API
            path = COMPAT_PREFIX + path
        return super().json_request(path, payload, headers)

    def models_request(self) -> HTTPRequest:
        return Adapter.models_request(self)  # no OpenAI-shaped model list: a ConfigError, not a wrong URL
