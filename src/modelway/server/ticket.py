"""A :class:`Ticket` travels with one admitted request and is finished exactly once, however the request ends.

Finishing frees the key's place in flight, adds the tokens and cost to its limits, observes the metrics and hands a
usage record to the ledger. A stream that ends before the provider reported its usage (the caller left, or the
upstream failed half-way) is charged an estimate from the text that went through, marked as estimated, rather than
nothing: a caller must not be able to use a budget for free by hanging up before the last chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import TYPE_CHECKING

from .. import tracing
from ..errors import GatewayShutdownError, ModelwayError
from ..limits.base import LimiterUnavailableError, Permit
from ..router import Deployment
from ..types import ChatCompletionChunk, Message, Usage
from ..usage.estimate import estimate_tokens, prompt_chars
from ..usage.records import RecordWithBodies, UsageRecord, new_record_id
from .disconnect import ClientGone
from .errors import error_payload
from .exchange import CURRENT, Exchange
from .http import Request, Send, json_start
from .metrics import UNKNOWN_MODEL
from .request_log import clip_body
from .streaming import stream_sse

if TYPE_CHECKING:
    from ..auth.authenticator import Caller
    from ..usage.ledger import Ledger
    from .control import ControlPlane
    from .dialects.base import Dialect, StreamRenderer

__all__ = ["PROBES", "Ticket", "key_name", "outcome", "settle_exchange"]

#: the request log's key name of the master key
MASTER_NAME = "(master)"


def key_name(caller: Caller) -> str | None:
    """What the request log calls the caller: its key's name, ``(master)``, or nothing (no key)."""
    return caller.key.name if caller.key is not None else MASTER_NAME if caller.admin else None


#: paths of probes and scrapers: their answered requests are not logged (``request_log.skip_probes``)
PROBES = frozenset({"/health", "/health/liveness", "/health/readiness", "/metrics", "/openapi.json"})

log = logging.getLogger("modelway.server")


def outcome(exc: BaseException, aborting: bool = False) -> tuple[int, str | None]:
    """The HTTP status and error code a request ending with ``exc`` is recorded with (``aborting``: the app is
    cancelling what is still in flight at its shutdown deadline)."""
    if aborting and isinstance(exc, asyncio.CancelledError | GeneratorExit):
        exc = GatewayShutdownError()  # ended by the shutdown's abort (a stream closed by its pump: GeneratorExit)
    if isinstance(exc, ModelwayError):
        status, body, _ = error_payload(exc, None)
        return status, body["error"]["code"] or body["error"]["type"]
    if isinstance(exc, ClientGone | asyncio.CancelledError | GeneratorExit):
        return 499, "client_gone"
    return 500, "internal_error"


