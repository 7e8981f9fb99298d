"""The fault-injection suite's vocabulary: the gateway's limits, what a client may see (:data:`Outcome`), the
inbound dialects (:class:`Dialect`), a raw HTTP client that keeps every byte, and the checks.

A dialect is everything the suite knows about one inbound API of the gateway: how to ask (path and body), how to
read a whole answer, a stream and an error. Adding an API to the suite is adding one :class:`Dialect` to
:data:`DIALECTS`; the fault table runs over all of them. The table speaks OpenAI's error vocabulary (status,
``error.type``, ``error.code``); a dialect with its own (Anthropic Messages: ``{"type": "error", "error":
{"type": "overloaded_error", ...}}`` and an ``event: error``; OpenAI Responses: ``response.failed``) maps it in
:attr:`Dialect.translate`, reads its end marker in :attr:`Dialect.is_end` (``message_stop``,
``response.completed``) and its text in :attr:`Dialect.stream_text`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from modelway.testing import Fault

__all__ = [
    "Answered",
    "Broken",
    "COMMIT",
    "DBGPT",
    "DEADLINE",
    "DIALECTS",
    "Dialect",
    "EMBEDDINGS",
    "COMPLETIONS",
    "MESSAGES",
    "RESPONSES",
    "ErrorView",
    "Event",
    "FAULTY_TEXT",
    "Failed",
    "HEALTHY_TEXT",
    "MASTER_KEY",
    "MAX_ANSWER",
    "MAX_EVENT",
    "OPENAI_CHAT",
    "Outcome",
    "SENT",
    "Seen",
    "TIMEOUT",
    "check",
    "check_record",
    "events_of",
    "http_client",
    "openai_events",
    "post",
    "sse_body",
    "two_deployments",
]

MiB = 1 << 20

#: the gateway's upstream timeout (``server.timeout``): for a JSON answer, a stream's first output, every read gap
TIMEOUT = 0.2
#: no request through the gateway may take longer than this, whatever its upstream does (the idle watch notices a
#: silent stream within 1.25 x TIMEOUT; the rest is slack for a busy machine)
DEADLINE = 1.0
#: ``server.max_answer_bytes`` and ``server.max_event_bytes``
MAX_ANSWER = MiB
MAX_EVENT = 256 * 1024
MASTER_KEY = "sk-gateway-faults-master"

#: what each upstream answers by default (the simulators cut it in pieces of 4 characters)
FAULTY_TEXT = "faulty answer"
HEALTHY_TEXT = "healthy answer"
#: stream events an upstream sends before a fault "after the commit": the opening role chunk, "faul" and "ty a"
COMMIT = 3
#: the text a client must have received when such a stream breaks
SENT = "faulty a"


# ---------------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Answered:
    """200 with the whole answer of ``by`` ("faulty": the faulty upstream answered after all; "healthy": the
    gateway failed over to the healthy one)."""

    by: str


@dataclass(frozen=True, slots=True)
class Failed:
    """A clean HTTP error before anything was sent: ``status``, and ``error.type`` and ``error.code`` in the
    dialect's own format. ``retry_after``: the ``Retry-After`` header the client must get (``None``: none;
    ``"any"``: not checked). ``fails_over``: with a healthy second deployment the client gets its answer instead
    (false for errors that are the request's fault: another deployment would refuse it too)."""

    status: int
    type: str
    code: str | None
    retry_after: str | None = "any"
    fails_over: bool = True


@dataclass(frozen=True, slots=True)
class Broken:
    """A stream that failed after it committed: 200, the chunks so far (``sent``: their text; ``None``: some
    text), then exactly one error event (``status``, ``type``, ``code``), then the end of the body, and never an
    end-of-stream marker. No failover is possible any more."""

    status: int
    type: str
    code: str | None
    sent: str | None = SENT


Outcome = Answered | Failed | Broken


def two_deployments(outcome: Outcome) -> Outcome:
    """What the client sees when a healthy deployment comes after the faulty one."""
    if isinstance(outcome, Failed) and outcome.fails_over:
        return Answered("healthy")
    return outcome


# ---------------------------------------------------------------------------------------- wire


@dataclass(slots=True)
class Event:
    data: str
    event: str | None = None


def events_of(body: bytes) -> list[Event]:
    """The SSE events of ``body`` (comment-only blocks left out), independent of the gateway's own decoder."""
    out: list[Event] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data: list[str] = []
        name: str | None = None
        for line in block.decode("utf-8", errors="replace").split("\n"):
            field_, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field_ == "data":
                data.append(value)
            elif field_ == "event":
                name = value
        if data:
            out.append(Event("\n".join(data), name))
    return out


@dataclass(slots=True)
class Seen:
    """What the client saw: status, headers, every body byte, how the body ended and how long it all took."""

    status: int
    headers: httpx.Headers
    body: bytes
    #: why the body did not end properly (the connection was cut, or nothing ended it before the deadline:
    #: ``"hung"``); ``None`` when it ended properly
    cut: str | None
    elapsed: float
    request_id: str

    @property
    def sse(self) -> bool:
        return str(self.headers.get("content-type", "")).startswith("text/event-stream")

    @property
    def events(self) -> list[Event]:
        return events_of(self.body)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def describe(self) -> str:
        body = self.body[:600].decode("utf-8", errors="replace")
        return f"HTTP {self.status} after {self.elapsed:.2f}s, cut={self.cut!r}, body={body!r}"


#: for every client of the suite: building a default one loads the CA bundle (tens of ms), and the suite speaks
#: plain HTTP only
_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def http_client() -> httpx.AsyncClient:
    """An HTTP client for one test (cheap to make)."""
    return httpx.AsyncClient(verify=_TLS)


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any], *, deadline: float = DEADLINE) -> Seen:
    """POST ``body`` and read the whole answer, raw; at most ``deadline`` seconds (then ``cut="hung"``)."""
    rid = "faults-" + uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": rid}
    status, got_headers, parts, cut = 0, httpx.Headers(), [], None
    start = time.monotonic()
    try:
        async with asyncio.timeout(deadline), client.stream("POST", url, json=body, headers=headers) as r:
            status, got_headers = r.status_code, r.headers
            try:
                async for piece in r.aiter_raw():
                    parts.append(piece)
            except httpx.TransportError as exc:  # the gateway cut the connection (an unfinished chunked body)
                cut = f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        cut = "hung"
    except httpx.TransportError as exc:  # no answer at all
        cut = f"{type(exc).__name__}: {exc}"
    return Seen(status, got_headers, b"".join(parts), cut, time.monotonic() - start, rid)


