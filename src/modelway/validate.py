"""Checks on a caller's chat and embedding input, shared by the library and the gateway.

Bad input raises :class:`~modelway.errors.InvalidRequestError` naming the field by its exact path
(``messages[2].tool_calls[0].function.arguments``), before any I/O.

Messages are checked in the OpenAI Chat Completions shape, field by field, and only the fields that shape defines:
other keys inside a message are the caller's business and travel to the provider unchanged. A field set to
``null`` counts as absent (except ``content``, whose rules depend on the role). What is checked:

* ``role``: system, developer, user, assistant, tool or function.
* ``content``: a string (``""`` too), or a non-empty array of content parts: objects with a string ``type``;
  ``text`` parts need a string ``text``, ``image_url`` parts an object ``image_url`` with a string ``url``; other
  part types (``input_audio``, ``file``, a provider's own) pass as they are. ``null`` (or absent, or ``[]``) only
  in an assistant message that carries ``tool_calls``, ``function_call``, ``refusal`` or ``audio``, and in a
  ``function`` message.
* ``name``, ``refusal``, ``reasoning_content``: strings; ``tool`` messages need a string ``tool_call_id``,
  ``function`` messages a string ``name``.
* ``tool_calls``: an array of objects with an optional string ``id`` and ``type`` ``"function"`` (the default)
  with ``function: {name: string, arguments: string}``, or ``"custom"`` with ``custom: {name, input}``;
  ``function_call``: ``{name: string, arguments: string}``.

The invariant: a request this module accepts can be estimated (:func:`modelway.usage.estimate.prompt_chars`)
and translated by every adapter without an untyped exception. :func:`check_json_depth` is the one check the
gateway makes on the whole parsed body (see there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .errors import InvalidRequestError
from .types import CHAT_PARAMS, ChatRequest, EmbeddingRequest, Message

__all__ = [
    "MAX_JSON_DEPTH",
    "REASONING_EFFORTS",
    "chat_body_request",
    "chat_request",
    "check_json_depth",
    "embedding_request",
    "json_kind",
    "normalize_messages",
]

#: the values of ``reasoning_effort`` (OpenAI's, plus DeepSeek's ``max``); ``none`` turns thinking off
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
#: the roles whose message needs nothing but a role and a string content
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_NUMERIC = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
#: integer parameters and their inclusive ranges. The bounds keep every accepted value serialisable (orjson writes
#: 64-bit integers only) and sane: OpenAI's own limits where it has them (``n`` ≤ 128, ``top_logprobs`` 0–20),
#: a signed 64-bit ``seed``, and token limits that fit the 32-bit integers providers parse them into.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "max_tokens": (1, 2**31 - 1),
    "max_completion_tokens": (1, 2**31 - 1),
    "n": (1, 128),
    "seed": (-(2**63), 2**63 - 1),
    "top_logprobs": (0, 20),
}
_INTS = tuple(_INT_RANGES)
#: the parameters :func:`_check_params` checks besides the numeric ones, and all it checks
_OTHER_CHECKED = frozenset(
    {
        "stop",
        "tools",
        "tool_choice",
        "stream_options",
        "response_format",
        "logit_bias",
        "logprobs",
        "parallel_tool_calls",
        "reasoning_effort",
        "user",
    }
)
#: every numeric parameter → its inclusive bounds and whether it takes integers only
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    **{name: (lo, hi, False) for name, (lo, hi) in _NUMERIC.items()},
    **{name: (lo, hi, True) for name, (lo, hi) in _INT_RANGES.items()},
}

#: How deep a JSON value the gateway accepts (a container is one level; the body itself is level 1).
#:
#: orjson parses 1024 levels but writes only 254, so a body between the two parsed fine and then failed (a 500) when
#: the adapter serialised the upstream request. Adapters put caller values a few levels deeper than the caller did
#: (DashScope moves the messages under ``input`` and the parameters under ``parameters``; Anthropic decodes tool call
#: arguments into objects): 128 leaves half of orjson's writer limit as headroom for that, and is still far beyond
#: what any real request nests (a deep JSON schema is a dozen levels).
MAX_JSON_DEPTH = 128

_CONTAINERS = (dict, list, tuple)


# -- describing values in messages ---------------------------------------------------------------------------------


def json_kind(v: Any) -> str:
    """The JSON type of ``v``, for messages ("got a number")."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return f"a {type(v).__name__}"


_kind = json_kind


