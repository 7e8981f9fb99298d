"""The fault table: every fault, for one deployment and for two (the faulty one first, a healthy one second), for
JSON and stream requests, through every inbound dialect of the gateway.

Each case says what the client sees with the faulty deployment alone, for a JSON request and for a stream
(``None``: the fault does not apply); with two deployments the client sees :func:`two_deployments` of that (the
healthy answer, unless the error is the request's fault or came after the stream committed). Every run also
checks that the request ended within :data:`DEADLINE`, that the faulty upstream was asked exactly once and the
healthy one only when the gateway failed over, and that no answer names an upstream's address or key; the last
test checks, in one query, that each request's usage record says how it ended and at which deployment.

Judgement calls, made as a careful user of a gateway would:

* a 200 answer that is not the API's (an HTML page, plain text, a body that does not parse, no body at all) is
  the upstream's failure: 502, and the gateway fails over;
* a stream that ends cleanly without ``[DONE]`` is complete when every choice finished (some servers just
  close), and broken otherwise;
* an upstream's 429 is the caller's 429 (with the upstream's ``Retry-After``), an upstream's 5xx is 502,
  a timeout 504, and an upstream's 401 is 502 (it is the gateway's key that was refused, not the caller's);
* keep-alive comments are not output: a stream that sends nothing else for longer than the timeout has
  stalled, before and after its first chunk alike;
* an upstream's redirect is not followed: an LLM API does not redirect, and the callers' prompts must not go
  to a host the operator did not configure (3xx is the upstream's failure, 502);
* a 200 stream whose events are JSON of the wrong shape (not an object, fields of the wrong type) is broken
  (stream_error), not an error the provider reported (upstream_error);
* a JSON body that breaks while it is read (cut, reset, undecodable) is a stream_error, as in a stream: the
  provider was reached.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import raw_fault_server as raw
from fault_harness import (
    COMMIT,
    DIALECTS,
    MAX_EVENT,
    TIMEOUT,
    Answered,
    Broken,
    Dialect,
    Failed,
    Outcome,
    check,
    check_record,
    http_client,
    openai_events,
    post,
    sse_body,
    two_deployments,
)
from fault_rig import Rig
from raw_fault_server import Behaviour

from modelway.testing import Fault

MiB = 1 << 20

RATE_LIMITED = Failed(429, "rate_limit_error", "rate_limit_exceeded", retry_after=None)
UPSTREAM_5XX = Failed(502, "upstream_error", "server_error")
UNREACHABLE = Failed(502, "connection_error", None)
BROKEN_BODY = Failed(502, "stream_error", None)
TIMED_OUT = Failed(504, "timeout_error", None)
CUT = Broken(502, "stream_error", None)
STALLED = Broken(504, "timeout_error", None)


@dataclass(frozen=True)
class Case:
    """One fault, and what the client sees with the faulty deployment alone."""

    id: str
    json: Outcome | None
    stream: Outcome | None
    #: what the faulty simulator plays (``upstream="sim"``), or the raw server (``"raw"``); nothing for ``"dead"``
    faults: tuple[Fault, ...] = ()
    behaviours: tuple[Behaviour, ...] = ()
    upstream: str = "sim"
    #: the JSON outcome holds for ``/v1/embeddings`` too
    embeddings: bool = True
    #: ``(glob over "<dialect>/<deployments>dep/<json|stream>", reason)``: the gateway is wrong there
    xfail: tuple[tuple[str, str], ...] = ()

    def items(self) -> tuple[Fault, ...] | tuple[Behaviour, ...]:
        return self.behaviours if self.upstream == "raw" else self.faults


CASES: tuple[Case, ...] = (
    # -- HTTP errors ------------------------------------------------------------------------------------------
    Case("http-429", RATE_LIMITED, RATE_LIMITED, (Fault.http(429),)),
    Case(
        "http-429-retry-after",
        Failed(429, "rate_limit_error", "rate_limit_exceeded", retry_after="3"),
        Failed(429, "rate_limit_error", "rate_limit_exceeded", retry_after="3"),
        (Fault.http(429, retry_after=3),),
    ),
    Case("http-500", UPSTREAM_5XX, UPSTREAM_5XX, (Fault.http(500),)),
    Case("http-503", UPSTREAM_5XX, UPSTREAM_5XX, (Fault.http(503),)),
    Case(
        "http-401",
        Failed(502, "upstream_error", "upstream_authentication_failed"),
        Failed(502, "upstream_error", "upstream_authentication_failed"),
        (Fault.http(401),),
    ),
    Case(
        "http-400-no-failover",
        Failed(400, "invalid_request_error", "invalid_request_error", fails_over=False),
        Failed(400, "invalid_request_error", "invalid_request_error", fails_over=False),
        (Fault.http(400),),
    ),
    Case(
        "http-400-quoting-the-key",
        Failed(400, "invalid_request_error", "invalid_request_error", fails_over=False),
        Failed(400, "invalid_request_error", "invalid_request_error", fails_over=False),
        (Fault.http(400, message="Invalid request with key sk-faulty-upstream-5f0c2a9e71d4b386 for this model"),),
    ),
    Case(
        "http-502-html-page",
        Failed(502, "upstream_error", None),
        Failed(502, "upstream_error", None),
        (Fault.content_type("text/html", status=502),),
    ),
    # -- connections ------------------------------------------------------------------------------------------
    Case("refused", UNREACHABLE, UNREACHABLE, upstream="dead"),
    Case("reset-before-response", UNREACHABLE, UNREACHABLE, (Fault.reset(),)),
    Case(
        "reset-after-headers",
        BROKEN_BODY,
        BROKEN_BODY,
        (Fault.reset(after_chunks=0),),
    ),
    Case(
        "reset-in-body",
        BROKEN_BODY,
        CUT,
        (Fault.reset(after_chunks=COMMIT),),
    ),
    Case("raw-close-at-once", UNREACHABLE, UNREACHABLE, behaviours=(raw.close_at_once,), upstream="raw"),
    Case("raw-not-http", UNREACHABLE, UNREACHABLE, behaviours=(raw.garbage,), upstream="raw"),
    Case("raw-huge-header", UNREACHABLE, UNREACHABLE, behaviours=(raw.huge_header,), upstream="raw"),
    Case("raw-204-no-content", BROKEN_BODY, BROKEN_BODY, behaviours=(raw.no_content,), upstream="raw"),
    Case(
        "raw-broken-chunked-encoding",
        BROKEN_BODY,
        CUT,
        behaviours=(raw.broken_chunked(openai_events(), b'{"id": "chatcmpl-x", "choi'),),
        upstream="raw",
    ),
    Case(
        "raw-corrupt-gzip",
        BROKEN_BODY,
        BROKEN_BODY,
        behaviours=(raw.corrupt_gzip,),
        upstream="raw",
    ),
    Case(
        "raw-redirect-to-another-origin",
        Failed(502, "upstream_error", None),
        Failed(502, "upstream_error", None),
        behaviours=(raw.redirect_elsewhere,),
        upstream="raw",
    ),
    # -- time -------------------------------------------------------------------------------------------------
    Case("slow-first-byte", TIMED_OUT, TIMED_OUT, (Fault.slow_first_byte(5),)),
    Case(
        "slow-first-byte-within-timeout",
        Answered("faulty"),
        Answered("faulty"),
        (Fault.slow_first_byte(TIMEOUT / 4),),
    ),
    Case("raw-accept-and-say-nothing", TIMED_OUT, TIMED_OUT, behaviours=(raw.silent,), upstream="raw"),
    Case("raw-headers-then-silence", TIMED_OUT, TIMED_OUT, behaviours=(raw.headers_then_silence,), upstream="raw"),
    Case("stall-mid-body", TIMED_OUT, STALLED, (Fault.stall(after_chunks=COMMIT),)),
    Case("stall-before-output", None, TIMED_OUT, (Fault.stall(after_chunks=1),)),
    Case(
        "stall-keepalive-before-output",
        TIMED_OUT,
        TIMED_OUT,
        (Fault.stall(after_chunks=1, keepalive=0.05),),
    ),
    Case(
        "stall-keepalive-after-output",
        None,
        STALLED,
        (Fault.stall(after_chunks=COMMIT, keepalive=0.05),),
    ),
    Case(
        "stall-resumes-within-timeout",
        Answered("faulty"),
        Answered("faulty"),
        (Fault.stall(after_chunks=COMMIT, seconds=TIMEOUT / 4),),
    ),
    # -- broken streams ---------------------------------------------------------------------------------------
    Case(
        "cut-mid-stream",
        BROKEN_BODY,
        CUT,
        (Fault.cut_stream(after_chunks=COMMIT),),
    ),
    Case("cut-before-output", None, BROKEN_BODY, (Fault.cut_stream(after_chunks=1),)),
    Case("clean-end-without-done-unfinished", None, CUT, (sse_body(openai_events()),), embeddings=False),
    Case(
        "clean-end-without-done-finished",
        None,
        Answered("faulty"),
        (sse_body(openai_events(finish=True, usage=True)),),
        embeddings=False,
    ),
    Case("empty-stream", None, BROKEN_BODY, (sse_body(b""),), embeddings=False),
    Case("done-only", None, BROKEN_BODY, (sse_body(b"data: [DONE]\n\n"),), embeddings=False),
    Case(
        "error-frame-mid-stream",
        UPSTREAM_5XX,
        Broken(502, "upstream_error", "server_error"),
        (Fault.error_frame(after_chunks=COMMIT),),
    ),
    Case("error-frame-first", None, UPSTREAM_5XX, (Fault.error_frame(after_chunks=1),)),
    Case(
        "content-filter-mid-stream",
        Failed(400, "content_filter", "content_filter", fails_over=False),
        Broken(400, "content_filter", "content_filter"),
        (Fault.error_frame(after_chunks=COMMIT, code="content_filter"),),
        embeddings=False,
    ),
    Case(
        "content-filter-first",
        None,
        Failed(400, "content_filter", "content_filter", fails_over=False),
        (Fault.error_frame(after_chunks=1, code="content_filter"),),
    ),
    Case("malformed-json", BROKEN_BODY, CUT, (Fault.malformed_json(after_chunks=COMMIT),)),
    Case("malformed-json-first", None, BROKEN_BODY, (Fault.malformed_json(after_chunks=1),)),
    Case(
        "event-of-the-wrong-shape",
        None,
        CUT,
        (sse_body(openai_events() + b'data: {"choices": "oops"}\n\n'),),
        embeddings=False,
    ),
    Case(
        "event-not-an-object",
        None,
        CUT,
        (sse_body(openai_events() + b"data: [1, 2, 3]\n\n"),),
        embeddings=False,
    ),
    Case(
        "lines-that-are-not-sse",
        None,
        Answered("faulty"),
        (sse_body(openai_events() + b"this is no field\n\n" + openai_events(start=False, finish=True, done=True)),),
        embeddings=False,
    ),
    # -- size -------------------------------------------------------------------------------------------------
    Case("oversized", BROKEN_BODY, Broken(502, "stream_error", None, sent=None), (Fault.oversized(2 * MiB),)),
    # (streams: test_a_gzip_bomb_stream_fails_before_or_after_its_commit below)
    Case("gzip-bomb", BROKEN_BODY, None, (Fault.gzip_bomb(64 * MiB),)),
    Case("long-line-mid-stream", None, CUT, (Fault.long_line(2 * MAX_EVENT, after_chunks=COMMIT),)),
    Case("long-line-first", None, BROKEN_BODY, (Fault.long_line(2 * MAX_EVENT, after_chunks=0),)),
    # -- content types ----------------------------------------------------------------------------------------
    Case("html-200", BROKEN_BODY, BROKEN_BODY, (Fault.content_type("text/html"),)),
    Case("plain-text-200", BROKEN_BODY, BROKEN_BODY, (Fault.content_type("text/plain", "upstream said no"),)),
    Case(
        "error-json-with-200",
        RATE_LIMITED,
        RATE_LIMITED,
        (
            Fault.content_type(
                "application/json", b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}'
            ),
        ),
    ),
    Case("json-for-stream", Answered("faulty"), Answered("faulty"), (Fault.json_for_stream(),), embeddings=False),
    Case(
        "event-stream-for-json",
        BROKEN_BODY,
        Answered("faulty"),
        (Fault.content_type("text/event-stream"),),
        embeddings=False,
    ),
)


def _combos() -> Iterator[object]:
    for case in CASES:
        for dialect in DIALECTS:
            for stream in (False, True):
                if (stream and not dialect.streams) or (not dialect.chat and not case.embeddings):
                    continue
                one = case.stream if stream else case.json
                if one is None:
                    continue
                for deployments in (1, 2):
                    expect = one if deployments == 1 else two_deployments(one)
                    where = f"{dialect.name}/{deployments}dep/{'stream' if stream else 'json'}"
                    marks = [
                        pytest.mark.xfail(strict=True, reason=reason)
                        for pattern, reason in case.xfail
                        if fnmatch.fnmatchcase(where, pattern)
                    ]
                    yield pytest.param(case, dialect, deployments, stream, expect, id=f"{case.id}/{where}", marks=marks)


@pytest.mark.parametrize(("case", "dialect", "deployments", "stream", "expect"), list(_combos()))
async def test_fault(rig: Rig, case: Case, dialect: Dialect, deployments: int, stream: bool, expect: Outcome) -> None:
    rig.push(case.upstream, case.items())
    body = dialect.request(rig.model(case.upstream, deployments, dialect.provider), stream)
    async with http_client() as client:
        seen = await post(client, rig.url + dialect.path, body)
    check(seen, expect, dialect, stream, rig.secrets)
    # the faulty upstream was asked once (max_retries 0), the healthy one only when the gateway failed over
    assert rig.tried(case.upstream) in (1, None), seen.describe()
    failed_over = isinstance(expect, Answered) and expect.by == "healthy"
    assert len(rig.healthy.requests) == int(failed_over), seen.describe()
    rig.audit(
        f"{case.id}/{dialect.name}/{deployments}dep/{'stream' if stream else 'json'}",
        seen.request_id,
        expect,
        case.upstream,
        dialect.provider,
    )


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d.streams], ids=lambda d: d.name)
async def test_a_gzip_bomb_stream_fails_before_or_after_its_commit(rig: Rig, dialect: Dialect) -> None:
    """A compressed stream is decoded read by read, never more at once than the cap allows: where the bomb goes
    over it depends on how the reads fall, before the stream's first output (a clean 502, which fails over with a
    second deployment) or after it (the chunks so far, then one error event). Either way: a stream_error, in time."""
    rig.push("sim", (Fault.gzip_bomb(64 * MiB),))
    body = dialect.request(rig.model("sim", 1, dialect.provider), True)
    async with http_client() as client:
        seen = await post(client, rig.url + dialect.path, body)
    if seen.status == 200:
        check(seen, Broken(502, "stream_error", None, sent=None), dialect, True, rig.secrets)
    else:
        check(seen, BROKEN_BODY, dialect, True, rig.secrets)


async def test_usage_records_of_every_case(rig: Rig) -> None:
    """Every case above that ran left a usage record saying how it ended (one query for them all)."""
    async with http_client() as client:
        records = await rig.records(client, limit=10_000)
    wrong = []
    for audit in rig.audited:
        record = records.get(audit.request_id)
        try:
            assert record is not None, "no usage record"
            check_record(record, audit.expect, audit.deployment, audit.healthy)
        except AssertionError as exc:
            wrong.append(f"{audit.what}: {exc}")
    assert not wrong, "\n".join(wrong)