class Ticket:
    """One admitted request; the router sets ``deployment`` (a ticket is a :class:`~modelway.router.Trace`).

    Non-streaming handlers use it as an async context manager around everything after ``begin``: leaving the
    block normally finishes it with ``usage`` (set by the handler), an exception fails it.
    """

    __slots__ = (
        "plane",
        "request_id",
        "key_id",
        "model",
        "endpoint",
        "stream",
        "ts",
        "start",
        "permit",
        "deployment",
        "ttft",
        "in_flight",
        "settled",
        "done",
        "tokens",
        "cost",
        "usage",
        "messages",
        "ascii_chars",
        "other_chars",
        "attempts",
        "fallback",
        "exchange",
        "key_name",
        "error_type",
        "answer_body",
    )

    def __init__(
        self, plane: ControlPlane, request_id: str, key_id: str | None, model: str, endpoint: str, stream: bool
    ) -> None:
        self.plane = plane
        self.request_id = request_id
        self.key_id = key_id
        self.model = model
        self.endpoint = endpoint
        self.stream = stream
        self.ts = time.time()
        self.start = time.perf_counter()
        self.permit: Permit | None = None
        self.deployment: Deployment | None = None
        #: streams: seconds until the upstream's first output (sent on to the caller at once)
        self.ttft: float | None = None
        self.in_flight = True
        #: counted (metrics, usage record), and finished (counted and its limits released)
        self.settled = False
        self.done = False
        #: what was settled, for the limiter's release
        self.tokens = 0
        self.cost = 0.0
        #: what the provider reported; set by the handler before it answers
        self.usage: Usage | None = None
        #: the request's messages, to estimate prompt tokens if the provider never reports usage
        self.messages: list[Message] | None = None
        self.ascii_chars = 0
        self.other_chars = 0
        #: set by the router: upstream requests made for this one (retries, failovers, hedges), and the model it
        #: fell back to (``None``: the one asked for)
        self.attempts = 0
        self.fallback: str | None = None
        #: the HTTP exchange this ticket admitted (the request log's and the trace's view of it)
        self.exchange: Exchange | None = CURRENT.get()
        if self.exchange is not None:
            self.exchange.ticket = self
        #: the virtual key's name (the control plane sets it), the class of the error the request ended with, and
        #: the whole answer's body when the request log keeps bodies
        self.key_name: str | None = None
        self.error_type: str | None = None
        self.answer_body: bytes | None = None

    def answer_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of an answer: the key's rate limits, and what the router did (``x-modelway-deployment``,
        ``-attempts``, ``-fallback``)."""
        out = self.rate_headers()
        dep = self.deployment
        if dep is not None:
            out.append((b"x-modelway-deployment", dep.address_pair[1]))
        if self.attempts:
            out.append((b"x-modelway-attempts", _number(self.attempts)))
        if self.fallback is not None:
            out.append((b"x-modelway-fallback", self.fallback.encode("utf-8", "replace")))
        return out

    def rate_headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers for a key with an rpm or tpm limit (what was left at admission)."""
        p = self.permit
        if p is None:
            return []
        out: list[tuple[bytes, bytes]] = []
        reset = _duration(p.reset).encode()
        limits = p.limits
        rpm, left = limits.rpm, p.remaining_requests
        if rpm is not None and left is not None:
            out.append((b"x-ratelimit-limit-requests", _number(rpm)))
            out.append((b"x-ratelimit-remaining-requests", str(left).encode() if left > 0 else b"0"))
            out.append((b"x-ratelimit-reset-requests", reset))
        tpm, left = limits.tpm, p.remaining_tokens
        if tpm is not None and left is not None:
            out.append((b"x-ratelimit-limit-tokens", _number(tpm)))
            out.append((b"x-ratelimit-remaining-tokens", str(left).encode() if left > 0 else b"0"))
            out.append((b"x-ratelimit-reset-tokens", reset))
        return out

    async def answer(self, req: Request, send: Send, usage: Usage | None, payload: bytes) -> None:
        """Send a whole JSON answer, the request counted first: no answered request goes unrecorded."""
        self.usage = usage
        if self.plane.body_cap is not None:
            self.answer_body = payload
        self.settle(200, usage)
        # (send_json's two messages, without its coroutine)
        await send(json_start(200, payload, req.request_id, self.answer_headers()))
        await send({"type": "http.response.body", "body": payload})

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.finish(200, self.usage)
        else:
            await self.fail(exc)

    def _estimate(self, status: int) -> Usage | None:
        """Usage estimated from the text, when the provider never reported it: a stream cut after its first output
        (prompt and the output that went through), or a request whose caller left while the provider worked on it
        (the prompt: providers bill it). A request the provider refused is not charged."""
        if self.deployment is None or (self.ttft is None and status != 499):
            return None
        completion = estimate_tokens(self.ascii_chars, self.other_chars)
        prompt = estimate_tokens(*prompt_chars(self.messages or []))
        return Usage.of(prompt, completion) if prompt or completion else None

    def settle(self, status: int = 200, usage: Usage | None = None, error: str | None = None) -> None:
        """Count the request once (later calls do nothing): metrics, and the usage record, which the ledger has on
        disk when this returns. Handlers settle before they send the last byte of an answer, so that no answered
        request goes unrecorded, even if the process is killed a moment later. Never raises: a fault in counting is
        logged, and the rest of the counting still happens."""
        if self.settled:
            return
        self.settled = True
        plane = self.plane
        elapsed = time.perf_counter() - self.start
        estimated = False
        if usage is None:
            usage = self.usage
            if usage is None:
                try:
                    usage = self._estimate(status)
                except Exception:  # a bug of ours: charge nothing rather than leave the ticket half-finished
                    log.exception("request %s: could not estimate its usage", self.request_id)
                estimated = usage is not None
        if usage is not None:
            prompt, completion, total = usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
        else:
            prompt = completion = total = 0
        self.tokens = total
        dep = self.deployment
        price = dep.price if dep is not None else None
        self.cost = cost = price.cost(prompt, completion) if price is not None else 0.0
        m = plane.metrics
        ttft = self.ttft
        fallback = self.fallback
        if m is not None:
            if self.in_flight:
                self.in_flight = False
                m.in_flight -= 1
            try:
                model = self.model
                m.observe(
                    model if model in plane.labels else plane.label(model, dep),
                    self.endpoint,
                    status,
                    elapsed,
                    ttft,
                    prompt,
                    completion,
                    cost,
                    self.attempts,
                    plane.label(fallback, None) if fallback is not None else None,
                )
            except Exception:
                log.exception("request %s: could not count its metrics", self.request_id)
        ex = self.exchange
        span = ex.span if ex is not None else None
        if plane.ledger is None and plane.request_log is None and span is None:
            return
        # (positionally, in the order of the fields: records.py makes sure it is theirs)
        record = UsageRecord(
            self.ts,
            _clean(self.request_id),
            self.key_id,
            _clean(self.model),
            dep.address if dep is not None else None,
            self.endpoint,
            self.stream,
            prompt,
            completion,
            total,
            cost,
            status,
            error,
            elapsed * 1000.0,
            ttft * 1000.0 if ttft is not None else None,
            estimated,
            self.attempts,
            _clean(fallback) if fallback is not None else None,
            new_record_id(),
        )
        req = ex.req if ex is not None else None
        request_body = response_body = None
        if plane.body_cap is not None:
            request_body, response_body = _clip(
                plane.body_cap, req.kept_body if req is not None else None, self.answer_body
            )
        if plane.ledger is not None:
            _to_ledger(plane.ledger, record, request_body, response_body)
        if plane.request_log is not None:
            plane.request_log.write(
                record,
                key_name=self.key_name,
                error_type=self.error_type,
                method=req.method if req is not None else None,
                path=req.path if req is not None else None,
                request_body=request_body,
                response_body=response_body,
            )
        if span is not None:
            try:
                tracing.request_done(span, record, self.error_type)
            except Exception:
                log.exception("request %s: could not annotate its trace", self.request_id)

    async def release(self) -> None:
        """Give the key's place in flight back and add the settled tokens and cost to its limits (once)."""
        permit, self.permit = self.permit, None
        limiter = self.plane.limiter
        if permit is None or limiter is None:
            return
        try:
            await limiter.release(permit, tokens=self.tokens, cost=self.cost)
        except asyncio.CancelledError:
            # cut (a shutdown's abort): release again in a task of its own; a second release of a permit that was
            # released does nothing, so the key's place and counts are given back exactly once either way
            self.plane.in_background(self._release_again(permit))
            raise
        except LimiterUnavailableError as exc:
            # the answer is already out; the place in flight expires on its own (parallel_ttl)
            log.error(
                "request %s: could not count %d tokens and %g spent for key %s: %s",
                self.request_id,
                self.tokens,
                self.cost,
                self.key_id,
                exc,
            )

    async def _release_again(self, permit: Permit) -> None:
        assert self.plane.limiter is not None
        try:
            await self.plane.limiter.release(permit, tokens=self.tokens, cost=self.cost)
        except LimiterUnavailableError as exc:
            log.error("request %s: could not give key %s its place back: %s", self.request_id, self.key_id, exc)

    async def finish(self, status: int = 200, usage: Usage | None = None, error: str | None = None) -> None:
        """The request is over: settle it (if the handler has not) and release its limits. Once; later calls do
        nothing."""
        if self.done:
            return
        self.done = True
        try:
            self.settle(status, usage, error)
        finally:
            if self.permit is not None:  # (else nothing to release: no coroutine)
                await self.release()

    async def fail(self, exc: BaseException) -> None:
        """Finish with the status ``exc`` is answered with (499 when the caller went away)."""
        status, code = outcome(exc, self.plane.lifecycle.aborting)
        self.error_type = type(exc).__name__
        if isinstance(exc, asyncio.CancelledError):
            # this task is being cancelled: count it now, and release in a task of its own, so the limiter's
            # release is not cut
            self.done = True
            self.settle(status, None, code)
            self.plane.in_background(self.release())
            return
        await self.finish(status, None, code)

    async def track(
        self, batches: AsyncGenerator[list[ChatCompletionChunk], None]
    ) -> AsyncGenerator[list[ChatCompletionChunk], None]:
        """Pass a stream through, noting its first output, the text that went through and its usage; settle when
        it ends, however it ends."""
        status: int = 499
        code: str | None = "client_gone"
        try:
            async for batch in batches:
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.start
                # the characters that went through, for an estimate if the provider never reports usage: summed per
                # batch, the common delta (text alone) without a call
                ascii_chars = other_chars = 0
                try:
                    for chunk in batch:
                        if chunk.usage is not None:
                            self.usage = chunk.usage
                        for c in chunk.choices:
                            d = c.delta
                            text = d.content
                            if text:
                                if text.isascii():
                                    ascii_chars += len(text)
                                else:
                                    other_chars += len(text)
                            if d.reasoning_content or d.tool_calls:
                                self._count(d.reasoning_content)
                                if d.tool_calls:
                                    for tc in d.tool_calls:
                                        self._count(tc.name)
                                        self._count(tc.arguments)
                finally:  # (a chunk of an odd shape fails the stream: what came before it still counts)
                    self.ascii_chars += ascii_chars
                    self.other_chars += other_chars
                yield batch
            status, code = 200, None
        except BaseException as exc:
            status, code = outcome(exc, self.plane.lifecycle.aborting)
            self.error_type = type(exc).__name__
            raise
        finally:
            try:
                await batches.aclose()
            finally:
                # counted before the stream's end is sent; the limits are released once it is (respond_stream)
                self.settle(status, None, code)

    def _count(self, text: str | None) -> None:
        if text:
            if text.isascii():
                self.ascii_chars += len(text)
            else:
                self.other_chars += len(text)

    async def respond_stream(
        self,
        req: Request,
        send: Send,
        batches: AsyncGenerator[list[ChatCompletionChunk], None],
        dialect: Dialect,
        render: StreamRenderer,
    ) -> None:
        """Send ``batches`` as SSE; the ticket finishes when the stream ends, fails, or its caller goes away."""
        try:
            await stream_sse(req, send, self.track(batches), dialect, render, headers=self.answer_headers)
        finally:
            # settled by track() when the stream ran; 499 when it never started (the caller left before it could)
            await self.finish(499, None, "client_gone")


