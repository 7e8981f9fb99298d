"""The provider adapter interface.

Adapters are sans-I/O: they build :class:`HTTPRequest` objects from internal requests and parse response
bodies, decoded SSE events and error bodies. All network I/O happens in :mod:`modelway.transport`.

One adapter instance serves one set of credentials (key + base URL): two keys for one provider are two
adapter instances, side by side, with nothing shared but the connection pool.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from ..errors import ConfigError, InvalidRequestError, ProviderError, StreamError
from ..rerank import RerankRequest, RerankResponse
from ..sse import SSEEvent
from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelInfo,
)

__all__ = [
    "Adapter",
    "HTTPRequest",
    "ProviderSettings",
    "StreamParser",
    "decode_json",
    "developer_to_system",
    "parse_retry_after",
]


@dataclass(slots=True)
class HTTPRequest:
    """What an adapter asks the transport to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    #: the provider that built it (for error attribution in the transport)
    provider: str = ""


@dataclass(slots=True)
class ProviderSettings:
    """Credentials and endpoint of one provider instance, resolved from arguments, config or environment."""

    api_key: str | None = None
    base_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: adapter-specific options, e.g. ``{"auth": "jwt"}`` for Zhipu
    options: dict[str, Any] = field(default_factory=dict)


def developer_to_system(messages: list[Message]) -> list[Message]:
    """OpenAI's ``developer`` role → ``system`` for providers that know only the latter (copied only when needed)."""
    if not any(m.get("role") == "developer" for m in messages):
        return messages
    return [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]


