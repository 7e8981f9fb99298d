"""OpenAI Responses (``POST /v1/responses``; ``GET``/``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``) for every model.

A request is translated to the gateway's chat request (items → messages, see :mod:`.responses_items`) and its
answer rendered as a Response, or as the Responses event stream (:mod:`.responses_stream`). When a deployment is
OpenAI itself, the request goes to OpenAI's own ``/responses`` as it came (``ChatRequest.native``) and OpenAI's
answer comes back as it was, but for ``model``.

State is the gateway's own: a response made with ``store`` (the default, as OpenAI's) is kept in the gateway's
response store (:mod:`modelway.store.responses`: the SQL store, else memory), readable only with the key that made
it. ``previous_response_id`` names such a response: its whole conversation (every response it continues, each one's
input items then its output items) is put before the new input, so it works for every provider and across
deployments. OpenAI itself then gets that expanded input with ``store: false`` and without
``previous_response_id`` (items that only OpenAI's store could resolve are left out of it: reasoning without
``encrypted_content``, built-in tool calls). ``instructions`` are not carried over, as with OpenAI.

Fields: unknown ones are refused naming the field. Built-in tools (file_search, computer_use, mcp, ...), a built-in
``tool_choice``, ``prompt`` and items other than messages, function calls and their outputs, and reasoning are
refused unless every deployment of the model is OpenAI itself; for a translated model, a ``web_search`` tool is left
out (Codex CLI sends one by default) and a ``namespace`` tool's functions become chat tools (their calls name the
namespace, as OpenAI's do). Accepted and ignored when the request is translated (a chat model has no such thing):
``include`` (e.g. ``reasoning.encrypted_content``), ``truncation``, ``text.verbosity``, ``reasoning.summary``,
``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``, ``service_tier``, ``stream_options``,
``top_logprobs``, ``max_tool_calls``; ``client_metadata`` (Codex CLI's) is accepted and sent to no upstream;
``metadata`` is kept with the stored response. ``background: true`` and ``conversation`` are refused (use
``previous_response_id``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ...errors import InvalidRequestError, UnknownModelError
from ...providers.openai_responses import API, serves_responses
from ...store.responses import ResponseStore
from ...types import ChatCompletion, NativeBody
from ...validate import chat_request
from ..errors import MethodNotAllowed, NotFound
from ..http import send_json
from .base import Call, Dialect, StreamRenderer, model_field, stream_field
from .responses_items import (
    ResponseContext,
    completion_output,
    field_error,
    input_items,
    kind_of,
    new_id,
    replay,
    status_of,
    to_messages,
    usage_of,
    with_ids,
)
from .responses_stream import ResponsesStream

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request, Send

__all__ = ["RESOURCE_PREFIX", "ResponsesDialect", "keeper", "resource"]

RESOURCE_PREFIX = "/v1/responses/"

#: fields translated for every model
_TRANSLATED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "reasoning",
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "user",
        "metadata",
        "stream",
        "store",
        "previous_response_id",
        "truncation",
        "include",
    }
)
#: fields accepted for every model and ignored when the request is translated
_IGNORED = frozenset(
    {
        "stream_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "top_logprobs",
        "max_tool_calls",
        "background",
        "client_metadata",  # Codex CLI's thread, turn and installation ids
    }
)
#: built-in tools a chat model goes without (rather than refusing the request): a hosted search
_DROPPED_TOOLS = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"}
)
#: fields only OpenAI's own Responses API can serve
_NATIVE_ONLY = frozenset({"prompt"})
#: fields of the caller's body not sent to OpenAI itself (the gateway's own state; a client's own telemetry)
_NOT_FORWARDED = frozenset({"previous_response_id", "client_metadata"})
_KNOWN = _TRANSLATED | _IGNORED | _NATIVE_ONLY | {"conversation"}
#: parameters with the same name and meaning in chat
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user")

#: chat parameter → the Responses field it comes from (for errors)
_CHAT_NAMES = {
    "max_tokens": "max_output_tokens",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
}


def keeper(gw: Gateway) -> ResponseStore:
    """The gateway's response store (``Gateway.responses``)."""
    return gw.responses