#: limits (rpm, tpm) and attempts as header values (bounded: emptied when full)
_NUMBERS: dict[int, bytes] = {}
_CACHED = 4096


def _number(n: int) -> bytes:
    got = _NUMBERS.get(n)
    if got is None:
        if len(_NUMBERS) >= _CACHED:
            _NUMBERS.clear()
        got = _NUMBERS[n] = str(n).encode()
    return got


def _duration(seconds: float) -> str:
    """``23s``, ``1m0s``, ``450ms``: the form OpenAI uses in its rate-limit headers."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


def _clip(cap: int, request: bytes | None, response: bytes | None) -> tuple[str | None, str | None]:
    """The bodies as they are kept (``request_log.bodies``): cut at ``cap`` bytes, secrets masked."""
    return (
        clip_body(request, cap) if request is not None else None,
        clip_body(response, cap) if response is not None else None,
    )


def _to_ledger(ledger: Ledger, record: UsageRecord, request_body: str | None, response_body: str | None) -> None:
    """Queue ``record``, with the bodies kept for it (``request_log.bodies``) when there are any."""
    if request_body is None and response_body is None:
        ledger.record(record)
    else:
        ledger.record_with_bodies(RecordWithBodies.of(record, request_body, response_body))


def _clean(text: str) -> str:
    """A caller-chosen string made safe to store: no NUL (PostgreSQL refuses it in text), bounded length."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text[:256] if len(text) > 256 else text