def decode_json(body: bytes, *, provider: str, what: str = "response") -> Any:
    """Parse a JSON body, raising :class:`StreamError` (not a bare ValueError) when it is malformed."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        snippet = body[:200].decode("utf-8", errors="replace")
        raise StreamError(f"malformed JSON in {what}: {snippet!r}", provider=provider) from exc


#: the longest wait a provider's Retry-After is taken for (a day): beyond it, a value is nonsense or hostile
MAX_RETRY_AFTER = 86400.0


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), at most a day;
    ``None`` when absent or not a finite number."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return _bounded(float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return _bounded(float(ra))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(ra)
        except (TypeError, ValueError, OverflowError):
            return None
        return _bounded(when.timestamp() - time.time())


def _bounded(seconds: float) -> float | None:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class StreamParser(ABC):
    """Turns one stream's decoded SSE events into chunks. Stateful: one per stream.

    ``event`` may raise a :class:`~modelway.errors.ProviderError` for an error frame; ``close`` is called when
    the connection ends and raises :class:`~modelway.errors.StreamError` if the stream ended before its end.
    """

    done: bool = False
    provider: str = ""

    @abstractmethod
    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]: ...

    def close(self) -> list[ChatCompletionChunk]:
        if not self.done:
            raise StreamError("the stream ended before the provider finished it", provider=self.provider)
        return []


class Adapter(ABC):
    """One provider's wire protocol. Subclasses set the class attributes and implement the builders/parsers."""

    #: provider id, as in ``provider/model``
    name: ClassVar[str]
    #: human-readable name for ``modelway providers``
    label: ClassVar[str] = ""
    default_base_url: ClassVar[str]
    #: environment variables holding the key, first found wins
    key_env: ClassVar[tuple[str, ...]] = ()
    #: environment variables holding a base URL override
    base_url_env: ClassVar[tuple[str, ...]] = ()
    #: models advertised by ``models()`` (the provider serves others too)
    known_models: ClassVar[tuple[str, ...]] = ()
    supports_embeddings: ClassVar[bool] = False
    #: whether ``rerank_request``/``parse_rerank`` are served (the rerank mixins of :mod:`.rerank` set it)
    supports_rerank: ClassVar[bool] = False
    #: whether ``base_headers()`` depends on nothing but the settings and ``api_key`` (no clock, no token that
    #: expires): then :meth:`json_request` builds the headers once per key and copies them for each request. A
    #: subclass that overrides ``auth_headers`` or ``base_headers`` is not static unless it sets this again itself.
    static_headers: ClassVar[bool] = False
    #: ``(api_key, base_headers())`` once built, for a static class
    _headers_cache: tuple[str | None, dict[str, str]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "static_headers" not in own and ("auth_headers" in own or "base_headers" in own):
            cls.static_headers = False

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.base_url = (settings.base_url or self.default_base_url).rstrip("/")
        self.api_key = settings.api_key

    # -- credentials ---------------------------------------------------------------------------
    def require_key(self) -> str:
        if not self.api_key:
            env = " or ".join(self.key_env) or "api_key"
            raise ConfigError(f"no API key for provider {self.name!r}: set {env}, or pass api_key")
        return self.api_key

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.require_key()}"}

    def base_headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        h.update(self.auth_headers())
        h.update(self.settings.headers)
        return h

    # -- chat -----------------------------------------------------------------------------------
    @abstractmethod
    def chat_request(self, req: ChatRequest) -> HTTPRequest: ...

    @abstractmethod
    def parse_chat(self, body: bytes, headers: Mapping[str, str], req: ChatRequest) -> ChatCompletion: ...

    @abstractmethod
    def stream_parser(self, req: ChatRequest) -> StreamParser: ...

    # -- embeddings -----------------------------------------------------------------------------
    def embed_request(self, req: EmbeddingRequest) -> HTTPRequest:
        raise InvalidRequestError(
            f"provider {self.name!r} does not serve embeddings", param="model", code="embeddings_not_supported"
        )

    def parse_embed(self, body: bytes, headers: Mapping[str, str], req: EmbeddingRequest) -> EmbeddingResponse:
        raise InvalidRequestError(
            f"provider {self.name!r} does not serve embeddings", param="model", code="embeddings_not_supported"
        )

    # -- rerank ---------------------------------------------------------------------------------
    def rerank_request(self, req: RerankRequest) -> HTTPRequest:
        raise InvalidRequestError(
            f"provider {self.name!r} does not serve rerank", param="model", code="rerank_not_supported"
        )

    def parse_rerank(self, body: bytes, headers: Mapping[str, str], req: RerankRequest) -> RerankResponse:
        raise InvalidRequestError(
            f"provider {self.name!r} does not serve rerank", param="model", code="rerank_not_supported"
        )

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        """The models this provider is known to serve, addressed as ``provider/model``."""
        return [ModelInfo(id=f"{self.name}/{m}", owned_by=self.name) for m in self.known_models]

    def models_request(self) -> HTTPRequest:
        """The request listing the provider's models (OpenAI-compatible servers: ``GET /models``)."""
        raise ConfigError(f"provider {self.name!r} has no model list endpoint")

    def parse_models(self, body: bytes) -> list[ModelInfo]:
        raise ConfigError(f"provider {self.name!r} has no model list endpoint")

    # -- errors ---------------------------------------------------------------------------------
    @abstractmethod
    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error for an HTTP error response (status, provider code, request id, retry-after)."""

    def provider_error(
        self,
        cls: type[ProviderError],
        status: int | None,
        headers: Mapping[str, str],
        *,
        message: str | None,
        code: str | None,
        request_id: Any,
        body: Any,
        param: str | None = None,
    ) -> ProviderError:
        """Build the typed error every adapter raises: provider, status, code, request id, Retry-After, body."""
        return cls(
            message or (f"HTTP {status}" if status else "the provider reported an error"),
            provider=self.name,
            status_code=status,
            code=code,
            param=param,
            request_id=str(request_id) if request_id else None,
            retry_after=parse_retry_after(headers),
            body=body,
        )

    # -- helpers --------------------------------------------------------------------------------
    def json_request(self, path: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> HTTPRequest:
        if self.static_headers:
            cached = self._headers_cache
            if cached is None or cached[0] is not self.api_key:  # (a key set since: built again)
                cached = self._headers_cache = (self.api_key, self.base_headers())
            h = cached[1].copy()
        else:
            h = self.base_headers()
        if headers:
            h.update(headers)
        return HTTPRequest("POST", self.base_url + path, h, orjson.dumps(payload), self.name)
