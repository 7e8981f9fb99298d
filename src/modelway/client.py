"""The library face: :class:`AsyncClient`, and :class:`Client`, a thin synchronous shell over it.

Models are addressed as ``provider/model`` (``zhipu/glm-4-flash``). Credentials come from ``providers=``
arguments, else from the official SDKs' environment variables. With ``base_url=`` the client talks to a
modelway gateway (or any OpenAI-compatible server) instead, sending the model name unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from . import calls
from .envfile import env_source
from .errors import ConfigError, UnknownModelError
from .providers import PROVIDERS, get_adapter_class, settings_from_env, split_model
from .providers.base import Adapter, ProviderSettings
from .providers.openai_compat import make_adapter_class
from .providers.specs import OPENAI
from .rerank import RerankResponse, rerank_request
from .retry import RetryPolicy
from .transport import Transport
from .types import ChatCompletion, ChatCompletionChunk, EmbeddingResponse, Message, ModelInfo
from .validate import chat_request, embedding_request

__all__ = ["GATEWAY_KEY_ENV", "AsyncClient", "Client"]

#: the environment variable a gateway's key is read from when ``base_url=`` comes without ``api_key=``
GATEWAY_KEY_ENV = "MODELWAY_API_KEY"

#: a modelway gateway (or another OpenAI-compatible server) as the library's one upstream: OpenAI's wire format,
#: but earlier reasoning_content stays in the messages (the gateway hands it to thinking-mode providers in tool loops);
#: its key is the gateway's (``MODELWAY_API_KEY``), and a gateway without a master key needs none
_GatewayAdapter = make_adapter_class(
    dataclasses.replace(
        OPENAI,
        name="gateway",
        label="an OpenAI-compatible gateway",
        reasoning_in_messages=True,
        key_env=(GATEWAY_KEY_ENV,),
        base_url_env=(),
        key_required=False,
    )
)

T = TypeVar("T")
ProviderConfig = ProviderSettings | Mapping[str, Any]

DEFAULT_TIMEOUT = 600.0


def _settings(cfg: ProviderConfig) -> ProviderSettings:
    if isinstance(cfg, ProviderSettings):
        return cfg
    known = {"api_key", "base_url", "headers"}
    return ProviderSettings(
        api_key=cfg.get("api_key"),
        base_url=cfg.get("base_url") or cfg.get("api_base"),
        headers=dict(cfg.get("headers") or {}),
        options={k: v for k, v in cfg.items() if k not in known and k != "api_base"},
    )


class AsyncClient:
    """Call any provider with one API.

    ``AsyncClient()`` reads keys from the environment (``ZHIPUAI_API_KEY``, ``DASHSCOPE_API_KEY``,
    ``OPENAI_API_KEY``, ...). ``AsyncClient(providers={"zhipu": {"api_key": "id.secret", "auth": "jwt"}})``
    sets them explicitly; two clients with two keys for one provider work side by side.
    ``AsyncClient(base_url="http://gateway:4000/v1", api_key="sk-...")`` talks to a gateway; without ``api_key``
    it sends ``MODELWAY_API_KEY`` when that is set, else no key (a gateway without a master key needs none).

    Use it as ``async with AsyncClient() as client:`` or call :meth:`aclose` when done.
    """

    def __init__(
        self,
        *,
        providers: Mapping[str, ProviderConfig] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        env: Mapping[str, str] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._configs = {name: _settings(cfg) for name, cfg in (providers or {}).items()}
        for name in self._configs:
            get_adapter_class(name)  # fail now, not at the first call, on a misspelt provider
        self._gateway: Adapter | None = None
        #: a gateway's /rerank speaks Jina's shape
        self._gateway_rerank: Adapter | None = None
        if base_url is not None:
            if api_key is None:
                api_key = self._env.get(GATEWAY_KEY_ENV) or None
            self._gateway = _GatewayAdapter(ProviderSettings(api_key=api_key, base_url=base_url))
            from .providers.jina import JinaAdapter  # (the class itself, whatever is registered as "jina")

            self._gateway_rerank = JinaAdapter(ProviderSettings(api_key=api_key, base_url=base_url))
        elif api_key is not None:
            raise ConfigError("api_key= alone is ambiguous: pass it with base_url=, or per provider in providers=")
        self._adapters: dict[str, Adapter] = {}
        self._transport = transport or Transport()
        self._owns_transport = transport is None
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries)

    # -- resolution ---------------------------------------------------------------------------
    def adapter(self, provider: str) -> Adapter:
        """The adapter (with its credentials) serving ``provider``; built once per client."""
        a = self._adapters.get(provider)
        if a is None:
            cls = get_adapter_class(provider)
            settings = self._configs.get(provider)
            if settings is None:
                settings = settings_from_env(cls, self._env)
            a = self._adapters[provider] = cls(settings)
        return a

    def resolve(self, model: str) -> tuple[Adapter, str]:
        """``"zhipu/glm-4-flash"`` → (the zhipu adapter, ``"glm-4-flash"``)."""
        if self._gateway is not None:
            return self._gateway, model
        try:
            provider, name = split_model(model)
        except ValueError:
            raise UnknownModelError(
                f"model {model!r} must be addressed as provider/model, e.g. zhipu/glm-4-flash"
            ) from None
        if provider not in PROVIDERS:
            raise UnknownModelError(
                f"unknown provider {provider!r} in model {model!r}; known: {', '.join(sorted(PROVIDERS))}"
            )
        return self.adapter(provider), name

    # -- calls --------------------------------------------------------------------------------
    @overload
    async def chat(
        self,
        model: str,
        messages: str | list[Message],
        *,
        stream: Literal[False] = ...,
        timeout: float | None = ...,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def chat(
        self,
        model: str,
        messages: str | list[Message],
        *,
        stream: Literal[True],
        timeout: float | None = ...,
        **params: Any,
    ) -> AsyncIterator[ChatCompletionChunk]: ...

    async def chat(
        self,
        model: str,
        messages: str | list[Message],
        *,
        stream: bool = False,
        timeout: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """Chat completion. ``params`` are OpenAI parameters (``temperature``, ``max_tokens``, ``tools``, ...) or
        provider-specific ones (``top_k``, ``enable_search``, ``thinking``), passed through as given.

        With ``stream=True`` returns an async iterator of chunks; the last chunk carries ``usage``.
        Raises :class:`~modelway.errors.ProviderError` subclasses, also from inside the stream.
        """
        adapter, name = self.resolve(model)
        req = chat_request(name, messages, stream=stream, params=params, extra=extra_body)
        t = self.timeout if timeout is None else timeout
        if stream:
            return calls.stream(self._transport, adapter, req, timeout=t, retry=self.retry)
        return await calls.complete(self._transport, adapter, req, timeout=t, retry=self.retry)

    async def embed(
        self, model: str, input: str | list[str], *, timeout: float | None = None, **params: Any
    ) -> EmbeddingResponse:
        """Embeddings for one string or a list of strings (``dimensions`` and provider extras pass through)."""
        adapter, name = self.resolve(model)
        req = embedding_request(name, input, params)
        t = self.timeout if timeout is None else timeout
        return await calls.embed(self._transport, adapter, req, timeout=t, retry=self.retry)

    async def rerank(
        self,
        model: str,
        query: str,
        documents: Sequence[str | Mapping[str, Any]],
        *,
        top_n: int | None = None,
        return_documents: bool = True,
        timeout: float | None = None,
        **params: Any,
    ) -> RerankResponse:
        """Rank ``documents`` (strings or ``{"text": ...}`` objects) by relevance to ``query``: results best first,
        each with the document's ``index`` in ``documents``, its ``relevance_score`` and (``return_documents``) its
        text; ``top_n`` keeps the best ones only. Provider extras (``instruct``, ``max_tokens_per_doc``) pass
        through."""
        adapter, name = self.resolve(model)
        if self._gateway_rerank is not None:
            adapter = self._gateway_rerank
        docs = list(documents) if isinstance(documents, tuple) else documents
        req = rerank_request(name, query, docs, top_n=top_n, return_documents=return_documents, extra=params)
        t = self.timeout if timeout is None else timeout
        return await calls.rerank(self._transport, adapter, req, timeout=t, retry=self.retry)

    async def models(self) -> list[ModelInfo]:
        """Models you can call: from the gateway when ``base_url`` is set, else the known models of every provider
        whose credentials were found."""
        if self._gateway is not None:
            return await calls.list_models(self._transport, self._gateway, timeout=self.timeout)
        out: list[ModelInfo] = []
        for name, cls in sorted(PROVIDERS.items()):
            if name in self._configs or any(env_source(self._env, k) for k in cls.key_env):
                out.extend(self.adapter(name).models())
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _Runner:
    """A private event loop, driven from the calling thread: no background thread, nothing left at exit.

    If the calling thread already runs a loop (Jupyter), each step runs in a short-lived worker thread instead.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with self.lock:
                return self.loop.run_until_complete(make())
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self.run, make).result()

    def close(self, finish: Callable[[], Awaitable[None]] | None = None) -> None:
        if self.loop.is_closed():
            return
        with self.lock:
            if finish is not None:
                self.loop.run_until_complete(finish())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def _finalize(runner: _Runner, client: AsyncClient) -> None:
    if not runner.loop.is_closed() and not runner.loop.is_running():
        runner.close(client.aclose)


