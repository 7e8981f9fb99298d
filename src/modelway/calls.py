"""One request to one adapter over the shared transport: send, parse, raise typed errors — with retries.

Used by the library clients and by the gateway's router alike. Streams are retried only until they commit (their
first chunk with output); after that an upstream failure raises where it happened. Parsers' surprises on payloads of
an unexpected shape become :class:`~modelway.errors.StreamError`, never an untyped exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from . import tracing
from .errors import ModelwayError, ProviderError, ProviderTimeoutError, StreamError
from .providers.base import Adapter, HTTPRequest, StreamParser
from .rerank import RerankRequest, RerankResponse
from .retry import RetryPolicy
from .sse import SSEDecoder, SSEEvent, SSEEventTooLarge
from .transport import Transport
from .types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
)

T = TypeVar("T")
R = TypeVar("R")

#: what a parser raises on a well-formed JSON document of an unexpected shape (a list where an object was due, ...)
_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _shape_error(exc: BaseException, provider: str, payload: bytes | str) -> StreamError:
    snippet = payload[:200] if isinstance(payload, str) else payload[:200].decode("utf-8", errors="replace")
    return StreamError(f"unexpected response from the provider ({exc!r}): {snippet!r}", provider=provider)


__all__ = [
    "complete",
    "complete_once",
    "embed",
    "flatten",
    "list_models",
    "open_stream",
    "rerank",
    "stream",
    "stream_batches",
    "stream_once",
]


async def _exchange(
    transport: Transport,
    adapter: Adapter,
    http: HTTPRequest,
    parse: Callable[[bytes, Mapping[str, str]], R],
    *,
    timeout: float | None,
    operation: str | None = None,
    model: str | None = None,
) -> R:
    """Send one request and parse the whole answer; HTTP errors and odd payloads become typed errors. When the
    request being served is traced, the exchange is an ``operation`` span (:mod:`modelway.tracing`)."""
    span = tracing.upstream(operation, model, adapter.name, http) if tracing.ACTIVE and operation else None
    try:
        resp = await transport.send(http, timeout=timeout)
        if resp.status >= 400:
            raise adapter.parse_error(resp.status, resp.headers, resp.body)
        try:
            answer = parse(resp.body, resp.headers)
        except _SHAPE_ERRORS as exc:
            raise _shape_error(exc, adapter.name, resp.body) from exc
    except BaseException as exc:
        if span is not None:
            tracing.upstream_failed(span, exc)
        raise
    if span is not None:
        tracing.upstream_done(span, answer, resp.status)
    return answer


async def _with_retries(retry: RetryPolicy, attempt: Callable[[], Awaitable[R]]) -> R:
    n = 0
    while True:
        try:
            return await attempt()
        except ProviderError as exc:
            if not await _retrying(retry, n, exc):
                raise
            n += 1


async def complete_once(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None
) -> ChatCompletion:
    """One non-streaming chat request, no retry."""
    return await _exchange(
        transport,
        adapter,
        adapter.chat_request(req),
        lambda b, h: adapter.parse_chat(b, h, req),
        timeout=timeout,
        operation="chat",
        model=req.model,
    )


async def stream_once(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None
) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """One streaming chat request, no retry: batches of chunks, one batch per network read (so a server can send
    what arrived together in one write). Closing the iterator closes the upstream connection at once."""
    http = adapter.chat_request(req)
    span = tracing.upstream("chat", req.model, adapter.name, http) if tracing.ACTIVE else None
    notes = None
    try:
        resp = await transport.stream(http, timeout=timeout)
        try:
            if resp.status >= 400:
                raise adapter.parse_error(resp.status, resp.headers, await resp.read())
            if resp.content_type.startswith("application/json"):
                # a JSON body where a stream was expected: a whole answer from a server that ignores "stream":
                # true, or an error answered with 200 (MiniMax does this)
                batch = [_json_answer(adapter, req, resp.headers, await resp.read())]
                if span is not None:
                    notes = tracing.upstream_chunks(span, notes, batch)
                yield batch
                if span is not None:
                    tracing.upstream_done(span, notes, resp.status)
                return
            parser = adapter.stream_parser(req)
            decoder = _decoder(adapter, transport.max_event_bytes)
            clock = asyncio.get_running_loop().time
            heard = clock()  # when the provider last sent an event (keep-alive comments do not count)
            try:
                async for data in resp.iter_bytes():
                    batch, error = _parse(parser, decoder.feed(data))
                    if batch:
                        if span is not None:
                            notes = tracing.upstream_chunks(span, notes, batch)
                        yield batch
                        heard = clock()  # (after the yield: time our own caller took is not the provider's silence)
                    if error is not None:
                        raise error
                    if not batch and timeout is not None and clock() - heard > timeout:
                        raise ProviderTimeoutError(
                            f"the provider sent nothing but keep-alive comments for {timeout:g}s",
                            provider=adapter.name,
                        )
                batch, error = _parse(parser, decoder.flush())
            except SSEEventTooLarge as exc:
                raise StreamError(f"the provider's stream is broken: {exc}", provider=adapter.name) from None
            if error is None:
                try:
                    batch += parser.close()
                except ModelwayError as exc:
                    error = exc
            if batch:
                if span is not None:
                    notes = tracing.upstream_chunks(span, notes, batch)
                yield batch
            if error is not None:
                raise error
        finally:
            await resp.aclose()
    except BaseException as exc:
        if span is not None:
            tracing.upstream_failed(span, exc)
        raise
    if span is not None:
        tracing.upstream_done(span, notes, resp.status)


class FrameDecoder(Protocol):
    """How a stream's bytes are cut into events: SSE, or an adapter's own framing."""

    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def flush(self) -> list[SSEEvent]: ...


def _decoder(adapter: Adapter, max_event_bytes: int) -> FrameDecoder:
    """SSE, unless the adapter declares another framing with a ``stream_decoder(max_event_bytes)`` method (model
    workers' NUL-delimited JSON: :class:`~modelway.nul.NULDecoder`)."""
    own: Callable[[int], FrameDecoder] | None = getattr(adapter, "stream_decoder", None)
    return own(max_event_bytes) if own is not None else SSEDecoder(max_event_bytes)


def _json_answer(adapter: Adapter, req: ChatRequest, headers: Mapping[str, str], body: bytes) -> ChatCompletionChunk:
    """The one chunk of a whole JSON answer to a stream request; the provider's error if the JSON is one."""
    try:
        resp = adapter.parse_chat(body, headers, req)
    except ModelwayError as exc:
        raise adapter.parse_error(502, headers, body) from exc
    except _SHAPE_ERRORS as exc:
        raise _shape_error(exc, adapter.name, body) from exc
    if not resp.choices:
        raise adapter.parse_error(502, headers, body)
    return resp.to_chunk()


def _parse(parser: StreamParser, events: list[SSEEvent]) -> tuple[list[ChatCompletionChunk], ModelwayError | None]:
    """The chunks of some events, and the error an event raised: what came before an error is never lost."""
    batch: list[ChatCompletionChunk] = []
    event = parser.event
    for ev in events:
        try:
            batch += event(ev)
        except ModelwayError as exc:
            return batch, exc
        except _SHAPE_ERRORS as exc:
            return batch, _shape_error(exc, parser.provider, ev.data)
    return batch, None


def _has_output(chunk: ChatCompletionChunk) -> bool:
    """Whether a chunk commits a stream: text, reasoning, a tool call, a finish reason or usage (an opening
    ``{"role": "assistant", "content": ""}`` chunk does not)."""
    if chunk.usage is not None:
        return True
    for c in chunk.choices:
        d = c.delta
        if c.finish_reason is not None or d.content or d.reasoning_content or d.tool_calls:
            return True
    return False


async def open_stream(
    transport: Transport,
    adapter: Adapter,
    req: ChatRequest,
    *,
    timeout: float | None,
    first_output: float | None = None,
) -> tuple[list[ChatCompletionChunk], AsyncGenerator[list[ChatCompletionChunk], None]]:
    """Start a stream and read it up to its commit point, the first chunk with output.

    Returns the chunks read so far and the iterator of the rest (the caller must close it). Until the commit point
    nothing has reached the caller, so an error raised here may be retried or failed over: the provider's own
    errors, :class:`~modelway.errors.ProviderTimeoutError` when no output came within ``first_output`` seconds
    (default: ``timeout``; keep-alive comments do not count), :class:`~modelway.errors.StreamError` when the stream
    ended with no output at all. ``timeout`` bounds every gap of the stream, after its commit point too.
    """
    deadline = timeout if first_output is None else first_output
    it = stream_once(transport, adapter, req, timeout=timeout)
    held: list[ChatCompletionChunk] = []
    try:
        async with asyncio.timeout(deadline):
            async for batch in it:
                held += batch
                if any(_has_output(c) for c in batch):
                    return held, it
    except ModelwayError:
        await it.aclose()
        raise
    except TimeoutError as exc:  # the deadline above (a provider timeout is a ModelwayError, handled first)
        await it.aclose()
        raise ProviderTimeoutError(f"no output from the provider within {deadline:g}s", provider=adapter.name) from exc
    except BaseException:
        await it.aclose()
        raise
    await it.aclose()
    raise StreamError("the provider ended the stream without any output", provider=adapter.name)


async def flatten(batches: AsyncGenerator[list[T], None]) -> AsyncGenerator[T, None]:
    try:
        async for batch in batches:
            for item in batch:
                yield item
    finally:
        await batches.aclose()


async def _retrying(policy: RetryPolicy, attempt: int, error: BaseException) -> bool:
    if not policy.should_retry(error, attempt):
        return False
    await asyncio.sleep(policy.wait(error, attempt))
    return True


async def complete(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None, retry: RetryPolicy
) -> ChatCompletion:
    return await _with_retries(retry, lambda: complete_once(transport, adapter, req, timeout=timeout))


async def stream_batches(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None, retry: RetryPolicy
) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """Batches of chunks, retried until the stream commits (see :func:`open_stream`): the caller sees nothing of a
    failed attempt. Closing this iterator closes the upstream connection at once."""
    attempt = 0
    while True:
        try:
            held, it = await open_stream(transport, adapter, req, timeout=timeout)
        except ProviderError as exc:
            if not await _retrying(retry, attempt, exc):
                raise
            attempt += 1
            continue
        try:
            yield held
            async for batch in it:
                yield batch
        finally:
            await it.aclose()
        return


def stream(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None, retry: RetryPolicy
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Chunks one by one, retried before the first one."""
    return flatten(stream_batches(transport, adapter, req, timeout=timeout, retry=retry))


async def embed(
    transport: Transport, adapter: Adapter, req: EmbeddingRequest, *, timeout: float | None, retry: RetryPolicy
) -> EmbeddingResponse:
    def parse(body: bytes, headers: Mapping[str, str]) -> EmbeddingResponse:
        return adapter.parse_embed(body, headers, req)

    return await _with_retries(
        retry,
        lambda: _exchange(
            transport,
            adapter,
            adapter.embed_request(req),
            parse,
            timeout=timeout,
            operation="embeddings",
            model=req.model,
        ),
    )


async def rerank(
    transport: Transport, adapter: Adapter, req: RerankRequest, *, timeout: float | None, retry: RetryPolicy
) -> RerankResponse:
    """One rerank request, retried as an embeddings request is."""

    def parse(body: bytes, headers: Mapping[str, str]) -> RerankResponse:
        return adapter.parse_rerank(body, headers, req)

    return await _with_retries(
        retry,
        lambda: _exchange(
            transport, adapter, adapter.rerank_request(req), parse, timeout=timeout, operation="rerank", model=req.model
        ),
    )


async def list_models(transport: Transport, adapter: Adapter, *, timeout: float | None) -> list[ModelInfo]:
    """The provider's (or gateway's) own model list."""
    return await _exchange(
        transport, adapter, adapter.models_request(), lambda b, h: adapter.parse_models(b), timeout=timeout
    )
