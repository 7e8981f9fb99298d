"""SSE responses that stop the upstream the moment the client goes away.

The first chunk is awaited before the response starts, so an error before it (no deployment could serve the
request) is still answered with a normal HTTP error status. After that, an error becomes an SSE error event and
the stream ends. A watcher task waits for ``http.disconnect`` and cancels the pump: the upstream iterator is
closed in ``finally``, which closes the upstream connection at once. A stream still running when the gateway's
shutdown deadline passes ends with a ``shutting_down`` error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from ..errors import GatewayShutdownError, ModelwayError
from ..types import ChatCompletionChunk
from .disconnect import ClientGone, Watcher
from .http import Request, Send, send_json, start_sse

if TYPE_CHECKING:
    from .dialects.base import Dialect, StreamRenderer

__all__ = ["stream_sse"]


async def stream_sse(
    req: Request,
    send: Send,
    batches: AsyncGenerator[list[ChatCompletionChunk], None],
    dialect: Dialect,
    render: StreamRenderer,
    *,
    headers: Callable[[], list[tuple[bytes, bytes]]] | None = None,
) -> None:
    """Send ``batches`` rendered by ``render``; an error before the first batch is answered as ``dialect`` renders
    errors. ``headers`` gives extra response headers when the response starts (after the first batch)."""
    try:
        with Watcher(req):
            await _pump(req, send, batches, dialect, render, headers)
    except ClientGone:
        pass  # the client went away: nothing more to send, nothing to report; the upstream is closed below
    finally:
        await batches.aclose()


async def _pump(
    req: Request,
    send: Send,
    batches: AsyncGenerator[list[ChatCompletionChunk], None],
    dialect: Dialect,
    render: StreamRenderer,
    headers: Callable[[], list[tuple[bytes, bytes]]] | None,
) -> None:
    chunk = render.chunk
    try:
        first = await batches.__anext__()
    except StopAsyncIteration:
        first = None
    except ModelwayError as exc:
        status, body, error_headers = dialect.error(exc, req.request_id)
        await send_json(send, status, body, request_id=req.request_id, headers=error_headers)
        return
    await start_sse(send, request_id=req.request_id, headers=headers() if headers is not None else None)
    start = render.start()
    if first is not None:
        # one write per upstream read: the chunks that arrived together leave together
        body = start + b"".join([chunk(c) for c in first])
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        try:
            async for batch in batches:
                body = chunk(batch[0]) if len(batch) == 1 else b"".join([chunk(c) for c in batch])
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
        except ModelwayError as exc:
            await send({"type": "http.response.body", "body": render.error(exc, req.request_id), "more_body": False})
            return
        except asyncio.CancelledError:
            if not req.absorb_abort():
                raise
            # the gateway's shutdown deadline passed: the stream is counted as ended by it (closing the upstream
            # settles its ticket), then ended with an error event, not a cut
            await batches.aclose()
            end = render.error(GatewayShutdownError(), req.request_id)
            await send({"type": "http.response.body", "body": end, "more_body": False})
            return
    elif start:
        await send({"type": "http.response.body", "body": start, "more_body": True})
    try:
        end = await render.end()
    except ModelwayError as exc:  # the dialect could not finish (store the answer): say so rather than cut
        end = render.error(exc, req.request_id)
    await send({"type": "http.response.body", "body": end, "more_body": False})