def settle_exchange(plane: ControlPlane, ex: Exchange, endpoint: str, *, counted: bool) -> None:
    """An exchange that ended without a ticket: the gateway answered it itself. ``counted``: it refused the request
    (bad JSON, a field out of range, 401, 404, 405, 413, the caller leaving while it sent its body ...): count it in
    the metrics, and in the usage ledger when the caller was known (a key, or the master key; model ``(unknown)``),
    as an admitted request is.
    Either way it gets its request log line and its trace's attributes. Never raises."""
    req = ex.req
    status = ex.status if ex.status is not None else 499
    elapsed = time.perf_counter() - ex.start
    log_ = plane.request_log
    try:
        if counted and plane.metrics is not None:
            plane.metrics.observe(
                UNKNOWN_MODEL, endpoint, status, elapsed, ttft=None, prompt_tokens=0, completion_tokens=0, cost=0.0
            )
        if not counted and log_ is None and ex.span is None:
            return
        caller = req.caller
        key = caller.key
        record = UsageRecord(
            ts=ex.ts,
            request_id=_clean(req.request_id),
            key_id=key.id if key is not None else None,
            model=UNKNOWN_MODEL if counted else "",
            deployment=None,
            endpoint=endpoint,
            stream=False,
            status=status,
            error=ex.code,
            latency_ms=elapsed * 1000.0,
        )
        body = None
        if plane.body_cap is not None and req.kept_body is not None:
            body = clip_body(req.kept_body, plane.body_cap)
        if counted and plane.ledger is not None and (key is not None or caller.admin):
            # (only a known caller's refusals go to the ledger: anyone can send 401s and 404s by the thousand, and
            # each would be a row; the metrics and the request log count them all)
            _to_ledger(plane.ledger, record, body, None)
        if log_ is not None and not (log_.skip_probes and status < 400 and req.path in PROBES):
            log_.write(
                record,
                key_name=key_name(caller),
                error_type=ex.error_type,
                method=req.method,
                path=req.path,
                request_body=body,
            )
        if ex.span is not None:
            tracing.request_done(ex.span, record, ex.error_type)
    except Exception:  # a bug of ours in counting must not turn into a second answer
        log.exception("request %s: could not count its refusal", req.request_id)