def _show(v: Any) -> str:
    """A short rendering of a caller's value, cheap whatever its size (a 5000-digit integer cannot even be printed;
    a container is only named)."""
    if isinstance(v, str):
        return repr(v) if len(v) <= 30 else repr(v[:27]) + "..."
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return "an integer beyond 64 bits"
    if v is None or isinstance(v, bool | int | float):
        return repr(v)
    return _kind(v)


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param} {message}", param=param)


# -- messages -------------------------------------------------------------------------------------------------------


def normalize_messages(messages: str | list[Message] | Any) -> list[Message]:
    """A plain string becomes one user message; a list must hold messages of the OpenAI shape (see the module
    docstring for the rules). Returns the messages themselves: nothing inside them is changed or copied."""
    if isinstance(messages, str):
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        return [{"role": "user", "content": messages}]
    if type(messages) is list:
        # the common message, ``{"role": "system"|"developer"|"user"|"assistant", "content": "<text>"}`` and nothing
        # else, passes every check below: a list of only those is returned without building a path for each
        for m in messages:
            if type(m) is not dict or len(m) != 2 or type(m.get("content")) is not str:
                break
            role = m.get("role")
            if type(role) is not str or role not in _PLAIN_ROLES:
                break
        else:
            if messages:
                return messages
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of messages or a string", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be an object, not {_kind(m)}", param=f"messages[{i}]")
        _check_message(m, f"messages[{i}]")
    return messages if all(type(m) is dict for m in messages) else [dict(m) for m in messages]


def _check_message(m: Mapping[str, Any], at: str) -> None:
    role = m.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise _fail(
            f"{at}.role",
            f"must be one of system, developer, user, assistant, tool, function (got {_show(role)})",
        )
    for key in ("name", "refusal", "reasoning_content"):
        v = m.get(key)
        if v is not None and not isinstance(v, str):
            raise _fail(f"{at}.{key}", f"must be a string, not {_kind(v)}")
    tool_calls = m.get("tool_calls")
    if tool_calls is not None:
        _check_tool_calls(tool_calls, f"{at}.tool_calls")
    function_call = m.get("function_call")
    if function_call is not None:
        _check_function(function_call, f"{at}.function_call")
    audio = m.get("audio")
    if audio is not None and not isinstance(audio, dict):
        raise _fail(f"{at}.audio", f"must be an object such as {{'id': '...'}}, not {_kind(audio)}")

    content = m.get("content")
    if isinstance(content, str):
        pass
    elif content is None or (isinstance(content, list) and not content):
        without_content = (
            role == "assistant"
            and (bool(tool_calls) or function_call is not None or m.get("refusal") is not None or audio is not None)
        ) or (role == "function" and "content" in m)
        if not without_content:
            if "content" not in m:
                raise _fail(f"{at}.content", "is required")
            if content is None:
                raise _fail(
                    f"{at}.content",
                    "must not be null (only an assistant message with tool_calls, function_call, refusal or audio, "
                    "and a function message, may leave it out)",
                )
            raise _fail(f"{at}.content", "must not be an empty array: give a string or at least one content part")
    elif isinstance(content, list):
        if role == "function":
            raise _fail(f"{at}.content", "must be a string or null in a function message")
        for j, part in enumerate(content):
            _check_part(part, f"{at}.content[{j}]")
    else:
        raise _fail(f"{at}.content", f"must be a string or an array of content parts, not {_kind(content)}")

    if role == "tool":
        tool_call_id = m.get("tool_call_id")
        if not isinstance(tool_call_id, str):
            raise _fail(
                f"{at}.tool_call_id",
                "is required in a tool message and must be a string (the id of the tool call this answers)"
                if tool_call_id is None
                else f"must be a string, not {_kind(tool_call_id)}",
            )
    elif role == "function" and not isinstance(m.get("name"), str):
        raise _fail(f"{at}.name", "is required in a function message (the name of the function that answered)")


def _check_part(part: Any, at: str) -> None:
    if not isinstance(part, dict):
        raise _fail(at, f'must be a content part object such as {{"type": "text", "text": "..."}}, not {_kind(part)}')
    kind = part.get("type")
    if not isinstance(kind, str):
        raise _fail(f"{at}.type", f"must be a string such as 'text' or 'image_url', not {_kind(kind)}")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise _fail(f"{at}.text", f"must be a string in a text part, not {_kind(text)}")
    elif kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise _fail(f"{at}.image_url", f"must be an object such as {{'url': '...'}}, not {_kind(image)}")
        if not isinstance(image.get("url"), str):
            raise _fail(
                f"{at}.image_url.url", f"must be a string (an https or data: URL), not {_kind(image.get('url'))}"
            )


