"""The load: each request of the mix sent and what it ended with checked against its case (:func:`one_request`),
at a fixed concurrency (:class:`Load`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from .cases import CASES, HANG_TIMEOUT, MASTER_KEY, Case


@dataclass
class Outcome:
    ok: bool
    hung: bool = False
    why: str = ""
    #: the request's bytes reached the socket (False only for a cancel that came before: the gateway never saw it)
    sent: bool = True


async def _body_sent(session: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestChunkSentParams) -> None:
    if isinstance(ctx.trace_request_ctx, dict):
        ctx.trace_request_ctx["sent"] = True


_FILLER = "the quick brown fox jumps over the lazy dog; 敏捷的棕色狐狸跳过了懒狗"


def _text(i: int) -> str:
    return f"soak request {i}: {_FILLER}"


async def _read_sse(resp: aiohttp.ClientResponse, *, abandon: bool) -> tuple[str, bool, dict[str, Any] | None, bool]:
    """(content, saw [DONE], the error event, events after the error or after [DONE])."""
    parts: list[str] = []
    done = False
    error: dict[str, Any] | None = None
    trailing = False
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if done or error is not None:
            trailing = True
            continue
        if data == b"[DONE]":
            done = True
            continue
        event = orjson.loads(data)
        if "error" in event:
            error = event["error"]
            continue
        for choice in event.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                parts.append(piece)
        if abandon and parts:
            resp.close()  # hang up mid-stream
            break
    return "".join(parts), done, error, trailing


async def one_request(session: aiohttp.ClientSession, url: str, rid: str, i: int, case: Case) -> Outcome:
    text = _text(i)
    want = f"You said: {text}"
    body = {"model": case.model, "stream": case.stream, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "x-request-id": rid}
    if case.expect == "cancel":
        flag: dict[str, bool] = {}  # set when the body is written to the connection (see _body_sent)
        try:
            async with asyncio.timeout(case.cancel_after):
                async with session.post(url, data=orjson.dumps(body), headers=headers, trace_request_ctx=flag) as resp:
                    await resp.read()
        except TimeoutError:
            # given up: aiohttp closes the connection of a response it did not finish. Under load the client may
            # give up before its request was even written (waiting for a connection): then no record is due
            return Outcome(True, sent=flag.get("sent", False))
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(False, why=f"{type(exc).__name__}: {exc}"[:160])
        return Outcome(False, why=f"answered {resp.status} before the client gave up")
    try:
        async with asyncio.timeout(HANG_TIMEOUT):
            async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
                if resp.headers.get("x-request-id") != rid:
                    return Outcome(False, why=f"x-request-id {resp.headers.get('x-request-id')!r}")
                ctype = resp.headers.get("content-type", "")
                if case.expect == "http_error" or resp.status != 200 or (case.stream and "event-stream" not in ctype):
                    raw = await resp.read()
                    if case.expect != "http_error" or resp.status != case.status:
                        return Outcome(False, why=f"status {resp.status}: {raw[:120]!r}")
                    err = orjson.loads(raw).get("error") or {}
                    return Outcome(bool(err.get("message")), why="" if err.get("message") else "no error body")
                if not case.stream:
                    answer = orjson.loads(await resp.read())
                    choice = answer["choices"][0]
                    good = choice["message"]["content"] == want and choice["finish_reason"] == "stop"
                    return Outcome(good, why="" if good else f"answer {choice!r:.120}")
                content, done, error, trailing = await _read_sse(resp, abandon=case.expect == "abandon")
    except TimeoutError:
        return Outcome(False, hung=True, why="no answer in time")
    except (aiohttp.ClientError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome(False, why=f"{type(exc).__name__}: {exc}"[:160])
    if trailing:
        return Outcome(False, why="events after [DONE] or after the error event")
    if case.expect == "answer":
        good = content == want and done and error is None
        return Outcome(good, why="" if good else f"stream: done={done} error={error} content={content[:40]!r}")
    if case.expect == "abandon":
        good = bool(content) and want.startswith(content) and error is None
        return Outcome(good, why="" if good else f"abandoned: error={error} content={content[:40]!r}")
    # sse_error: part of the answer, then an error event, no [DONE]
    good = error is not None and bool(error.get("message")) and not done and want.startswith(content)
    return Outcome(good, why="" if good else f"expected an error event: done={done} error={error}")


@dataclass
class CaseStats:
    requests: int = 0
    ok: int = 0
    hung: int = 0
    wrong: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class Load:
    """Runs requests at a fixed concurrency and keeps what each one ended with."""

    def __init__(self, url: str, concurrency: int, run_id: str) -> None:
        self.url = url + "/v1/chat/completions"
        self.concurrency = concurrency
        self.run_id = run_id
        self.stats: dict[str, CaseStats] = {c.name: CaseStats() for c in CASES}
        self.sent: dict[str, Case] = {}  # request id -> case
        #: cancelled requests the client gave up on before writing them (the gateway never saw them)
        self.unsent: set[str] = set()
        self.problems: list[dict[str, Any]] = []  # the first requests that did not end as their case expects
        self.done = 0
        self.phase = "start"

    def rid(self, i: int) -> str:
        return f"soak-{self.run_id}-{i}"

    async def run(self, plan: list[tuple[int, Case]]) -> float:
        """Send ``plan`` (index, case) with ``concurrency`` requests in flight; seconds it took. A fresh client
        session, closed at the end, so no client connection outlives the phase."""
        todo: Iterator[tuple[int, Case]] = iter(plan)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        tracing = aiohttp.TraceConfig()
        tracing.on_request_chunk_sent.append(_body_sent)
        started = time.perf_counter()
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), trace_configs=[tracing]
        ) as session:

            async def worker() -> None:
                for i, case in todo:
                    rid = self.rid(i)
                    self.sent[rid] = case
                    t = time.perf_counter()
                    out = await one_request(session, self.url, rid, i, case)
                    st = self.stats[case.name]
                    st.requests += 1
                    st.latencies_ms.append((time.perf_counter() - t) * 1000)
                    if not out.sent:
                        self.unsent.add(rid)
                    if out.ok:
                        st.ok += 1
                    else:
                        st.hung += out.hung
                        st.wrong += not out.hung
                        if len(self.problems) < 50:
                            self.problems.append({"request_id": rid, "case": case.name, "hung": out.hung,
                                                  "why": out.why})  # fmt: skip
                    self.done += 1

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return time.perf_counter() - started