class Client:
    """Synchronous client with the same API as :class:`AsyncClient`: ``chat`` returns a response, or with
    ``stream=True`` an iterator of chunks. Use ``with Client() as client:`` or call :meth:`close`.

    It drives a private event loop from the calling thread; no thread or loop outlives :meth:`close`.
    One client may be used from several threads: calls are serialised.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._async = AsyncClient(**kwargs)
        self._runner = _Runner()
        self._finalizer = weakref.finalize(self, _finalize, self._runner, self._async)

    @property
    def timeout(self) -> float | None:
        return self._async.timeout

    @overload
    def chat(
        self, model: str, messages: str | list[Message], *, stream: Literal[False] = ..., **params: Any
    ) -> ChatCompletion: ...

    @overload
    def chat(
        self, model: str, messages: str | list[Message], *, stream: Literal[True], **params: Any
    ) -> Iterator[ChatCompletionChunk]: ...

    def chat(
        self, model: str, messages: str | list[Message], *, stream: bool = False, **params: Any
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """See :meth:`AsyncClient.chat`."""
        if stream:
            agen = self._runner.run(lambda: self._async.chat(model, messages, stream=True, **params))
            return self._iterate(agen)
        return self._runner.run(lambda: self._async.chat(model, messages, stream=False, **params))

    def _iterate(self, agen: AsyncIterator[ChatCompletionChunk]) -> Iterator[ChatCompletionChunk]:
        anext = agen.__anext__
        try:
            while True:
                try:
                    chunk = self._runner.run(anext)
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and not self._runner.loop.is_closed():
                self._runner.run(aclose)

    def embed(self, model: str, input: str | list[str], **params: Any) -> EmbeddingResponse:
        """See :meth:`AsyncClient.embed`."""
        return self._runner.run(lambda: self._async.embed(model, input, **params))

    def rerank(
        self, model: str, query: str, documents: Sequence[str | Mapping[str, Any]], **params: Any
    ) -> RerankResponse:
        """See :meth:`AsyncClient.rerank`."""
        return self._runner.run(lambda: self._async.rerank(model, query, documents, **params))

    def models(self) -> list[ModelInfo]:
        """See :meth:`AsyncClient.models`."""
        return self._runner.run(self._async.models)

    def close(self) -> None:
        self._finalizer.detach()
        self._runner.close(self._async.aclose)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