def _check_tool_calls(calls: Any, at: str) -> None:
    if not isinstance(calls, list):
        raise _fail(at, f"must be an array of tool calls, not {_kind(calls)}")
    for j, call in enumerate(calls):
        here = f"{at}[{j}]"
        if not isinstance(call, dict):
            raise _fail(here, f"must be a tool call object, not {_kind(call)}")
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise _fail(f"{here}.id", f"must be a string, not {_kind(call_id)}")
        kind = call.get("type")
        if kind is None or kind == "function":
            _check_function(call.get("function"), f"{here}.function")
        elif kind == "custom":
            custom = call.get("custom")
            if not isinstance(custom, dict):
                raise _fail(f"{here}.custom", f"must be an object with a name and an input, not {_kind(custom)}")
            for key in ("name", "input"):
                if not isinstance(custom.get(key), str):
                    raise _fail(f"{here}.custom.{key}", f"must be a string, not {_kind(custom.get(key))}")
        else:
            raise _fail(f"{here}.type", f"must be 'function' or 'custom' (got {_show(kind)})")


def _check_function(fn: Any, at: str) -> None:
    """``{"name": str, "arguments": str}``: a tool call's ``function``, or a legacy ``function_call``."""
    if not isinstance(fn, dict):
        raise _fail(at, f"must be an object with a name and arguments, not {_kind(fn)}")
    name = fn.get("name")
    if not isinstance(name, str):
        raise _fail(f"{at}.name", f"must be a string (the function's name), not {_kind(name)}")
    args = fn.get("arguments")
    if not isinstance(args, str):
        raise _fail(f"{at}.arguments", f'must be a string (the arguments as JSON text, e.g. "{{}}"), not {_kind(args)}')
    # adapters that speak another protocol (Anthropic) decode the arguments into an object of the upstream body, so
    # their nesting counts too; fewer brackets than the limit cannot nest that deep, so typical arguments cost two
    # counts
    if args.count("[") + args.count("{") > MAX_JSON_DEPTH:
        try:
            value = orjson.loads(args)
        except orjson.JSONDecodeError:
            return  # not JSON: sent on as text
        if isinstance(value, _CONTAINERS) and not _within(value, MAX_JSON_DEPTH - 1):
            raise _fail(f"{at}.arguments", f"holds JSON nested more than {MAX_JSON_DEPTH} levels deep")


# -- parameters -----------------------------------------------------------------------------------------------------


def _check_params(params: dict[str, Any]) -> None:
    """Check the OpenAI parameters in ``params``; integral floats of integer parameters become ints in place.
    Only the groups of checks whose parameters are present run, and the numeric ones first in one pass over
    ``params`` that only looks: a value of the right type within its bounds is all most requests carry. Anything
    else runs the ordered checks, so which error a request with several bad values gets is unchanged."""
    numbers = others = False
    for name, v in params.items():
        bounds = _BOUNDS.get(name)
        if bounds is None:
            if name in _OTHER_CHECKED:
                others = True
            continue
        kind = type(v)
        if not ((kind is int or (kind is float and not bounds[2])) and bounds[0] <= v <= bounds[1]):
            numbers = True
    if numbers:
        _check_numbers(params)
    if others:
        _check_others(params)


def _check_numbers(params: dict[str, Any]) -> None:
    """The numeric parameters, in their order: the first bad one raises; integral floats of integer parameters
    become ints."""
    for name, (lo, hi) in _NUMERIC.items():
        v = params.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidRequestError(f"{name} must be a number", param=name)
        if not lo <= v <= hi:
            raise InvalidRequestError(f"{name} must be between {lo:g} and {hi:g} (got {_show(v)})", param=name)
    for name, (ilo, ihi) in _INT_RANGES.items():
        v = params.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
            raise InvalidRequestError(f"{name} must be an integer", param=name)
        # compared before int() (int(1e300) would be a 1000-bit integer); a float past 2**53 is not exact
        # (orjson reads -2**63-1 as a float that rounds into range)
        if not ilo <= v <= ihi or (isinstance(v, float) and abs(v) >= 2**53):
            raise InvalidRequestError(f"{name} must be an integer from {ilo} to {ihi} (got {_show(v)})", param=name)
        if isinstance(v, float):  # JSON 16.0 is the integer 16
            params[name] = int(v)


