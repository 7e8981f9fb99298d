"""FastChat's model-worker API (``fastchat/serve/base_model_worker.py``), answered by the gateway's router, and
the worker's registration with a FastChat controller.

Routes (all ``POST``):

========================== ==================================================================================
``/worker_generate_stream`` NUL-delimited JSON frames ``{"text": <cumulative>, "error_code", "usage",
                           "finish_reason"}``, each followed by ``b"\\0"``; the last one has the finish reason and
                           the provider's usage
``/worker_generate``       the last frame, as one JSON body
``/worker_get_embeddings`` ``{"embedding": [[...]] or [base64 float32], "token_num"}``
``/worker_get_status``     ``{"model_names", "speed": 1, "queue_length"}``
``/count_token``           ``{"count", "error_code": 0}``: the gateway's token estimate (not characters)
``/model_details``         ``{"context_length"}``
``/worker_get_conv_template`` ``{"conv": ...}``: a ChatML template (:data:`.conversation.CONV_TEMPLATE`)
========================== ==================================================================================

Errors are answered as FastChat workers answer them: HTTP 200 with ``{"text": <message>, "error_code": <code>}``
(:mod:`.codes`), and a stream that fails after it started ends with such a frame.

The ``prompt`` FastChat's API server sends is parsed back into chat messages (:mod:`.conversation`). Generation
parameters: ``temperature``, ``top_p`` (1.0 is not sent), ``presence_penalty``, ``frequency_penalty``, ``stop``
(without template stop strings), and ``max_new_tokens`` as ``max_tokens`` unless it is merely what was left of the
context (FastChat's API server fills it in when the caller gave no ``max_tokens``; forwarded, it would exceed most
providers' output limits). ``echo`` puts the prompt in front of the text only when it is ``true`` (FastChat's
local workers echo when it is missing; an API model's callers never want the rendered template back). ``top_k``,
``repetition_penalty``, ``stop_token_ids``, ``logprobs`` and beam search are token-level controls of local models
and are not sent; ``images`` are refused (the worker registers as a language model).
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from .conversation import CONV_TEMPLATE, TEMPLATE_STOPS, prompt_to_messages
from .membership import ControllerError, Membership

if TYPE_CHECKING:
    from ..server.gateway import Gateway
    from .worker import WorkerApp, WorkerRoute, WorkerSettings

__all__ = ["FastChatMembership", "input_texts", "membership", "routes", "text_tokens"]

log = logging.getLogger("modelway.cluster")

ENDPOINT = "fastchat"


def text_tokens(text: str) -> int:
    """The gateway's token estimate for ``text`` (:mod:`modelway.usage.estimate`)."""
    return estimate_tokens(*prompt_chars([{"role": "user", "content": text}]))


def finish_reason(reason: str | None) -> str | None:
    """FastChat knows ``stop`` and ``length``."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def error_body(exc: ModelwayError) -> dict[str, Any]:
    code = error_code(exc)
    level = logging.ERROR if code >= 50000 else logging.WARNING
    log.log(level, "worker request failed: %d %s", code, exc)
    return {"text": public_message(exc), "error_code": int(code)}


class FastChatErrors(Dialect):
    """FastChat's in-band errors: HTTP 200, ``{"text", "error_code"}`` (``framed``: followed by ``b"\\0"``)."""

    endpoint = ENDPOINT
    framed = False

    def error(self, exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        body = orjson.dumps(error_body(exc))
        return 200, body + b"\0" if self.framed else body, []


def _number(data: dict[str, Any], name: str) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidRequestError(f"{name} must be a number", param=name)
    return float(v)


def gen_params(data: dict[str, Any], prompt_tokens: int, context_length: int) -> dict[str, Any]:
    """FastChat's generation parameters → the chat request's (see the module docstring)."""
    p: dict[str, Any] = {}
    temperature = _number(data, "temperature")
    if temperature is not None:
        p["temperature"] = temperature
    top_p = _number(data, "top_p")
    if top_p is not None and top_p != 1.0:
        p["top_p"] = top_p
    for name in ("presence_penalty", "frequency_penalty"):
        v = _number(data, name)
        if v:
            p[name] = v
    max_new = data.get("max_new_tokens")
    if isinstance(max_new, int) and not isinstance(max_new, bool) and 0 < max_new < context_length - prompt_tokens:
        p["max_tokens"] = max_new
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list):
        kept = [s for s in stop if isinstance(s, str) and s and s not in TEMPLATE_STOPS]
        if kept:
            p["stop"] = kept[:4]
    return p


class FastChatGenerate(FastChatErrors):
    """``/worker_generate_stream`` (``stream``) and ``/worker_generate``: a dialect of the gateway's chat path."""

    def __init__(self, settings: WorkerSettings, stream: bool) -> None:
        self.settings = settings
        self.streams = stream
        self.framed = stream

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        served = self.settings.lookup(model_field(data), embedding=False)
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise InvalidRequestError("prompt is required and must be a non-empty string", param="prompt")
        if data.get("images"):
            raise InvalidRequestError(
                "images are not supported: this worker registers its models as language models", param="images"
            )
        messages = prompt_to_messages(prompt)
        prompt_tokens = text_tokens(prompt)
        params = gen_params(data, prompt_tokens, self.settings.context_length)
        creq = chat_request(served.alias, messages, stream=self.streams, params=params)
        echo = prompt if data.get("echo") is True else ""
        # usage before the provider's arrives: estimated from the messages, as the ticket would
        estimate = estimate_tokens(*prompt_chars(creq.messages))
        return Call(served.alias, creq, {"echo": echo, "prompt_tokens": estimate})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        text = resp.content or ""
        usage = resp.usage or Usage.of(call.state["prompt_tokens"], text_tokens(text))
        reason = finish_reason(resp.choices[0].finish_reason if resp.choices else None) or "stop"
        frame = {"text": call.state["echo"] + text, "error_code": 0, "usage": _usage(usage), "finish_reason": reason}
        return orjson.dumps(frame)

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return _Frames(call.state["echo"], call.state["prompt_tokens"])


