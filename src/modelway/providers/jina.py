"""Jina AI (``https://api.jina.ai/v1``), and every server that speaks Jina's rerank shape.

Rerank is ``POST {base}/rerank`` (:class:`~modelway.providers.rerank.JinaRerank`); embeddings are OpenAI-shaped
(``POST {base}/embeddings``), so this is the generic OpenAI-compatible adapter with Jina's rerank mixed in. Point
``base_url`` at a self-hosted server to rerank through it: vLLM (``http://host:8000/v1``), Xinference
(``http://host:9997/v1``), SiliconFlow (``https://api.siliconflow.cn/v1``); DashScope's OpenAI-compatible rerank
(``https://dashscope.aliyuncs.com/compatible-api/v1`` with ``options: {rerank_path: /reranks}``). The key is
optional there (a local server may need none).

Jina reports errors as FastAPI does, ``{"detail": "..."}`` (or a list of validation errors); servers that copy the
OpenAI shape send ``{"error": {...}}``. Both are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ProviderError
from .openai_compat import OpenAICompatAdapter, OpenAISpec
from .rerank import JinaRerank

__all__ = ["JINA_SPEC", "JinaAdapter"]

JINA_SPEC = OpenAISpec(
    name="jina",
    label="Jina AI (rerank, embeddings; also vLLM/Xinference/SiliconFlow rerank)",
    base_url="https://api.jina.ai/v1",
    key_env=("JINA_API_KEY", "JINAAI_API_KEY"),
    base_url_env=("JINA_BASE_URL",),
    known_models=("jina-embeddings-v3",),
    embeddings=True,
    key_required=False,
)


def _detail(data: Any) -> str | None:
    """The message of a FastAPI error body: ``{"detail": "text"}`` or ``{"detail": [{"loc", "msg"}, ...]}``."""
    if not isinstance(data, dict):
        return None
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail or None
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts) or None
    return None


class JinaAdapter(JinaRerank, OpenAICompatAdapter):
    """Jina AI: rerank and OpenAI-shaped embeddings (chat only where a compatible server has it)."""

    spec = JINA_SPEC
    name = JINA_SPEC.name
    label = JINA_SPEC.label
    default_base_url = JINA_SPEC.base_url
    key_env = JINA_SPEC.key_env
    base_url_env = JINA_SPEC.base_url_env
    known_models = JINA_SPEC.known_models
    supports_embeddings = JINA_SPEC.embeddings

    def error_from_payload(self, status: int | None, headers: Mapping[str, str], data: Any) -> ProviderError:
        err = super().error_from_payload(status, headers, data)
        detail = _detail(data)
        if detail is not None and err.message in (f"HTTP {status}", "the provider reported an error"):
            err.message = detail
        return err
