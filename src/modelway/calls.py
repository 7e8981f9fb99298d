"""One request to one adapter over the shared transport: send, parse, raise typed errors — with retries.

Used by the library clients and by the gateway's router alike. Streams are retried only until their first
chunk was produced; after that an upstream failure raises where it happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TypeVar

from .errors import ModelwayError, ProviderError
from .providers.base import Adapter, StreamParser
from .retry import RetryPolicy
from .sse import SSEDecoder, SSEEvent
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

__all__ = [
    "complete",
    "complete_once",
    "embed",
    "flatten",
    "list_models",
    "relay",
    "stream",
    "stream_batches",
    "stream_once",
]


async def complete_once(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None
) -> ChatCompletion:
    """One non-streaming chat request, no retry."""
    resp = await transport.send(adapter.chat_request(req), timeout=timeout)
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_chat(resp.body, resp.headers, req)


async def stream_once(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None
) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """One streaming chat request, no retry: batches of chunks, one batch per network read (so a server can send
    what arrived together in one write). Closing the iterator closes the upstream connection at once."""
    resp = await transport.stream(adapter.chat_request(req), timeout=timeout)
    try:
        if resp.status >= 400:
            raise adapter.parse_error(resp.status, resp.headers, await resp.read())
        ctype = resp.content_type
        if ctype.startswith("application/json"):
            # a JSON body where a stream was expected: an error answered with 200 (MiniMax does this)
            raise adapter.parse_error(resp.status, resp.headers, await resp.read())
        parser = adapter.stream_parser(req)
        decoder = SSEDecoder()
        async for data in resp.iter_bytes():
            batch, error = _parse(parser, decoder.feed(data))
            if batch:
                yield batch
            if error is not None:
                raise error
        batch, error = _parse(parser, decoder.flush())
        if error is None:
            try:
                batch += parser.close()
            except ModelwayError as exc:
                error = exc
        if batch:
            yield batch
        if error is not None:
            raise error
    finally:
        await resp.aclose()


def _parse(parser: StreamParser, events: list[SSEEvent]) -> tuple[list[ChatCompletionChunk], ModelwayError | None]:
    """The chunks of some events, and the error an event raised: what came before an error is never lost."""
    batch: list[ChatCompletionChunk] = []
    event = parser.event
    for ev in events:
        try:
            batch += event(ev)
        except ModelwayError as exc:
            return batch, exc
    return batch, None


async def relay(first: T, it: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """``first``, then the rest of ``it``; ``it`` is closed however the consumer stops."""
    try:
        yield first
        async for item in it:
            yield item
    finally:
        await it.aclose()


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
    attempt = 0
    while True:
        try:
            return await complete_once(transport, adapter, req, timeout=timeout)
        except ProviderError as exc:
            if not await _retrying(retry, attempt, exc):
                raise
            attempt += 1


async def stream_batches(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None, retry: RetryPolicy
) -> AsyncGenerator[list[ChatCompletionChunk], None]:
    """Batches of chunks, retried before the first one (the stream has not committed to the caller until then)."""
    attempt = 0
    while True:
        it = stream_once(transport, adapter, req, timeout=timeout)
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        except ProviderError as exc:
            await it.aclose()
            if not await _retrying(retry, attempt, exc):
                raise
            attempt += 1
            continue
        except BaseException:
            await it.aclose()
            raise
        async for batch in relay(first, it):
            yield batch
        return


def stream(
    transport: Transport, adapter: Adapter, req: ChatRequest, *, timeout: float | None, retry: RetryPolicy
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Chunks one by one, retried before the first one."""
    return flatten(stream_batches(transport, adapter, req, timeout=timeout, retry=retry))


async def embed(
    transport: Transport, adapter: Adapter, req: EmbeddingRequest, *, timeout: float | None, retry: RetryPolicy
) -> EmbeddingResponse:
    attempt = 0
    while True:
        try:
            resp = await transport.send(adapter.embed_request(req), timeout=timeout)
            if resp.status >= 400:
                raise adapter.parse_error(resp.status, resp.headers, resp.body)
            return adapter.parse_embed(resp.body, resp.headers, req)
        except ProviderError as exc:
            if not await _retrying(retry, attempt, exc):
                raise
            attempt += 1


async def list_models(transport: Transport, adapter: Adapter, *, timeout: float | None) -> list[ModelInfo]:
    """The provider's (or gateway's) own model list."""
    resp = await transport.send(adapter.models_request(), timeout=timeout)
    if resp.status >= 400:
        raise adapter.parse_error(resp.status, resp.headers, resp.body)
    return adapter.parse_models(resp.body)
