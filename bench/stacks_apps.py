"""The apps :mod:`bench.stacks` serves: one tiny proxy-like app as ASGI and as RSGI, and the real gateway as a factory.

The tiny app does what a proxy does per request, and nothing else:

- ``POST /echo``: read the JSON body (~300 B), parse it with orjson, answer a ~700 B JSON built from it;
- ``POST /proxy``: the same, but the answer comes from ``POST $STACKS_UPSTREAM/v1/chat/completions`` (one shared
  aiohttp session, configured as :mod:`modelway.transport` configures its own);
- ``GET /health``: ``{"status":"ok"}``.

``gateway_factory`` builds ``modelway.server.app.create_app(config)`` from the JSON config file named by
``$STACKS_GATEWAY_CONFIG``, for ``granian --interface asgi --factory bench.stacks_apps:gateway_factory``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

__all__ = ["gateway_factory", "tiny_asgi", "tiny_rsgi"]

_TEXT = (
    "Pooling reuses warm TCP and TLS connections, so each request skips the handshakes and the gateway adds "
    "little latency. Watch the time requests wait for a free connection."
)
_JSON = [(b"content-type", b"application/json")]
_HEALTH = b'{"status":"ok"}'
_session: Any = None


def _answer(data: dict[str, Any]) -> bytes:
    """~700 bytes of chat.completion, built from the parsed request."""
    return orjson.dumps(
        {
            "id": "chatcmpl-stacks0123456789abcdefghijklmno",
            "object": "chat.completion",
            "created": 1700000000,
            "model": data.get("model"),
            "system_fingerprint": "fp_stacks",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 61,
                "completion_tokens": 27,
                "total_tokens": 88,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
                "temperature": data.get("temperature"),
                "max_tokens": data.get("max_tokens"),
                "messages": len(data.get("messages") or ()),
            },
        }
    )


async def _upstream(body: bytes) -> bytes:
    """One upstream call through a shared session set up as modelway.transport sets up its own."""
    global _session
    import aiohttp

    if _session is None:
        connector = aiohttp.TCPConnector(limit=4096, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False)
        _session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "stacks"},
        )
    url = os.environ["STACKS_UPSTREAM"].rstrip("/") + "/v1/chat/completions"
    async with _session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
        return await resp.read()


async def _handle(path: str, body: bytes) -> bytes:
    data = orjson.loads(body)
    if path == "/proxy":
        return await _upstream(body)
    return _answer(data)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def tiny_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    path = scope["path"]
    if scope["method"] == "GET":
        out = _HEALTH
    else:
        msg = await receive()
        body = msg.get("body", b"")
        if msg.get("more_body", False):
            parts = [body]
            while msg.get("more_body", False):
                msg = await receive()
                parts.append(msg.get("body", b""))
            body = b"".join(parts)
        out = await _handle(path, body)
    headers = [*_JSON, (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


_RSGI_JSON = [("content-type", "application/json")]


async def tiny_rsgi(scope: Any, proto: Any) -> None:
    if scope.proto != "http":
        return
    if scope.method == "GET":
        out = _HEALTH
    else:
        out = await _handle(scope.path, await proto())
    proto.response_bytes(200, _RSGI_JSON, out)


def gateway_factory() -> Any:
    """The gateway app for the config in ``$STACKS_GATEWAY_CONFIG`` (JSON, which is YAML)."""
    from modelway.config import load_config
    from modelway.server.app import create_app

    return create_app(load_config(os.environ["STACKS_GATEWAY_CONFIG"]))
