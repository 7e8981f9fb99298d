"""modelway: one API and one OpenAI-compatible gateway for every LLM provider.

>>> import modelway
>>> with modelway.Client() as client:                          # keys from ZHIPUAI_API_KEY, DASHSCOPE_API_KEY, ...
...     for chunk in client.chat("zhipu/glm-4-flash", "你好", stream=True):
...         print(chunk.content or "", end="")
"""

from __future__ import annotations

from typing import Any

from .client import AsyncClient, Client
from .errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentFilterError,
    ContextLengthError,
    InvalidRequestError,
    ModelwayError,
    NotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    RoutingError,
    StreamError,
    UnknownModelError,
    UpstreamServerError,
)
from .providers import ProviderSettings, register
from .rerank import RerankResponse, RerankResult
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Delta,
    Embedding,
    EmbeddingResponse,
    ModelInfo,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "AllDeploymentsFailedError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "Client",
    "ConfigError",
    "ContentFilterError",
    "ContextLengthError",
    "Delta",
    "Embedding",
    "EmbeddingResponse",
    "InvalidRequestError",
    "ModelInfo",
    "ModelwayError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderSettings",
    "ProviderTimeoutError",
    "RateLimitError",
    "RerankResponse",
    "RerankResult",
    "RoutingError",
    "StreamError",
    "ToolCall",
    "ToolCallDelta",
    "UnknownModelError",
    "UpstreamServerError",
    "Usage",
    "register",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("modelway")
    raise AttributeError(f"module 'modelway' has no attribute {name!r}")