# ---------------------------------------------------------------------------------------- dialects


@dataclass(frozen=True, slots=True)
class ErrorView:
    """An error as a dialect reports it, in the terms the outcomes use."""

    type: str | None
    code: str | None
    message: str
    request_id: str | None = None
    #: the HTTP status an error event claims (streams; ``None`` in a JSON error body)
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    """One inbound API of the gateway, as a client uses it."""

    name: str
    path: str
    #: builds the request body for ``model``; ``stream`` is only ever true when :attr:`streams`
    request: Callable[[str, bool], dict[str, Any]]
    #: what a whole (JSON) answer says
    answer: Callable[[Any], str]
    #: what a whole answer of the upstream ``by`` ("faulty", "healthy") says
    says: Callable[[str], str]
    #: the JSON error body → its error
    error: Callable[[Any], ErrorView]
    streams: bool = False
    #: the text a stream's events carry (errors and end markers left out)
    stream_text: Callable[[list[Event]], str] = lambda events: ""
    #: the event is the error that ends a broken stream
    stream_error: Callable[[Event], ErrorView | None] = lambda event: None
    #: the event marks the clean end of a stream
    is_end: Callable[[Event], bool] = lambda event: False
    #: embeddings: fault cases that only make sense for chat do not apply
    chat: bool = True
    #: the table's expected error (status, OpenAI ``type``, ``code``) in this dialect's own terms: the status its
    #: error events claim (``None``: they claim none), its type and its code
    translate: Callable[[int, str, str | None], tuple[int | None, str | None, str | None]] = (
        lambda status, type_, code: (status, type_, code)
    )
    #: its error bodies and events carry the request id (``error.request_id``)
    errors_name_request: bool = True
    #: the provider the rig's deployments are addressed as for this dialect (see ``fault_rig.PROVIDERS``)
    provider: str = "openai"
    #: like :attr:`translate`, for the error event that ends a broken stream (``None``: :attr:`translate`)
    translate_event: Callable[[int, str, str | None], tuple[int | None, str | None, str | None]] | None = None