def _usage(u: Usage) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


class _Frames(StreamRenderer):
    """FastChat stream frames: the whole text so far in each, usage estimated until the provider's arrives."""

    __slots__ = ("parts", "finish", "usage", "prompt_tokens", "ascii", "other")

    def __init__(self, echo: str, prompt_tokens: int) -> None:
        self.parts = [echo] if echo else []
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.prompt_tokens = prompt_tokens
        self.ascii = 0
        self.other = 0

    def _frame(self, reason: str | None) -> bytes:
        usage = self.usage or Usage.of(self.prompt_tokens, estimate_tokens(self.ascii, self.other))
        text = "".join(self.parts)
        self.parts = [text]
        frame = {"text": text, "error_code": 0, "usage": _usage(usage), "finish_reason": reason}
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
            text = c.delta.content
            if text:
                self.parts.append(text)
                if text.isascii():
                    self.ascii += len(text)
                else:
                    self.other += len(text)
                added = True
        return self._frame(None) if added else b""

    async def end(self) -> bytes:
        return self._frame(finish_reason(self.finish) or "stop")

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        return orjson.dumps(error_body(exc)) + b"\0"


# -- the other worker routes ----------------------------------------------------------------------


async def _body(gw: Gateway, req: Request) -> dict[str, Any]:
    data: dict[str, Any] = await req.json(gw.config.server.max_body_bytes)
    return data


def input_texts(value: Any) -> str | list[str]:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(t, str) for t in value)):
        return value
    raise InvalidRequestError("input must be a string or a list of strings", param="input")


async def embeddings(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    data = await _body(gw, req)
    served = app.settings.lookup(model_field(data), embedding=None)
    ereq = embedding_request(served.alias, input_texts(data.get("input")))
    ticket = await gw.control.begin(req.request_id, req.caller, served.alias, ENDPOINT, False)
    async with ticket:
        resp = await watched(req, gw.router.embed(served.alias, ereq, ticket))
        vectors: list[Any] = [e.embedding for e in sorted(resp.data, key=lambda e: e.index)]
        if data.get("encoding_format") == "base64":
            vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
        usage = resp.usage
        tokens = usage.prompt_tokens if usage is not None else sum(text_tokens(t) for t in ereq.texts)
        await ticket.answer(req, send, usage, orjson.dumps({"embedding": vectors, "token_num": tokens}))


async def status(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    names = [] if app.leaving else app.settings.names
    await send_json(send, 200, {"model_names": names, "speed": 1, "queue_length": app.queue})


async def count_token(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    data = await _body(gw, req)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        count = sum(text_tokens(p) for p in prompt)
    elif isinstance(prompt, str):
        count = text_tokens(prompt)
    else:
        raise InvalidRequestError("prompt must be a string", param="prompt")
    await send_json(send, 200, {"count": count, "error_code": 0})


async def model_details(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    await send_json(send, 200, {"context_length": app.settings.context_length})


async def conv_template(app: WorkerApp, gw: Gateway, req: Request, send: Send) -> None:
    await send_json(send, 200, {"conv": CONV_TEMPLATE})


def routes(settings: WorkerSettings) -> dict[str, WorkerRoute]:
    from .worker import WorkerRoute

    errors = FastChatErrors()
    stream = FastChatGenerate(settings, stream=True)
    whole = FastChatGenerate(settings, stream=False)
    return {
        "/worker_generate_stream": WorkerRoute.generate(stream),
        "/worker_generate": WorkerRoute.generate(whole),
        "/worker_get_embeddings": WorkerRoute(embeddings, errors, work=True),
        "/worker_get_status": WorkerRoute(status, errors),
        "/count_token": WorkerRoute(count_token, errors),
        "/model_details": WorkerRoute(model_details, errors),
        "/worker_get_conv_template": WorkerRoute(conv_template, errors),
    }


# -- the controller -------------------------------------------------------------------------------


class FastChatMembership(Membership):
    """``/register_worker`` and ``/receive_heart_beat`` (``{"exist": false}``: register again). FastChat has no
    deregistration: leaving registers the worker again with no models, so the controller stops listing and choosing
    it at once; without heartbeats it then expires."""

    kind = "the FastChat controller"

    def __init__(self, url: str, interval: float, queue_length: Callable[[], int], worker: str, names: list[str]):
        super().__init__(url, interval, queue_length)
        self.worker = worker
        self.names = names

    async def _register(self, names: list[str]) -> None:
        status = {"model_names": names, "speed": 1, "queue_length": self.queue_length()}
        body = {"worker_name": self.worker, "check_heart_beat": True, "worker_status": status, "multimodal": False}
        await self.call("POST", "/register_worker", json=body)

    async def register(self) -> None:
        await self._register(self.names)

    async def beat(self) -> bool:
        answer = await self.call(
            "POST", "/receive_heart_beat", json={"worker_name": self.worker, "queue_length": self.queue_length()}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("exist"), bool):
            raise ControllerError(f"/receive_heart_beat answered {answer!r}, not {{'exist': bool}}")
        return bool(answer["exist"])

    async def leave(self) -> None:
        await self._register([])


def membership(settings: WorkerSettings, queue_length: Callable[[], int]) -> FastChatMembership:
    assert settings.controller is not None
    return FastChatMembership(
        settings.controller, settings.heartbeat_interval, queue_length, settings.worker_address, settings.names
    )
