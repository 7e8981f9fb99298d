"""Crash and restart: no usage record is lost for a request that was answered, and none is stored twice.

Each test runs a real ``modelway serve`` subprocess (a master key, a store: SQLite in a temporary directory or a
PostgreSQL schema of its own; the usage journal in its default place beside the spill file) over the OpenAI
simulator, and matches the answers the client got with the store's records by request id (``x-request-id``):

- SIGKILL in the middle of a burst, restart on the same config: the restart imports the dead process's journal,
  every answered request has its record exactly once;
- SIGTERM with streams the upstream keeps open (keep-alives only): after ``server.shutdown_timeout`` they end with
  one ``shutting_down`` error event, are recorded as 503 ``shutting_down``, and the server exits 0;
- SIGTERM with a stream that ends before the deadline: it completes, is recorded as 200, and the server exits 0;
- ``--workers 2``, SIGKILL one worker in the middle of a burst: uvicorn's supervisor starts another, whose start
  imports the dead worker's journal; after SIGTERM (exit 0) every answered request has its record exactly once.

The long form, with thousands of requests and several kills: ``python -m bench.crash`` (bench/crash.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from crashkit import (
    JOURNAL,
    MASTER,
    MODEL,
    Gateway,
    burst,
    burst_requests,
    burst_script,
    drop_schema,
    segments,
    spawned,
    sse_events,
    stored,
    write_config,
)

from modelway.testing import Fault, OpenAISimulator, Reply
from services import PG_URL, redis_url

BURST = 100
CONCURRENCY = 20
KILL_AFTER = 40  # answers
#: the usage flush interval of the SIGKILL tests: nothing reaches the store before the server stops
LONG_FLUSH = 600.0


@dataclass
class Rig:
    """A store, an upstream and the gateways started on them (all stopped at the end of the test)."""

    tmp: Path
    store_url: str
    sim: OpenAISimulator
    gateways: list[Gateway] = field(default_factory=list)

    @property
    def journal(self) -> Path:
        return self.tmp / JOURNAL

    def gateway(
        self,
        *,
        workers: int = 1,
        shutdown_timeout: float | None = None,
        redis: str | None = None,
        flush_interval: float | None = None,
    ) -> Gateway:
        cfg = write_config(
            self.tmp,
            store_url=self.store_url,
            upstream=self.sim.base_url,
            upstream_key=self.sim.api_key,
            shutdown_timeout=shutdown_timeout,
            redis_url=redis,
            flush_interval=flush_interval,
        )
        gw = Gateway(cfg, self.tmp, workers=workers)
        self.gateways.append(gw)
        return gw

    def records(self) -> tuple[dict[str, int], dict[str, set[tuple[int, str | None]]]]:
        counts, outcomes = asyncio.run(stored(self.store_url))
        return dict(counts), outcomes


@pytest.fixture(params=["sqlite", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gw.db'}"
    else:
        request.getfixturevalue("postgres_server")
        schema = "mw_crash_" + secrets.token_hex(6)
        url = f"{PG_URL}?schema={schema}"
    with OpenAISimulator() as sim:
        r = Rig(tmp_path, url, sim)
        try:
            yield r
        finally:
            for gw in r.gateways:
                gw.stop()
            if schema is not None:
                asyncio.run(drop_schema(PG_URL, schema))


def _check_answered(
    answered: dict[str, int], counts: dict[str, int], outcomes: dict[str, set[tuple[int, str | None]]]
) -> None:
    """Every answered request has exactly one record, with the status the caller got; no request id twice."""
    missing = sorted(rid for rid in answered if counts.get(rid, 0) == 0)
    twice = sorted(rid for rid, n in counts.items() if n > 1)
    wrong = sorted(rid for rid, status in answered.items() if rid in outcomes and outcomes[rid] != {(status, None)})
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no record: {missing[:10]}"
    assert not twice, f"{len(twice)} request ids stored more than once: {twice[:10]}"
    assert not wrong, f"records with another outcome than the answer: {[(r, outcomes[r]) for r in wrong[:10]]}"


# -- 1. SIGKILL mid-burst ------------------------------------------------------------------------------------------


@dataclass
class Restarted:
    """What the journal and the store held around a restart after a SIGKILL."""

    dead_segments: list[str]  # the killed process's journal segments, before the restart
    stored_before: dict[str, int]  # records per request id, before the restart
    segments_after: list[str]  # every journal segment once the restart is ready
    stored_after: tuple[dict[str, int], dict[str, set[tuple[int, str | None]]]]


def test_sigkill_mid_burst_loses_no_answered_record(rig: Rig) -> None:
    """SIGKILL after 40 of 100 answers, 20 requests at a time (streams and not, some slow): the restart imports the
    killed process's journal. Records are written to the store only at the shutdown (a long flush interval), so the
    killed process's are in its journal alone when it dies."""
    gw = rig.gateway(flush_interval=LONG_FLUSH)
    gw.start()
    assert spawned(gw.pid) == [], "one worker: the `modelway serve` process itself serves"
    rig.sim.push(*burst_script(BURST))
    seen: list[Restarted] = []

    def restart(pid: int) -> None:
        dead = [p.name for p in segments(rig.journal) if f"-{pid}-" in p.name]
        before = rig.records()[0]
        gw.start()
        seen.append(Restarted(dead, before, [p.name for p in segments(rig.journal)], rig.records()))

    result = asyncio.run(
        burst(
            gw.url,
            burst_requests(BURST, "kill"),
            concurrency=CONCURRENCY,
            kill_after=[KILL_AFTER],
            kill=gw.kill,
            restart=restart,
        )
    )
    assert len(result.killed) == 1 and len(seen) == 1, "the server was never killed"
    first, second = result.answered_in(0), result.answered_in(1)
    assert len(first) >= KILL_AFTER and second, f"answers before/after the kill: {len(first)}/{len(second)}"
    assert result.errors(), "no request was in flight at the kill"
    r = seen[0]
    assert r.dead_segments, "the killed process left no journal"
    assert r.stored_before == {}, "records were stored before the kill: the journal is not what is tested"
    # the restart imported the killed process's journal: its answered requests are all stored, once
    assert r.segments_after == [], f"journal segments left after the restart: {r.segments_after}"
    _check_answered(first, *r.stored_after)

    rc, _ = gw.terminate()
    assert rc == 0, gw.log_tail()
    counts, outcomes = rig.records()
    _check_answered(result.answered, counts, outcomes)
    assert set(counts) <= {rid for rid, _ in burst_requests(BURST, "kill")}
    assert segments(rig.journal) == []