def _openai_error(body: Any) -> ErrorView:
    err = body["error"]
    return ErrorView(
        err.get("type"), err.get("code"), str(err.get("message")), err.get("request_id"), err.get("status")
    )


def _openai_stream_error(event: Event) -> ErrorView | None:
    if event.data == "[DONE]":
        return None
    data = orjson.loads(event.data)
    return _openai_error(data) if isinstance(data, dict) and "error" in data else None


def _chunk_text(events: list[Event]) -> str:
    text = []
    for e in events:
        if e.data == "[DONE]":
            continue
        data = orjson.loads(e.data)
        if "error" in data:
            continue
        for choice in data.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


def _message_text(body: Any) -> str:
    return str(body["choices"][0]["message"]["content"])


def _says(by: str) -> str:
    return {"faulty": FAULTY_TEXT, "healthy": HEALTHY_TEXT}[by]


def _is_done(event: Event) -> bool:
    return event.data == "[DONE]"


def _embedding_answer(body: Any) -> str:
    data = body["data"]
    return f"{len(data)} x {len(data[0]['embedding'])}"


OPENAI_CHAT = Dialect(
    name="openai-chat",
    path="/v1/chat/completions",
    request=lambda model, stream: {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
    answer=_message_text,
    says=_says,
    error=_openai_error,
    streams=True,
    stream_text=_chunk_text,
    stream_error=_openai_stream_error,
    is_end=_is_done,
)

#: DB-GPT API v2 (dbgpt-client): the OpenAI error shape, ``delta`` chunks and ``[DONE]``
DBGPT = Dialect(
    name="dbgpt-v2",
    path="/api/v2/chat/completions",
    request=lambda model, stream: {"model": model, "messages": "hi", "stream": stream, "chat_mode": "chat_normal"},
    answer=_message_text,
    says=_says,
    error=_openai_error,
    streams=True,
    stream_text=_chunk_text,
    stream_error=_openai_stream_error,
    is_end=_is_done,
)

EMBEDDINGS = Dialect(
    name="openai-embeddings",
    path="/v1/embeddings",
    request=lambda model, stream: {"model": model, "input": ["hi"]},
    answer=_embedding_answer,
    says=lambda by: "1 x 8",  # both simulators embed alike: who answered is told by their request counts
    error=_openai_error,
    chat=False,
)


def _completion_text(events: list[Event]) -> str:
    text = []
    for e in events:
        if e.data == "[DONE]":
            continue
        data = orjson.loads(e.data)
        if "error" not in data:
            text += [str(c.get("text") or "") for c in data.get("choices") or ()]
    return "".join(text)


#: legacy text completions: OpenAI's error shape and ``[DONE]``, the text in ``choices[].text``
COMPLETIONS = Dialect(
    name="openai-completions",
    path="/v1/completions",
    request=lambda model, stream: {"model": model, "prompt": "hi", "stream": stream},
    answer=lambda body: str(body["choices"][0]["text"]),
    says=_says,
    error=_openai_error,
    streams=True,
    stream_text=_completion_text,
    stream_error=_openai_stream_error,
    is_end=_is_done,
)


def _anthropic_error(body: Any) -> ErrorView:
    err = body["error"]
    return ErrorView(err.get("type"), None, str(err.get("message")), body.get("request_id"))


def _anthropic_stream_error(event: Event) -> ErrorView | None:
    return _anthropic_error(orjson.loads(event.data)) if event.event == "error" else None


def _anthropic_text(events: list[Event]) -> str:
    text = []
    for e in events:
        if e.event == "content_block_delta":
            delta = orjson.loads(e.data)["delta"]
            if delta.get("type") == "text_delta":
                text.append(delta["text"])
    return "".join(text)


def _anthropic_type(status: int, type_: str, code: str | None) -> tuple[int | None, str | None, str | None]:
    """Anthropic's error type for the status (its events claim no status, its bodies carry no code)."""
    from modelway.server.dialects.anthropic_stream import error_type

    return None, error_type(status), None


#: Anthropic Messages: ``{"type": "error", "error": {"type", "message"}}``, ``event: error``, ``message_stop``
MESSAGES = Dialect(
    name="anthropic-messages",
    path="/v1/messages",
    request=lambda model, stream: {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    },
    answer=lambda body: "".join(b["text"] for b in body["content"] if b["type"] == "text"),
    says=_says,
    error=_anthropic_error,
    streams=True,
    stream_text=_anthropic_text,
    stream_error=_anthropic_stream_error,
    is_end=lambda event: event.event == "message_stop",
    translate=_anthropic_type,
)


def _responses_text(events: list[Event]) -> str:
    return "".join(orjson.loads(e.data)["delta"] for e in events if e.event == "response.output_text.delta")


def _responses_answer(body: Any) -> str:
    return "".join(part["text"] for item in body["output"] if item["type"] == "message" for part in item["content"])


def _responses_stream_error(event: Event) -> ErrorView | None:
    if event.event != "response.failed":
        return None
    err = orjson.loads(event.data)["response"]["error"]
    return ErrorView(None, err.get("code"), str(err.get("message")))


def _responses_failure(status: int, type_: str, code: str | None) -> tuple[int | None, str | None, str | None]:
    """``response.failed`` claims no status or type; its code is one Codex maps (a provider's 5xx, a broken
    stream: ``server_error``)."""
    return None, None, "rate_limit_exceeded" if status == 429 else "server_error"


#: OpenAI Responses: OpenAI's error shape before the stream starts, ``response.failed`` after, ``response.completed``
RESPONSES = Dialect(
    name="openai-responses",
    path="/v1/responses",
    request=lambda model, stream: {"model": model, "input": "hi", "stream": stream, "store": False},
    answer=_responses_answer,
    says=_says,
    error=_openai_error,
    streams=True,
    stream_text=_responses_text,
    stream_error=_responses_stream_error,
    is_end=lambda event: event.event == "response.completed",
    translate_event=_responses_failure,
    errors_name_request=False,
    # through the translation to chat: OpenAI itself would take these natively, and the fault servers speak chat
    provider="vllm",  # (its response.failed event names the response, not the request)
)

DIALECTS: tuple[Dialect, ...] = (OPENAI_CHAT, DBGPT, EMBEDDINGS, COMPLETIONS, MESSAGES, RESPONSES)


# ---------------------------------------------------------------------------------------- checks


def check(
    seen: Seen,
    expect: Outcome,
    dialect: Dialect,
    stream: bool,
    secrets: Sequence[str] = (),
    *,
    deadline: float = DEADLINE,
) -> None:
    """What the client saw is ``expect``, within ``deadline``, and nothing in it gives an upstream away."""
    assert seen.cut != "hung", f"hung: no complete answer within {deadline}s; {seen.describe()}"
    assert seen.elapsed < deadline, seen.describe()
    assert seen.headers.get("x-request-id") == seen.request_id, seen.describe()
    text = seen.body.decode("utf-8", errors="replace")
    for secret in secrets:
        assert secret not in text, f"the answer gives {secret!r} away: {seen.describe()}"
    if isinstance(expect, Answered):
        assert seen.status == 200 and seen.cut is None, seen.describe()
        if stream:
            assert seen.sse, seen.describe()
            events = seen.events
            assert events and dialect.is_end(events[-1]), f"no clean end: {seen.describe()}"
            assert sum(map(dialect.is_end, events)) == 1, seen.describe()
            assert not [e for e in events if dialect.stream_error(e)], seen.describe()
            assert dialect.stream_text(events) == dialect.says(expect.by), seen.describe()
        else:
            assert dialect.answer(seen.json()) == dialect.says(expect.by), seen.describe()
    elif isinstance(expect, Failed):
        assert seen.status == expect.status and seen.cut is None, seen.describe()
        assert seen.headers.get("content-type", "").startswith("application/json"), seen.describe()
        err = dialect.error(seen.json())
        _, want_type, want_code = dialect.translate(expect.status, expect.type, expect.code)
        assert (err.type, err.code) == (want_type, want_code), seen.describe()
        assert err.message, seen.describe()
        if dialect.errors_name_request:
            assert err.request_id == seen.request_id, seen.describe()
        if expect.retry_after != "any":
            assert seen.headers.get("retry-after") == expect.retry_after, seen.describe()
    else:
        assert stream, "a broken stream needs a stream request"
        assert seen.status == 200 and seen.sse, seen.describe()
        assert seen.cut is None, f"the gateway cut the connection instead of ending the stream: {seen.describe()}"
        events = seen.events
        assert events, seen.describe()
        assert not any(map(dialect.is_end, events)), f"an end marker in a broken stream: {seen.describe()}"
        errors = [i for i, e in enumerate(events) if dialect.stream_error(e)]
        assert errors == [len(events) - 1], f"not exactly one error event, last: {seen.describe()}"
        last = dialect.stream_error(events[-1])
        assert last is not None
        want = (dialect.translate_event or dialect.translate)(expect.status, expect.type, expect.code)
        assert (last.status, last.type, last.code) == want, seen.describe()
        assert last.message, seen.describe()
        if dialect.errors_name_request:
            assert last.request_id == seen.request_id, seen.describe()
        got = dialect.stream_text(events[:-1])
        if expect.sent is None:
            assert got, f"no text before the error: {seen.describe()}"
        else:
            assert got == expect.sent, seen.describe()


def check_record(record: dict[str, Any], expect: Outcome, faulty: str, healthy: str) -> None:
    """The usage record of the request says how it ended and which deployment it ended at."""
    want: tuple[int, str | None, str]
    if isinstance(expect, Answered):
        want = (200, None, healthy if expect.by == "healthy" else faulty)
    else:
        want = (expect.status, expect.code or expect.type, faulty)
    assert (record["status"], record["error"], record["deployment"]) == want, record
    if isinstance(expect, Broken):  # cut before the provider reported usage: charged an estimate of what went out
        assert record["estimated"] and record["completion_tokens"] > 0, record


# ---------------------------------------------------------------------------------------- exact upstream bodies


@dataclass(frozen=True, slots=True)
class _Chunks:
    """OpenAI stream events written by hand, for the malformed streams the simulators have no fault for."""

    model: str = "sim-faulty"
    created: int = 1_700_000_000

    def event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": "chatcmpl-faults",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"


def openai_events(*, start: bool = True, finish: bool = False, usage: bool = False, done: bool = False) -> bytes:
    """OpenAI stream events: with ``start`` the opening role chunk, "faul" and "ty a" (what a stream broken after
    :data:`COMMIT` events has sent); with ``finish`` the rest of :data:`FAULTY_TEXT` and the finishing chunk;
    ``usage`` a usage chunk and ``done`` the ``[DONE]`` marker."""
    c = _Chunks()
    out = b""
    if start:
        out += c.event({"role": "assistant", "content": ""}) + c.event({"content": "faul"})
        out += c.event({"content": "ty a"})
    if finish:
        out += c.event({"content": "nswe"}) + c.event({"content": "r"}) + c.event({}, "stop")
    if usage:
        u = {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}
        out += b"data: " + orjson.dumps({"id": "chatcmpl-faults", "choices": [], "usage": u}) + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return out


def sse_body(body: bytes) -> Fault:
    """A 200 ``text/event-stream`` answer of exactly ``body``, ended properly."""
    return Fault.content_type("text/event-stream", body)