def _check_others(params: dict[str, Any]) -> None:
    """The parameters other than the numeric ones (:data:`_OTHER_CHECKED`), in their order."""
    stop = params.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidRequestError("stop must be a string or a list of strings", param="stop")
    tools = params.get("tools")
    if tools is not None:
        _check_tools(tools)
    choice = params.get("tool_choice")
    if choice is not None:
        _check_tool_choice(choice)
    for name in ("stream_options", "response_format", "logit_bias"):
        v = params.get(name)
        if v is not None and not isinstance(v, Mapping):
            raise InvalidRequestError(f"{name} must be an object", param=name)
    for name in ("logprobs", "parallel_tool_calls"):
        v = params.get(name)
        if v is not None and not isinstance(v, bool):
            raise InvalidRequestError(f"{name} must be true or false", param=name)
    effort = params.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequestError(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)} (got {_show(effort)})",
            param="reasoning_effort",
        )
    user = params.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequestError(f"user must be a string, not {_kind(user)}", param="user")
    include_usage = (params.get("stream_options") or {}).get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise InvalidRequestError(
            "stream_options.include_usage must be true or false", param="stream_options.include_usage"
        )


def _check_tools(tools: Any) -> None:
    if not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        # an entry that is no object is reported as "tools", as it always was (the gateway's tests pin it)
        raise InvalidRequestError("tools must be a list of objects", param="tools")
    for i, t in enumerate(tools):
        at = f"tools[{i}]"
        kind = t.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _fail(f"{at}.type", f"must be a string such as 'function', not {_kind(kind)}")
        if kind == "function" or (kind is None and "function" in t):
            fn = t.get("function")
            if not isinstance(fn, dict):
                raise _fail(f"{at}.function", f"must be an object with the function's name, not {_kind(fn)}")
            if not isinstance(fn.get("name"), str):
                raise _fail(f"{at}.function.name", f"must be a string, not {_kind(fn.get('name'))}")
            schema = fn.get("parameters")
            if schema is not None and not isinstance(schema, dict):
                raise _fail(f"{at}.function.parameters", f"must be a JSON schema object, not {_kind(schema)}")
        elif kind is None and not isinstance(t.get("name"), str):
            # neither an OpenAI tool nor a provider's own ({"name", "input_schema"} for Anthropic)
            raise _fail(f"{at}.type", "is required (for example 'function', with a function object)")


def _check_tool_choice(choice: Any) -> None:
    if isinstance(choice, str):
        return
    if not isinstance(choice, dict):
        raise InvalidRequestError(
            f"tool_choice must be a string ('auto', 'none', 'required') or an object, not {_kind(choice)}",
            param="tool_choice",
        )
    kind = choice.get("type")
    if not isinstance(kind, str):
        raise _fail("tool_choice.type", f"must be a string such as 'function', not {_kind(kind)}")
    if kind == "function":
        fn = choice.get("function")
        if not isinstance(fn, dict):
            raise _fail("tool_choice.function", f"must be an object with the function's name, not {_kind(fn)}")
        if not isinstance(fn.get("name"), str):
            raise _fail("tool_choice.function.name", f"must be a string, not {_kind(fn.get('name'))}")


# -- nesting depth --------------------------------------------------------------------------------------------------


def check_json_depth(obj: Any, limit: int = MAX_JSON_DEPTH, param_root: str = "") -> None:
    """Raise :class:`InvalidRequestError` if ``obj`` nests containers (objects, arrays) more than ``limit`` levels
    deep, counting ``obj`` itself as level 1 (an empty container is a level too). ``param`` is the path of the first
    container too deep, under ``param_root``: ``"messages[0].content[0][0]..."``.

    The gateway calls it on every parsed request body (why the limit exists: :data:`MAX_JSON_DEPTH`), so it is
    built to cost about as much as one more look at each container: strings, however long, are never read, and long
    arrays of scalars (token ids) are checked at C speed. Measured: ~1 µs for a 2 KB chat body, ~0.4 ms for a 200 KB
    body that is mostly a big tools schema (orjson takes as long to parse it). The recursion is bounded by ``limit``,
    which must therefore stay well below the interpreter's recursion limit.
    """
    if not 0 < limit <= 512:
        raise ValueError(f"limit must be from 1 to 512, not {limit}")
    if not isinstance(obj, _CONTAINERS) or _within(obj, limit - 1):
        return
    param = param_root + "".join(_deep_path(obj, limit - 1) or ())
    if param.startswith("."):
        param = param[1:]
    where = param or "the request body"
    raise InvalidRequestError(
        f"{where} is nested too deeply: JSON values may nest at most {limit} levels", param=param or None
    )