# -- 2. SIGTERM with open streams ----------------------------------------------------------------------------------


def _chat(stream: bool) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def _headers(rid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {MASTER}", "x-request-id": rid}


async def _open_stream(s: aiohttp.ClientSession, url: str, rid: str) -> tuple[aiohttp.ClientResponse, list[str]]:
    """A stream request, its response, and its events up to the first with some text (the gateway starts a
    stream's response at the upstream's first output: an opening chunk with a role only comes with it)."""
    r = await s.post(url + "/v1/chat/completions", json=_chat(True), headers=_headers(rid))
    assert r.status == 200, await r.text()
    events: list[str] = []
    while True:
        events += sse_events(await asyncio.wait_for(r.content.readuntil(b"\n\n"), 10))
        if any(c["delta"].get("content") for e in events for c in json.loads(e)["choices"]):
            return r, events


async def _short(s: aiohttp.ClientSession, url: str, rid: str, stream: bool) -> None:
    async with s.post(url + "/v1/chat/completions", json=_chat(stream), headers=_headers(rid)) as r:
        raw = await r.read()
        assert r.status == 200, raw
        assert raw.endswith(b"data: [DONE]\n\n") if stream else json.loads(raw)["choices"]


async def _stalled(s: aiohttp.ClientSession, url: str, rid: str, stream: bool) -> tuple[int, bytes]:
    async with s.post(url + "/v1/chat/completions", json=_chat(stream), headers=_headers(rid)) as r:
        return r.status, await r.read()


async def _upstream_got(sim: OpenAISimulator, n: int) -> None:
    for _ in range(1000):
        if len(sim.requests) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the upstream got {len(sim.requests)} requests, not {n}")


async def _exit_status(gw: Gateway, seconds: float) -> int | None:
    assert gw.proc is not None
    try:
        return await asyncio.to_thread(gw.proc.wait, seconds)
    except subprocess.TimeoutExpired:
        return None


def test_sigterm_ends_open_streams_with_shutting_down(rig: Rig) -> None:
    """Three streams whose upstream sends keep-alives only after its first output, and (not yet answered, so
    answered 503 at the deadline) a stream stalled before its first output and a non-stream request; two short
    requests that finished before the SIGTERM."""
    deadline = 1.0
    gw = rig.gateway(shutdown_timeout=deadline)
    gw.start()
    stall = Fault.stall(after_chunks=2, seconds=None, keepalive=0.2)  # the opening chunk, one with text, then stall
    rig.sim.push(stall, stall, stall, Fault.stall(after_chunks=1, seconds=None, keepalive=0.2), stall)

    async def scenario() -> tuple[list[list[str]], list[bytes], list[tuple[int, bytes]], float, int | None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            opened = [await _open_stream(s, gw.url, f"open-{i}") for i in range(3)]
            early = asyncio.create_task(_stalled(s, gw.url, "early", True))
            await _upstream_got(rig.sim, 4)  # (each request takes the upstream's next scripted answer, in turn)
            plain = asyncio.create_task(_stalled(s, gw.url, "plain", False))
            await _upstream_got(rig.sim, 5)
            await _short(s, gw.url, "short-0", False)
            await _short(s, gw.url, "short-1", True)
            assert gw.proc is not None
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            rests = await asyncio.gather(*(asyncio.wait_for(r.content.read(), deadline + 5) for r, _ in opened))
            answered = list(await asyncio.wait_for(asyncio.gather(early, plain), deadline + 5))
            rc = await _exit_status(gw, deadline + 5)
            took = time.monotonic() - t0
            for r, _ in opened:
                r.release()
            return [first for _, first in opened], rests, answered, took, rc

    firsts, rests, answered, took, rc = asyncio.run(scenario())
    assert rc == 0, f"exit status {rc} after {took:.1f} s\n{gw.log_tail()}"
    assert took <= deadline + 5
    for first, rest in zip(firsts, rests, strict=True):
        assert [json.loads(e)["object"] for e in first] == ["chat.completion.chunk"] * len(first)
        events = sse_events(rest)
        assert len(events) == 1, f"after the first chunk: {rest!r}"
        assert json.loads(events[0])["error"]["code"] == "shutting_down", rest
    for status, body in answered:
        assert status == 503, body
        assert json.loads(body)["error"]["code"] == "shutting_down", body
    counts, outcomes = rig.records()
    ends: dict[str, set[tuple[int, str | None]]] = {}
    ends |= {rid: {(503, "shutting_down")} for rid in ("open-0", "open-1", "open-2", "early", "plain")}
    ends |= {"short-0": {(200, None)}, "short-1": {(200, None)}}
    assert counts == dict.fromkeys(ends, 1)
    assert outcomes == ends


# -- 3. SIGTERM with a stream that ends in time --------------------------------------------------------------------


def test_sigterm_lets_a_stream_finish_within_the_deadline(rig: Rig) -> None:
    """A stream that has most of its text still to come at the SIGTERM ends normally, well before the deadline."""
    deadline = 10.0
    gw = rig.gateway(shutdown_timeout=deadline)
    gw.start()
    text = "one two three four five six seven eight nine ten"  # 13 events of 4 characters, 50 ms apart
    rig.sim.push(Reply(text=text, chunk_delay=0.05))

    async def scenario() -> tuple[bytes, float, int | None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            r, first = await _open_stream(s, gw.url, "finishes")
            assert gw.proc is not None
            t0 = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(r.content.read(), deadline)
            # the client hangs up (its connection went back to the pool at the stream's end): a connection whose
            # response said keep-alive before the SIGTERM is left open to its client until the keep-alive timeout
            # (5 s), which the server would then wait for (tests/server/test_drain.py)
            await s.close()
            rc = await _exit_status(gw, deadline + 5)
            assert len(sse_events(rest)) > 5, f"the stream was nearly over at the SIGTERM: {rest!r}"
            return "".join(f"data: {e}\n\n" for e in first).encode() + rest, time.monotonic() - t0, rc

    body, took, rc = asyncio.run(scenario())
    assert rc == 0, f"exit status {rc} after {took:.1f} s\n{gw.log_tail()}"
    assert took < deadline / 2, f"the server waited {took:.1f} s: for its deadline, not for the stream"
    events = sse_events(body)
    assert events[-1] == "[DONE]", body
    content = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in json.loads(e).get("choices", []))
    assert content == text
    assert rig.records() == ({"finishes": 1}, {"finishes": {(200, None)}})


# -- 4. --workers 2, SIGKILL one worker mid-burst ------------------------------------------------------------------


@pytest.mark.usefixtures("redis_server")
def test_sigkill_of_one_worker_loses_no_answered_record(rig: Rig) -> None:
    """``--workers 2``: SIGKILL one worker (a child of ``modelway serve``) after 40 of 100 answers. uvicorn's
    supervisor starts another, whose start imports the dead worker's journal (the only place its records are: the
    flush interval is long); after SIGTERM (exit 0) every answered request has its record, once."""
    gw = rig.gateway(workers=2, redis=redis_url(13), flush_interval=LONG_FLUSH)
    gw.start()
    before = gw.worker_pids()
    assert len(before) == 2, f"worker processes of {gw.pid}: {before}"
    rig.sim.push(*burst_script(BURST))

    left: list[str] = []

    def kill_one() -> int:
        os.kill(before[0], signal.SIGKILL)  # the supervisor reaps it
        left.extend(p.name for p in segments(rig.journal) if f"-{before[0]}-" in p.name)
        return before[0]

    result = asyncio.run(
        burst(
            gw.url,
            burst_requests(BURST, "worker"),
            concurrency=CONCURRENCY,
            kill_after=[KILL_AFTER],
            kill=kill_one,
        )
    )
    assert result.killed == [before[0]]
    assert result.errors(), "no request was in flight at the kill"
    assert left, "the killed worker left no journal"

    # uvicorn's supervisor starts a new worker (it looks every 0.5 s); its start imports the dead one's journal
    deadline = time.monotonic() + 20
    while True:
        now = gw.worker_pids()
        dead = [p.name for p in segments(rig.journal) if f"-{before[0]}-" in p.name]
        if len(now) == 2 and before[0] not in now and not dead:
            break
        assert time.monotonic() < deadline, (
            f"workers {now} (were {before}); dead worker's segments {dead}\n{gw.log_tail()}"
        )
        time.sleep(0.1)
    gw.wait_ready()
    imported = rig.records()[0]  # (the live worker writes its records at the shutdown)
    assert imported, "the new worker imported nothing"
    assert set(imported.values()) == {1}, imported

    rc, took = gw.terminate()
    assert rc == 0, f"exit status {rc} after {took:.1f} s\n{gw.log_tail()}"
    counts, outcomes = rig.records()
    _check_answered(result.answered, counts, outcomes)
    assert segments(rig.journal) == []
