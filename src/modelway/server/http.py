"""Minimal ASGI plumbing: the request object, JSON and SSE responses. No framework on the hot path."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..auth.authenticator import ANONYMOUS, Caller
from ..errors import InvalidRequestError
from ..validate import MAX_JSON_DEPTH, check_json_depth

__all__ = [
    "ClientGone",
    "Lifecycle",
    "Receive",
    "Request",
    "RequestTooLarge",
    "Scope",
    "Send",
    "new_request_id",
    "send_json",
    "start_sse",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
JSON_HEADERS = [JSON_CONTENT_TYPE]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


# request ids: a random per-process prefix and a counter (unique, and no system call per request as uuid4 makes)
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


class ClientGone(Exception):
    """The client disconnected; there is no one to answer."""


class RequestTooLarge(InvalidRequestError):
    """The request body is over the configured limit (answered 413)."""

    http_status = 413


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request body is larger than the limit of {limit} bytes", code="request_too_large")


class Lifecycle:
    """Where one app is in its life, for the code serving its requests: ``draining`` once a shutdown began (no new
    connections; readiness answers 503), ``aborting`` once its deadline passed and the requests still in flight
    are being cancelled (a cancelled request is then answered, and recorded, as ``shutting_down``)."""

    __slots__ = ("aborting", "draining")

    def __init__(self) -> None:
        self.draining = False
        self.aborting = False


class Request:
    __slots__ = (
        "scope",
        "receive",
        "headers",
        "request_id",
        "path",
        "method",
        "caller",
        "lifecycle",
        "aborted",
        "keep_body",
        "kept_body",
    )

    def __init__(self, scope: Scope, receive: Receive, lifecycle: Lifecycle | None = None) -> None:
        self.scope = scope
        self.receive = receive
        self.lifecycle = lifecycle or Lifecycle()
        #: the shutdown's abort reached this request (it is answered ``shutting_down`` once)
        self.aborted = False
        self.path: str = scope["path"]
        self.method: str = scope["method"]
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        rid = self.headers.get(b"x-request-id")
        self.request_id = rid.decode("latin-1")[:128] if rid else new_request_id()
        #: who is calling, once the app has checked the key
        self.caller: Caller = ANONYMOUS
        #: keep the body once read (the request log's ``bodies``), in ``kept_body``
        self.keep_body = False
        self.kept_body: bytes | None = None

    def header(self, name: bytes) -> str | None:
        v = self.headers.get(name)
        return v.decode("latin-1") if v is not None else None

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        msg = await self.receive()
        if msg["type"] != "http.disconnect" and not msg.get("more_body", False):
            # the whole body in one message (the common case): the loop below, unrolled
            body = msg.get("body") or b""
            if len(body) > limit:
                raise _too_large(limit)
            if self.keep_body:
                self.kept_body = body
            return body
        parts: list[bytes] = []
        size = 0
        while True:  # (a body that stops arriving is ended by the protocol's body deadline: a disconnect here)
            if msg["type"] == "http.disconnect":
                raise ClientGone("the client went away while sending its request")
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                parts.append(chunk)
            if not msg.get("more_body", False):
                body = parts[0] if len(parts) == 1 else b"".join(parts)
                if self.keep_body:
                    self.kept_body = body
                return body
            msg = await self.receive()

    def absorb_abort(self) -> bool:
        """The task serving this request was cancelled. ``True`` when that is the gateway's shutdown abort reaching
        it for the first time: the cancel is absorbed, and the caller answers (or ends its stream) with
        ``shutting_down``. ``False`` (re-raise) for any other cancel, or a second one."""
        if not self.lifecycle.aborting or self.aborted:
            return False
        self.aborted = True
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def query(self) -> dict[str, str]:
        """The query string's parameters (the last value of one given twice; empty values kept)."""
        qs = self.scope.get("query_string") or b""
        return {k: v[-1] for k, v in parse_qs(qs.decode("latin-1"), keep_blank_values=True).items()}

    async def json(self, limit: int) -> Any:
        return self.decode(await self.body(limit))

    @staticmethod
    def decode(raw: bytes) -> Any:
        """A body read by :meth:`body` as :meth:`json` takes it: a JSON object (``json`` spelt out in two steps saves
        a coroutine on the request path)."""
        if not raw:
            raise InvalidRequestError("the request body is empty; expected a JSON object", code="invalid_json")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
        # orjson reads 1024 levels and writes 254: a body nested deeper than the writer takes would fail upstream.
        # Every container opens with a bracket, so a body with no more brackets than the limit (inside strings too)
        # cannot nest deeper than it: two counts at C speed instead of a walk (the common case).
        if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH:
            check_json_depth(data)
        return data


def _headers(extra: list[tuple[bytes, bytes]], request_id: str | None) -> list[tuple[bytes, bytes]]:
    if request_id:
        return [*extra, (b"x-request-id", request_id.encode("latin-1"))]
    return extra


async def send_json(
    send: Send,
    status: int,
    body: Any,
    *,
    request_id: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    await send(json_start(status, payload, request_id, headers))
    await send({"type": "http.response.body", "body": payload})


def json_start(
    status: int, payload: bytes, request_id: str | None, headers: list[tuple[bytes, bytes]] | None
) -> Message:
    """The ``http.response.start`` of a JSON answer (:func:`send_json`'s; ``headers`` go between its content type and
    its request id)."""
    h = [JSON_CONTENT_TYPE, *headers] if headers else [JSON_CONTENT_TYPE]  # (JSON_HEADERS: one list per answer)
    if request_id:
        h.append((b"x-request-id", request_id.encode("latin-1")))
    h.append((b"content-length", str(len(payload)).encode()))
    return {"type": "http.response.start", "status": status, "headers": h}


async def start_sse(
    send: Send, *, request_id: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    h = _headers(SSE_HEADERS + headers if headers else list(SSE_HEADERS), request_id)
    await send({"type": "http.response.start", "status": 200, "headers": h})