#: scalar types orjson parses into; an array holding only these is checked without a Python loop
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _within(obj: Any, budget: int) -> bool:
    """Whether the containers inside the container ``obj`` nest at most ``budget`` more levels (the fast path)."""
    if isinstance(obj, dict):
        values: Iterable[Any] = obj.values()
    else:
        values = obj
        if len(obj) > 16 and _SCALARS.issuperset(map(type, obj)):
            return True
    for v in values:
        if type(v) is str:
            continue
        # an empty container is one level: deep enough only where no level is left
        if isinstance(v, _CONTAINERS) and (budget == 0 or (v and not _within(v, budget - 1))):
            return False
    return True


def _deep_path(obj: Any, budget: int) -> list[str] | None:
    """The path from ``obj`` down to the first container nested more than ``budget`` levels below it, as segments
    (``".key"``, ``"[3]"``); ``None`` if there is none. Only the error path runs this."""
    is_dict = isinstance(obj, dict)
    for key, v in obj.items() if is_dict else enumerate(obj):
        if not isinstance(v, _CONTAINERS):
            continue
        rest = [] if budget == 0 else _deep_path(v, budget - 1)
        if rest is not None:
            segment = ("." + (key[:40] if isinstance(key, str) else _show(key))) if is_dict else f"[{key}]"
            return [segment, *rest]
    return None


# -- requests -------------------------------------------------------------------------------------------------------


def chat_request(
    model: str,
    messages: str | list[Message],
    *,
    stream: bool = False,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ChatRequest:
    """Build a :class:`ChatRequest`: OpenAI parameters go to ``params`` (``None`` values are left out, as the
    OpenAI SDK does), anything else to ``extra`` (sent to the provider unchanged). OpenAI parameters a library
    caller puts in ``extra`` get the same checks, since they reach the adapter under the same names.

    Nesting depth is not checked here: the gateway checks each whole body with :func:`check_json_depth` as it
    parses it (a library caller's Python values nested deeper than orjson writes fail in ``orjson.dumps``).
    """
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required", param="model")
    p: dict[str, Any] = {}
    x: dict[str, Any] = dict(extra or {})
    _split((params or {}).items(), _NOTHING, p, x)
    _check_params(p)
    if extra:
        named = {k: v for k, v in x.items() if k in CHAT_PARAMS and v is not None}
        if named:
            _check_params(named)
            x.update(named)
    return ChatRequest(model, normalize_messages(messages), stream, p, x)


def chat_body_request(
    model: str, messages: Any, stream: bool, body: Mapping[str, Any], skip: frozenset[str]
) -> ChatRequest:
    """:func:`chat_request` for a parsed request body whose other fields (``skip``: ``model``, ``messages``,
    ``stream``) were taken already and ``model`` checked: the rest of ``body`` is split into OpenAI parameters and
    extras in one pass (``None`` values left out), then checked as :func:`chat_request` checks them."""
    p: dict[str, Any] = {}
    x: dict[str, Any] = {}
    _split(body.items(), skip, p, x)
    _check_params(p)
    return ChatRequest(model, normalize_messages(messages), stream, p, x)


_NOTHING: frozenset[str] = frozenset()


def _split(
    items: Iterable[tuple[str, Any]], skip: frozenset[str], params: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Put each of ``items`` (but ``None`` values and the names in ``skip``) into ``params`` when it is an OpenAI
    parameter, else into ``extra``."""
    for k, v in items:
        if v is None or k in skip:
            continue
        if k in CHAT_PARAMS:
            params[k] = v
        else:
            extra[k] = v


def embedding_request(model: str, input: str | list[str], params: Mapping[str, Any] | None = None) -> EmbeddingRequest:
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required", param="model")
    if isinstance(input, str):
        ok = bool(input)
    else:
        ok = isinstance(input, list) and bool(input) and all(isinstance(s, str) for s in input)
    if not ok:
        raise InvalidRequestError("input must be a non-empty string or list of strings", param="input")
    return EmbeddingRequest(model=model, input=input, params={k: v for k, v in (params or {}).items() if v is not None})
