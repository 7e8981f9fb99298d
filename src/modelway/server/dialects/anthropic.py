"""Anthropic Messages (``POST /v1/messages``, ``POST /v1/messages/count_tokens``) for every model.

A request is translated into the internal chat request (:mod:`.anthropic_request`) for every upstream, and also
kept as it came (``ChatRequest.native``): an Anthropic upstream gets the caller's body unchanged (the model name
replaced; the caller's ``anthropic-beta`` header forwarded), so prompt-cache prefixes keep hitting and nothing is
lost, and its answer comes back as Anthropic sent it. Other upstreams get the translation, and their answers are
rendered as Anthropic messages and event streams (:mod:`.anthropic_stream`).

Top-level fields:

* translated: ``model``, ``messages``, ``max_tokens`` (required, as Anthropic requires it), ``system``, ``stream``,
  ``temperature``, ``top_p``, ``top_k`` (an extra parameter), ``stop_sequences`` (``stop``), ``metadata.user_id``
  (``user``; other metadata is not sent), ``tools`` (client tools → functions), ``tool_choice`` (``any`` →
  ``required``; ``disable_parallel_tool_use`` → ``parallel_tool_calls: false``), ``thinking`` (enabled → a
  ``reasoning_effort`` by its budget: below 4096 ``low``, below 16384 ``medium``, else ``high``; disabled →
  ``none``; adaptive → the model's default), ``output_config`` (``effort`` → ``reasoning_effort`` unless
  ``thinking`` chose one; a ``json_schema`` ``format`` → ``response_format``);
* accepted, sent to Anthropic upstreams only: ``cache_control``, ``service_tier``, ``inference_geo``, ``speed``,
  ``container``, ``diagnostics``, ``context_management``, ``user_profile_id``, ``workspace_id``;
* served only when every deployment of the model is Anthropic (else 400): ``mcp_servers``, server tools
  (``web_search_20250305``, ``bash_...``: any tool with a ``type`` other than ``custom``), and content blocks
  other than text, image, document, tool_use, tool_result and thinking;
* anything else: 400 naming the field. The ``anthropic-version`` header may be anything.

Thinking blocks of answers from non-Anthropic upstreams carry a signature of this gateway's own
(:func:`~.anthropic_request.signature`); such blocks sent back become ``reasoning_content`` for non-Anthropic
upstreams and are left out of the body an Anthropic upstream gets (it would refuse the signature).

Errors are Anthropic's: ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the status the
gateway gives the error, and ``event: error`` inside a stream.

``count_tokens`` answers ``{"input_tokens": N}`` from the gateway's estimate (:mod:`modelway.usage.estimate`) of
the translated messages and tools, whatever the upstream: the caller's key must be allowed the model, and no limit
is consumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...errors import ModelwayError
from ...providers.anthropic import NATIVE_API, AnthropicAdapter, AnthropicNativeBody
from ...validate import chat_request
from ..control import ModelNotAllowedError
from ..errors import public_message, render_error
from ..http import send_json
from .anthropic_request import translate, without_our_thinking
from .anthropic_stream import MessagesRenderer, error_type_of, message_body
from .base import Call, Dialect, StreamRenderer, model_field, stream_field

if TYPE_CHECKING:
    from ...types import ChatCompletion
    from ..gateway import Gateway
    from ..http import Request, Send

__all__ = ["MessagesDialect", "count_tokens"]


def _anthropic(gw: Gateway, model: str) -> tuple[bool, bool]:
    """Whether every deployment of ``model`` speaks the Messages API (so untranslatable fields may pass), and
    whether any does (so the caller's body is kept for it)."""
    try:
        group = gw.router.group(model)
    except ModelwayError:
        return False, False  # an unknown model: told by the router, inside the request's ticket
    native = [isinstance(d.adapter, AnthropicAdapter) for d in group.deployments]
    return bool(native) and all(native), any(native)


class MessagesDialect(Dialect):
    endpoint = "messages"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        model = model_field(data)
        stream = stream_field(data)
        only, any_native = _anthropic(gw, model)
        t = translate(data, native=only)
        creq = chat_request(model, t.messages, stream=stream, params=t.params, extra=t.extra)
        if any_native:  # (built only for a model with an Anthropic deployment: the others never read it)
            body = without_our_thinking(data)
            creq.native = AnthropicNativeBody(NATIVE_API, body, beta=req.header(b"anthropic-beta"))
        return Call(model, creq, {"input_estimate": t.input_estimate()})

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        return orjson.dumps(message_body(resp, call.model, call.state["input_estimate"]))

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return MessagesRenderer(call.model, call.state["input_estimate"])

    def error(self, exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        status, _, headers = render_error(exc, request_id)  # (its status, headers and log line; our body)
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": error_type_of(exc, status), "message": public_message(exc)},
        }
        if request_id:
            body["request_id"] = request_id
        return status, orjson.dumps(body), headers


async def count_tokens(gw: Gateway, req: Request, send: Send) -> None:
    """``POST /v1/messages/count_tokens``: the estimated input tokens of a Messages request (no ``max_tokens``
    needed); see the module docstring."""
    data = await req.json(gw.config.server.max_body_bytes)
    model = model_field(data)
    key = req.caller.key
    if key is not None and key.models is not None and model not in key.models:
        raise ModelNotAllowedError(
            f"the API key {key.prefix}… ({key.id}) may not call the model {model!r}; it may call: "
            + ", ".join(key.models),
            param="model",
            code="model_not_allowed",
        )
    gw.router.group(model)  # an unknown model: 404
    t = translate(data, native=_anthropic(gw, model)[0], require_max_tokens=False)
    chat_request(model, t.messages, params=t.params, extra=t.extra)  # the same checks as a request
    await send_json(send, 200, {"input_tokens": t.input_estimate()}, request_id=req.request_id)