def _natives(gw: Gateway, model: str) -> tuple[bool, bool]:
    """Whether every deployment of ``model`` is OpenAI itself, and whether any is (both ``False`` for a model not
    served: the router says so when the request is routed)."""
    try:
        group = gw.router.group(model)
    except UnknownModelError:
        return False, False
    native = [serves_responses(d.adapter) for d in group.deployments]
    return bool(native) and all(native), any(native)


def _optional(data: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequestError(f"{name} must be {what}", param=name)
    return value


# -- parameters -----------------------------------------------------------------------------------------------------


def chat_tools(tools: Any, *, native_ok: bool, namespaces: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Function tools ``{type, name, description, parameters, strict}`` → chat tools; the function tools of a
    ``namespace`` tool too (``namespaces`` gets each one's name → its namespace). ``web_search`` tools are left out
    for a chat model (Codex CLI sends one by default; the model answers without searching). Other built-in tools
    are refused (naming the field) unless every upstream is OpenAI's own Responses API, which gets them as they
    came."""
    if not isinstance(tools, list):
        raise field_error("tools", f"must be an array of tools, not {kind_of(tools)}")
    out: list[dict[str, Any]] = []
    for i, t in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(t, dict):
            raise field_error(at, f"must be a tool object, not {kind_of(t)}")
        kind = t.get("type")
        if kind == "function":
            out.append(_chat_function(t, at))
        elif kind == "namespace" and not native_ok:
            inner = t.get("tools")
            if not isinstance(t.get("name"), str) or not isinstance(inner, list):
                raise field_error(at, "must be a namespace tool {type: 'namespace', name, tools: [...]}")
            for j, f in enumerate(inner):
                if not isinstance(f, dict) or f.get("type") != "function":
                    raise field_error(f"{at}.tools[{j}]", "must be a function tool (for a model not served by OpenAI)")
                out.append(_chat_function(f, f"{at}.tools[{j}]"))
                if namespaces is not None:
                    namespaces[f["name"]] = t["name"]
        elif isinstance(kind, str) and kind in _DROPPED_TOOLS:
            continue  # (OpenAI itself gets it in the body as it came)
        elif not native_ok:
            shown = repr(kind) if isinstance(kind, str) else kind_of(kind)
            raise field_error(
                f"{at}.type",
                f"{shown[:40]} tools are not supported: built-in tools need a model served by OpenAI's own Responses "
                "API; this one is not (use function tools)",
            )
    return out


def _chat_function(t: dict[str, Any], at: str) -> dict[str, Any]:
    if not isinstance(t.get("name"), str) or not t["name"]:
        raise field_error(f"{at}.name", f"must be a non-empty string, not {kind_of(t.get('name'))}")
    params = t.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise field_error(f"{at}.parameters", f"must be a JSON schema object, not {kind_of(params)}")
    fn = {k: t[k] for k in ("name", "description", "parameters", "strict") if t.get(k) is not None}
    return {"type": "function", "function": fn}


def chat_tool_choice(choice: Any, *, native_ok: bool) -> Any:
    """``auto``/``none``/``required`` as they are; ``{type: function, name}`` → chat's ``{type, function: {name}}``.
    ``None``: nothing to send (a built-in tool choice, for a native upstream)."""
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str):
            raise field_error("tool_choice.name", f"must be a string, not {kind_of(choice.get('name'))}")
        return {"type": "function", "function": {"name": choice["name"]}}
    if native_ok and isinstance(choice, dict):
        return None
    raise field_error("tool_choice", "must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}")


def response_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` → chat's ``response_format`` (``None`` for plain text)."""
    if not isinstance(text, dict):
        raise field_error("text", f"must be an object such as {{'format': {{'type': 'text'}}}}, not {kind_of(text)}")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise field_error("text.format", f"must be an object, not {kind_of(fmt)}")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise field_error("text.format.name", f"must be a string, not {kind_of(fmt.get('name'))}")
        if not isinstance(fmt.get("schema"), dict):
            raise field_error("text.format.schema", f"must be a JSON schema object, not {kind_of(fmt.get('schema'))}")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise field_error("text.format.type", "must be 'text', 'json_object' or 'json_schema'")


class ResponsesDialect(Dialect):
    endpoint = "responses"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        for name in data:
            if name not in _KNOWN:
                raise InvalidRequestError(f"{name} is not a field of a Responses request", param=name)
        model = model_field(data)
        stream = stream_field(data)
        native_ok, any_native = _natives(gw, model)
        self._refuse(data, native_ok)
        store = data.get("store", True)
        if store is not None and not isinstance(store, bool):
            raise InvalidRequestError("store must be true or false", param="store")
        store = store is not False
        instructions = _optional(data, "instructions", str, "a string")
        metadata = _optional(data, "metadata", dict, "an object of string keys and values")
        previous = _optional(data, "previous_response_id", str, "a string (the id of a stored response)")
        _optional(data, "include", list, "an array of strings")
        truncation = data.get("truncation")
        if truncation not in (None, "auto", "disabled"):
            raise InvalidRequestError("truncation must be 'auto' or 'disabled'", param="truncation")

        keep = keeper(gw)
        key_id = req.caller.key_id
        history: list[dict[str, Any]] = []
        if previous:
            chain = await keep.chain(previous, key_id)
            if chain is None:
                raise NotFound(f"Previous response with id '{previous}' not found.", param="previous_response_id")
            for link in chain:
                history += link.input + link.output
        raw_input = data.get("input")
        if raw_input is None and (previous or (native_ok and data.get("prompt") is not None)):
            own: list[dict[str, Any]] = []  # (the input is the conversation so far, or OpenAI's stored prompt)
        elif raw_input is None:
            raise InvalidRequestError("input is required", param="input")
        else:
            own = input_items(raw_input, native_ok=native_ok)

        namespaces: dict[str, str] = {}
        messages: list[dict[str, Any]] = []
        if instructions:
            messages.append({"role": "system", "content": instructions})
        messages += to_messages(history + own)
        if not messages:  # only items a native upstream takes: the chat side is an estimate's input only
            messages.append({"role": "user", "content": ""})
        try:
            params = self._params(data, stream, native_ok, namespaces)
            creq = chat_request(model, messages, stream=stream, params=params)
        except InvalidRequestError as exc:
            if exc.param in _CHAT_NAMES:  # named as the caller sent it
                exc.message = exc.message.replace(exc.param, _CHAT_NAMES[exc.param], 1)
                exc.param = _CHAT_NAMES[exc.param]
            raise
        if any_native:  # (built only for a model with a deployment that takes it)
            body = {k: v for k, v in data.items() if k not in _NOT_FORWARDED}
            if history:
                caller_input = (
                    [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input or []
                )
                body["input"] = replay(history) + caller_input
            body["store"] = False
            creq.native = NativeBody(API, body)

        echo = {
            "instructions": instructions,
            "tools": data.get("tools") or [],
            "tool_choice": data.get("tool_choice") or "auto",
            "parallel_tool_calls": data.get("parallel_tool_calls") is not False,
            "temperature": data.get("temperature"),
            "top_p": data.get("top_p"),
            "max_output_tokens": data.get("max_output_tokens"),
            "previous_response_id": previous,
            "reasoning": data.get("reasoning"),
            "text": data.get("text") or {"format": {"type": "text"}},
            "truncation": truncation or "disabled",
            "user": data.get("user"),
            "metadata": metadata or {},
            "store": store,
        }
        ctx = ResponseContext(
            new_id("resp"),
            int(time.time()),
            model,
            echo,
            with_ids(own) if store else own,  # (ids only for what is kept and listed)
            previous_id=previous,
            key_id=key_id,
            keeper=keep if store else None,
            namespaces=namespaces,
        )
        return Call(model, creq, {"ctx": ctx})

    @staticmethod
    def _refuse(data: dict[str, Any], native_ok: bool) -> None:
        if data.get("background"):
            raise InvalidRequestError(
                "background responses are not supported by the gateway; stream instead", param="background"
            )
        if data.get("conversation") is not None:
            raise InvalidRequestError(
                "conversation is not supported by the gateway; use previous_response_id", param="conversation"
            )
        if not native_ok:
            for name in sorted(_NATIVE_ONLY & data.keys()):
                if data[name] is not None:
                    raise InvalidRequestError(
                        f"{name} needs a model served by OpenAI's own Responses API; this one is not", param=name
                    )

    @staticmethod
    def _params(data: dict[str, Any], stream: bool, native_ok: bool, namespaces: dict[str, str]) -> dict[str, Any]:
        p: dict[str, Any] = {k: data[k] for k in _SAME if data.get(k) is not None}
        tools = data.get("tools")
        if tools is not None:
            translated = chat_tools(tools, native_ok=native_ok, namespaces=namespaces)
            if translated:
                p["tools"] = translated
        choice = data.get("tool_choice")
        if choice is not None:
            translated_choice = chat_tool_choice(choice, native_ok=native_ok)
            if translated_choice is not None and (p.get("tools") or translated_choice == "none"):
                p["tool_choice"] = translated_choice
        text = data.get("text")
        if text is not None:
            fmt = response_format(text)
            if fmt is not None:
                p["response_format"] = fmt
        if data.get("max_output_tokens") is not None:
            p["max_tokens"] = data["max_output_tokens"]
        reasoning = data.get("reasoning")
        if reasoning is not None:
            if not isinstance(reasoning, dict):
                raise InvalidRequestError("reasoning must be an object such as {'effort': 'low'}", param="reasoning")
            effort = reasoning.get("effort")
            if effort is not None:
                if not isinstance(effort, str):
                    raise InvalidRequestError("reasoning.effort must be a string", param="reasoning.effort")
                p["reasoning_effort"] = effort
        if stream:
            p["stream_options"] = {"include_usage": True}
        return p

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        ctx: ResponseContext = call.state["ctx"]
        if resp.raw is not None:  # OpenAI's own Response
            body = ctx.native(dict(resp.raw))
        else:
            output, finish = completion_output(resp)
            output = [ctx.tagged(item) for item in output]
            status, incomplete = status_of(finish)
            body = ctx.envelope(status, output, usage_of(resp.usage), incomplete=incomplete)
        ctx.prepare(body)
        return orjson.dumps(body)

    async def stored(self, resp: ChatCompletion, call: Call, req: Request, gw: Gateway) -> None:
        await call.state["ctx"].keep()

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return ResponsesStream(call.state["ctx"])


async def resource(gw: Gateway, req: Request, send: Send, rest: str) -> None:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` (``rest``: the path after
    the prefix)."""
    parts = rest.split("/")
    if len(parts) == 1 and parts[0]:
        allowed = "GET, DELETE"
    elif len(parts) == 2 and parts[0] and parts[1] == "input_items":
        allowed = "GET"
    else:
        raise NotFound(f"no route {req.method} {req.path}")
    if req.method not in allowed.split(", "):
        raise MethodNotAllowed(req.method, req.path, allowed)
    response_id = parts[0]
    keep = keeper(gw)
    key_id = req.caller.key_id
    missing = NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    if req.method == "DELETE":
        if not await keep.delete(response_id, key_id):
            raise missing
        await send_json(
            send, 200, {"id": response_id, "object": "response.deleted", "deleted": True}, request_id=req.request_id
        )
        return
    rec = await keep.get(response_id, key_id)
    if rec is None:
        raise missing
    if len(parts) == 1:
        await send_json(send, 200, rec.body, request_id=req.request_id)
        return
    await send_json(send, 200, _page(rec.input, req), request_id=req.request_id)


def _page(items: list[dict[str, Any]], req: Request) -> dict[str, Any]:
    """One page of input items: ``limit`` (1–100, default 20), ``order`` (``asc``/``desc``, default ``desc``),
    ``after`` (an item id)."""
    query = parse_qs(req.scope.get("query_string", b"").decode("latin-1"))

    def arg(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    raw_limit = arg("limit") or "20"
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3 and 1 <= int(raw_limit) <= 100):
        raise InvalidRequestError("limit must be an integer from 1 to 100", param="limit")
    limit = int(raw_limit)
    order = arg("order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be 'asc' or 'desc'", param="order")
    ordered = items if order == "asc" else items[::-1]
    start = 0
    after = arg("after")
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequestError(f"after: no input item with id {after!r:.80} in this response", param="after")
        start = ids.index(after) + 1
    page = ordered[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": start + limit < len(ordered),
    }
