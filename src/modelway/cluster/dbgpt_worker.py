"""DB-GPT's model-worker API (``dbgpt/model/cluster/worker/manager.py``, as ``RemoteModelWorker`` calls it),
answered by the gateway's router, and the worker's registration with a DB-GPT model controller.

Routes (all ``POST``):

================================ =============================================================================
``/api/worker/generate_stream``  NUL-delimited ``ModelOutput`` JSON: ``text`` (cumulative), ``error_code``,
                                 ``incremental: false``, ``finish_reason``, ``usage``; with reasoning, ``content``
                                 as a thinking part and a text part instead of ``text`` (DB-GPT >= 0.7)
``/api/worker/generate``         the last ``ModelOutput``
``/api/worker/embeddings``       ``List[List[float]]``
``/api/worker/count_token``      an int (the gateway's estimate)
``/api/worker/model_metadata``   a ``ModelMetadata``
================================ =============================================================================

The request is DB-GPT's ``PromptRequest``: ``messages`` as ``ModelMessage`` dicts (roles ``system``, ``human``,
``ai``; ``view`` messages are display-only and dropped), else ``prompt`` as one user message; ``temperature``,
``top_p``, ``max_new_tokens``, ``stop``, ``presence_penalty`` and ``frequency_penalty`` are sent on (``echo`` and
``top_k`` are not: DB-GPT's proxy models ignore them too). Generation errors are in-band (``error_code``, FastChat's
codes, as DB-GPT's API server expects); the other routes answer errors with an HTTP status and an OpenAI-style
error body (``RemoteModelWorker`` raises on any status but 200/201).

Registration: ``<name>@llm`` (``<name>@text2vec`` for embedding models) at ``POST /api/controller/models``,
heartbeats to ``/api/controller/heartbeat`` (DB-GPT's registry registers an unknown instance from its heartbeat,
so a restarted controller needs nothing more), and at shutdown
``DELETE /api/controller/models?model_name&host&port&remove_from_registry=true``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ..errors import InvalidRequestError, ModelwayError
from ..server.dialects import Call, Dialect, StreamRenderer
from ..server.dialects.base import model_field
from ..server.disconnect import watched
from ..server.errors import public_message
from ..server.http import Request, Send, send_json
from ..types import ChatCompletion, ChatCompletionChunk, Usage
from ..usage.estimate import estimate_tokens, prompt_chars
from ..validate import chat_request, embedding_request
from .codes import error_code
from .fastchat_worker import input_texts
from .membership import ControllerError, Membership

if TYPE_CHECKING:
    from ..server.gateway import Gateway
    from .worker import WorkerApp, WorkerRoute, WorkerSettings

__all__ = ["DbgptMembership", "membership", "model_output", "routes"]

log = logging.getLogger("modelway.cluster")

ENDPOINT = "dbgpt-worker"
#: DB-GPT's controller marks an instance unhealthy after 60 s (its defaults) without a heartbeat
MAX_HEARTBEAT_INTERVAL = 20.0
_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system"}
_DROPPED_ROLES = frozenset({"view"})


def model_output(
    text: str,
    *,
    error_code: int = 0,
    reasoning: str | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """A ``ModelOutput`` as ``ModelOutput(**data)`` reads it (DB-GPT 0.6 and >= 0.7 alike, unless ``reasoning``)."""
    out: dict[str, Any] = {"error_code": error_code}
    if reasoning:
        out["content"] = [
            {"type": "thinking", "object": {"data": reasoning, "format": "text"}},
            {"type": "text", "object": {"data": text, "format": "text"}},
        ]
    else:
        out["text"] = text
    out.update(
        incremental=False,
        model_context=None,
        finish_reason=finish_reason,
        usage=usage.to_dict() if usage is not None else None,
        metrics=None,
    )
    return out


def _failure(exc: ModelwayError) -> dict[str, Any]:
    code = error_code(exc)
    log.log(logging.ERROR if code >= 50000 else logging.WARNING, "worker request failed: %d %s", code, exc)
    return model_output(public_message(exc), error_code=int(code))


def _tokens(text: str) -> int:
    return estimate_tokens(*prompt_chars([{"role": "user", "content": text}]))


class DbgptErrors(Dialect):
    """Errors of the non-generating routes: an HTTP status and an OpenAI-style body."""

    endpoint = ENDPOINT


def _messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    raw = data.get("messages")
    out: list[dict[str, Any]] = []
    if isinstance(raw, list):
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise InvalidRequestError(f"messages[{i}] must be an object", param=f"messages[{i}]")
            role = m.get("role")
            if role in _DROPPED_ROLES:
                continue
            mapped = _ROLES.get(role) if isinstance(role, str) else None
            if mapped is None:
                raise InvalidRequestError(
                    f"messages[{i}].role must be one of system, human, ai (got {role!r})", param=f"messages[{i}].role"
                )
            out.append({"role": mapped, "content": m.get("content")})
    if not out:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequestError("messages (or prompt) is required", param="messages")
        out.append({"role": "user", "content": prompt})
    return out


def _params(data: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        v = data.get(name)
        if v is not None and not (name == "top_p" and v == 1.0) and not (name.endswith("penalty") and v == 0):
            p[name] = v
    max_new = data.get("max_new_tokens")
    if max_new is not None:
        p["max_tokens"] = max_new
    stop = data.get("stop")
    if stop:
        p["stop"] = stop
    return p


class DbgptGenerate(Dialect):
    """``/api/worker/generate_stream`` (``stream``) and ``/api/worker/generate``."""

    endpoint = ENDPOINT

    def __init__(self, settings: WorkerSettings, stream: bool) -> None:
        self.settings = settings
        self.streams = stream

    def error(self, exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = orjson.dumps(_failure(exc))
        return 200, body + b"\0" if self.streams else body, []

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        served = self.settings.lookup(model_field(data), embedding=False)
        messages = _messages(data)
        try:
            creq = chat_request(served.alias, messages, stream=self.streams, params=_params(data))
        except InvalidRequestError as exc:
            if exc.param == "max_tokens":  # named as the caller sent it
                exc.param = "max_new_tokens"
            raise
        prompt = estimate_tokens(*prompt_chars(creq.messages))
        return Call(served.alias, creq, {"prompt_tokens": prompt})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        choice = resp.choices[0] if resp.choices else None
        text = (choice.message.content if choice else None) or ""
        reasoning = choice.message.reasoning_content if choice else None
        usage = resp.usage or Usage.of(call.state["prompt_tokens"], _tokens(text))
        reason = (choice.finish_reason if choice else None) or "stop"
        return orjson.dumps(model_output(text, reasoning=reasoning, finish_reason=reason, usage=usage))

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return _Outputs(call.state["prompt_tokens"])


class _Outputs(StreamRenderer):
    """Cumulative ``ModelOutput`` frames, each followed by ``b"\\0"``."""

    __slots__ = ("text", "reasoning", "finish", "usage", "prompt_tokens", "chars")

    def __init__(self, prompt_tokens: int) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.prompt_tokens = prompt_tokens
        self.chars = [0, 0]

    def _frame(self, reason: str | None) -> bytes:
        text = "".join(self.text)
        reasoning = "".join(self.reasoning)
        self.text = [text]
        self.reasoning = [reasoning]
        usage = self.usage or Usage.of(self.prompt_tokens, estimate_tokens(*self.chars))
        frame = model_output(text, reasoning=reasoning or None, finish_reason=reason, usage=usage)
        return orjson.dumps(frame) + b"\0"

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        if chunk.usage is not None:
            self.usage = chunk.usage
        added = False
        for c in chunk.choices:
            if c.index != 0:
                continue
            if c.finish_reason is not None:
                self.finish = c.finish_reason
            for part, into in ((c.delta.reasoning_content, self.reasoning), (c.delta.content, self.text)):
                if part:
                    into.append(part)
                    self.chars[0 if part.isascii() else 1] += len(part)
                    added = True
        return self._frame(None) if added else b""

    async def end(self) -> bytes:
        return self._frame(self.finish or "stop")

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        return orjson.dumps(_failure(exc)) + b"\0"


# -- the other worker routes ----------------------------------------------------------------------


async def embeddings(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    data: dict[str, Any] = await req.json(gw.config.server.max_body_bytes)
    worker_type = data.get("worker_type") or "text2vec"
    if worker_type != "text2vec":
        raise InvalidRequestError(
            f"worker_type {worker_type!r} is not served: this worker serves text2vec embeddings", param="worker_type"
        )
    served = app.settings.lookup(model_field(data), embedding=True)
    ereq = embedding_request(served.alias, input_texts(data.get("input")))
    ticket = await gw.control.begin(req.request_id, req.caller, served.alias, ENDPOINT, False)
    async with ticket:
        resp = await watched(req, gw.router.embed(served.alias, ereq, ticket))
        vectors = [e.embedding for e in sorted(resp.data, key=lambda e: e.index)]
        await ticket.answer(req, send, resp.usage, orjson.dumps(vectors))


async def count_token(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    data: dict[str, Any] = await req.json(gw.config.server.max_body_bytes)
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidRequestError("prompt must be a string", param="prompt")
    await send_json(send, 200, _tokens(prompt))


async def model_metadata(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    data: dict[str, Any] = await req.json(gw.config.server.max_body_bytes)
    served = app.settings.lookup(model_field(data))
    body = {
        "model": served.name,
        "label": served.name,
        "context_length": app.settings.context_length,
        "description": f"modelway gateway model {served.alias}",
        "chat_model": not served.embedding,
        "function_calling": False,
        "metadata": {},
        "ext_metadata": {"prompt_roles": ["system", "human", "ai"], "prompt_sep": "\n", "prompt_chat_template": None},
    }
    await send_json(send, 200, body)


def routes(settings: WorkerSettings) -> dict[str, WorkerRoute]:
    from .worker import WorkerRoute

    errors = DbgptErrors()
    stream = DbgptGenerate(settings, stream=True)
    whole = DbgptGenerate(settings, stream=False)
    return {
        "/api/worker/generate_stream": WorkerRoute.generate(stream),
        "/api/worker/generate": WorkerRoute.generate(whole),
        "/api/worker/embeddings": WorkerRoute(embeddings, errors, work=True),
        "/api/worker/count_token": WorkerRoute(count_token, errors),
        "/api/worker/model_metadata": WorkerRoute(model_metadata, errors),
    }


# -- the controller -------------------------------------------------------------------------------


class DbgptMembership(Membership):
    kind = "the DB-GPT controller"

    def __init__(self, url: str, interval: float, queue_length: Callable[[], int], address: str, keys: list[str]):
        super().__init__(url, min(interval, MAX_HEARTBEAT_INTERVAL), queue_length)
        parts = urlsplit(address)
        if not parts.hostname:
            raise ValueError(f"the worker address {address!r} has no host")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.keys = keys

    def _instance(self, key: str) -> dict[str, Any]:
        return {
            "model_name": key,
            "host": self.host,
            "port": self.port,
            "weight": 1.0,
            "check_healthy": True,
            "healthy": True,
            "enabled": True,
            "remove_from_registry": False,
        }

    async def _each(self, path: str) -> bool:
        ok = True
        for key in self.keys:
            answer = await self.call("POST", path, json=self._instance(key))
            if not isinstance(answer, bool):
                raise ControllerError(f"{path} answered {answer!r}, not a boolean")
            ok = ok and answer
        return ok

    async def register(self) -> None:
        if not await self._each("/api/controller/models"):
            raise ControllerError("the controller refused the registration")

    async def beat(self) -> bool:
        return await self._each("/api/controller/heartbeat")

    async def leave(self) -> None:
        for key in self.keys:
            params = {"model_name": key, "host": self.host, "port": str(self.port), "remove_from_registry": "true"}
            await self.call("DELETE", "/api/controller/models", params=params)


def membership(settings: WorkerSettings, queue_length: Callable[[], int]) -> DbgptMembership:
    assert settings.dbgpt_controller is not None
    keys = [f"{m.name}@{'text2vec' if m.embedding else 'llm'}" for m in settings.models]
    return DbgptMembership(
        settings.dbgpt_controller, settings.heartbeat_interval, queue_length, settings.worker_address, keys
    )
