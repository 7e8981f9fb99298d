"""The floor for any Python gateway: Starlette + uvicorn (uvloop, httptools) + one shared aiohttp ClientSession.

``python -m bench.minimal_proxy --port 9200 --upstream http://127.0.0.1:9100``

It parses the request body with orjson (a gateway must look at ``model`` and ``stream``), forwards the original
bytes, and answers with the upstream's bytes: a JSON body as one response, a stream chunk by chunk as it arrives.
No auth, no routing, no validation: whatever a real gateway does costs more than this.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["create_app", "main"]

_JSON = {"content-type": "application/json"}


def create_app(upstream: str) -> Starlette:
    base = upstream.rstrip("/")
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1000, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
            state["session"] = session
            yield

    async def chat_completions(request: Request) -> Response:
        raw = await request.body()
        data = orjson.loads(raw)
        stream = data.get("stream") is True
        resp = await state["session"].post(base + "/v1/chat/completions", data=raw, headers=_JSON)
        if not stream:
            try:
                body = await resp.read()
            finally:
                resp.release()
            return Response(body, status_code=resp.status, media_type="application/json")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in resp.content.iter_any():
                    yield chunk
            finally:
                resp.release()

        return StreamingResponse(chunks(), status_code=resp.status, media_type="text/event-stream")

    async def models(request: Request) -> Response:
        async with state["session"].get(base + "/v1/models") as resp:
            return Response(await resp.read(), status_code=resp.status, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.minimal_proxy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9100")
    args = ap.parse_args(argv)
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
