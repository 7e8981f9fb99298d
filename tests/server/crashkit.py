"""Crash-and-restart machinery shared by ``tests/server/test_crash_restart.py`` and ``bench/crash.py``.

A real ``modelway serve`` subprocess (:class:`Gateway`) on a config written by :func:`write_config`, a burst of
chat requests that SIGKILLs the server after a number of answers and restarts it (:func:`burst`), and the usage
records the store holds afterwards (:func:`stored`). Nothing here imports pytest: the bench uses it as it is.

Every request carries its own ``x-request-id``; the gateway echoes it and stores it as the record's
``request_id``, which is how answers are matched with records.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from modelway.store.sql import SQLStore
from modelway.testing import Fault, Reply

__all__ = [
    "JOURNAL",
    "MASTER",
    "MODEL",
    "Answer",
    "Burst",
    "Gateway",
    "burst",
    "burst_requests",
    "burst_script",
    "drop_schema",
    "free_port",
    "segments",
    "spawned",
    "sse_events",
    "stored",
    "write_config",
]

MASTER = "sk-crash-test"
MODEL = "gpt"
#: the journal directory's name beside the spill file (the config's default: ``usage.journal_dir`` unset)
JOURNAL = "modelway-usage-journal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    directory: Path,
    *,
    store_url: str,
    upstream: str,
    upstream_key: str,
    shutdown_timeout: float | None = None,
    redis_url: str | None = None,
    flush_interval: float | None = None,
) -> Path:
    """A gateway config in ``directory`` (``gw.yaml``; the spill file and the journal beside it). A long
    ``flush_interval`` keeps the records out of the store until the server stops: a killed process's are then
    only in its journal."""
    server: dict[str, Any] = {"master_key": MASTER, "log_level": "info"}
    if shutdown_timeout is not None:
        server["shutdown_timeout"] = shutdown_timeout
    store: dict[str, Any] = {"url": store_url}
    if redis_url is not None:
        store["redis_url"] = redis_url
    dep = {"model": "openai/gpt-4o-mini", "api_key": upstream_key, "api_base": upstream}
    usage: dict[str, Any] = {"spill_path": str(directory / "spill.jsonl")}
    if flush_interval is not None:
        usage["flush_interval"] = flush_interval
    cfg = directory / "gw.yaml"
    cfg.write_text(
        json.dumps(
            {
                "server": server,
                "store": store,
                "usage": usage,
                "models": [{"name": MODEL, "deployments": [dep]}],
            }
        )
    )
    return cfg


def segments(journal: Path) -> list[Path]:
    """The journal's segment files (and segments being created), sorted: in the store's own directory under the
    journal directory (``store-<hash>``)."""
    stores = sorted(journal.glob("store-*")) if journal.is_dir() else []
    if stores:
        journal = stores[0]
    if not journal.is_dir():
        return []
    return sorted(p for p in journal.iterdir() if p.name.startswith(("journal-", ".journal-")))


def spawned(pid: int) -> list[int]:
    """The children of ``pid`` started by multiprocessing's spawn (uvicorn's workers; not a resource tracker)."""
    return sorted(p for p in _children(pid) if "spawn_main" in _cmdline(p))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in task.read_text().split()]
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Gateway:
    """``modelway serve -c cfg`` on ``port``, restartable; each start logs to ``serve-<n>.log`` in ``logdir``."""

    def __init__(self, cfg: Path, logdir: Path, *, workers: int = 1, port: int | None = None) -> None:
        self.cfg = cfg
        self.logdir = logdir
        self.workers = workers
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.logs: list[Path] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, ready_timeout: float = 30.0) -> None:
        """Start the server and wait until every worker answers its readiness check."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = self.logdir / f"serve-{self.starts}.log"
        self.logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
        cmd = [sys.executable, "-m", "modelway.cli", "serve", "-c", str(self.cfg), "--port", str(self.port)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.wait_ready(ready_timeout)

    def wait_ready(self, seconds: float = 30.0) -> None:
        """Until ``workers`` different processes have answered 200 (the request id's prefix is per process)."""
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        seen: set[str] = set()
        while len(seen) < self.workers:
            try:
                with urllib.request.urlopen(self.url + "/health/readiness", timeout=2) as r:
                    if r.status == 200:
                        seen.add(r.headers["x-request-id"][:12])
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelway serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"modelway serve: {len(seen)} of {self.workers} workers ready:\n{self.log_tail()}")
            time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes: the ``modelway serve`` process itself with one worker, else its children
        started by multiprocessing's spawn (not its resource tracker)."""
        return [self.pid] if self.workers == 1 else spawned(self.pid)

    def kill(self) -> int:
        """SIGKILL the server (one worker: the whole server) and reap it; its pid."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        return pid

    def terminate(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM and wait up to ``timeout``: the exit status (``None``: still running, then killed) and the
        seconds it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            self.stop()
        return rc, time.monotonic() - t0

    def stop(self) -> None:
        """Whatever state it is in: make sure it is gone (workers too)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = _children(self.proc.pid)
        self.proc.kill()
        self.proc.wait(10)
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_text(self) -> str:
        return "".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs if p.exists())

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]


# -- the burst ----------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What one request got: ``status`` is set when a complete answer came back (the whole JSON body, or a stream
    that reached its end: ``data: [DONE]``, or an error event and the end of the body); ``error`` says why not."""

    request_id: str
    stream: bool
    #: how many kills had happened when the request was sent (which server process it went to)
    epoch: int = 0
    status: int | None = None
    error: str | None = None


@dataclass
class Burst:
    """A burst's outcome: every request's :class:`Answer`, and the pid killed at each kill."""

    answers: dict[str, Answer] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)

    @property
    def answered(self) -> dict[str, int]:
        """Request id to status, for the requests that got a complete answer."""
        return {rid: a.status for rid, a in self.answers.items() if a.status is not None}

    def answered_in(self, epoch: int) -> dict[str, int]:
        """The same, for the requests sent after ``epoch`` kills (and before the next)."""
        return {rid: a.status for rid, a in self.answers.items() if a.status is not None and a.epoch == epoch}

    def errors(self) -> Counter[str]:
        return Counter(a.error for a in self.answers.values() if a.error is not None)


def _complete(stream: bool, status: int, raw: bytes) -> str | None:
    """Why ``raw`` is not a complete answer; ``None`` when it is."""
    if stream and status == 200:
        return None if raw.endswith(b"data: [DONE]\n\n") else f"stream without [DONE]: {raw[-200:]!r}"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"not JSON: {raw[-200:]!r}"
    if status == 200 and not body.get("choices"):
        return f"no choices: {raw[-200:]!r}"
    return None


def burst_requests(n: int, prefix: str) -> list[tuple[str, bool]]:
    """``n`` requests (request id, stream?): every other one a stream."""
    return [(f"{prefix}-{i:05d}", i % 2 == 0) for i in range(n)]


def burst_script(n: int) -> list[Reply | Fault]:
    """What the upstream answers to ``n`` requests, in turn: a stream whose events come 20 ms apart, an
    immediate answer, an answer whose headers come after 50 ms (so that many requests are in flight at once)."""
    items: list[Reply | Fault] = [Reply(chunk_delay=0.02), Reply(), Fault.slow_first_byte(0.05)]
    return [items[i % len(items)] for i in range(n)]


async def burst(
    url: str,
    requests: Sequence[tuple[str, bool]],
    *,
    concurrency: int = 20,
    kill_after: Sequence[int] = (),
    kill: Callable[[], int] | None = None,
    restart: Callable[[int], None] | None = None,
    timeout: float = 30.0,
) -> Burst:
    """Send ``requests`` (request id, stream?) to ``url``, ``concurrency`` at a time, a connection each.

    When the number of complete answers reaches each of ``kill_after``, ``kill()`` is called at once (it SIGKILLs
    the server and returns the pid it killed); then ``restart(pid)`` runs in a thread while no new request is sent
    (those in flight fail), and the burst goes on once it returns. Without ``restart`` the burst goes on at once.
    """
    out = Burst()
    thresholds = sorted(kill_after)
    todo = list(reversed(requests))
    up = asyncio.Event()
    up.set()
    restarting: list[asyncio.Task[None]] = []
    answered = 0

    async def _restart(pid: int) -> None:
        try:
            if restart is not None:
                await asyncio.to_thread(restart, pid)
        finally:
            up.set()

    def after_answer() -> None:
        nonlocal answered
        answered += 1
        if thresholds and answered >= thresholds[0] and up.is_set():
            thresholds.pop(0)
            assert kill is not None
            up.clear()
            pid = kill()
            out.killed.append(pid)
            restarting.append(asyncio.create_task(_restart(pid)))

    headers = {"Authorization": f"Bearer {MASTER}"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one(rid: str, stream: bool, epoch: int) -> Answer:
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"hello {rid}"}], "stream": stream}
            try:
                async with session.post(
                    url + "/v1/chat/completions", json=body, headers={**headers, "x-request-id": rid}
                ) as r:
                    raw = await r.read()
                    echoed = r.headers.get("x-request-id")
                    if echoed != rid:
                        return Answer(rid, stream, epoch, error=f"x-request-id echoed as {echoed!r}")
                    why = _complete(stream, r.status, raw)
                    if why is not None:
                        return Answer(rid, stream, epoch, error=why)
                    return Answer(rid, stream, epoch, status=r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Answer(rid, stream, epoch, error=type(exc).__name__)

        async def worker() -> None:
            while todo:
                await up.wait()
                if not todo:
                    return
                rid, stream = todo.pop()
                a = await one(rid, stream, len(out.killed))
                out.answers[rid] = a
                if a.status is not None:
                    after_answer()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if restarting:
            await asyncio.gather(*restarting)
    return out


# -- the store ----------------------------------------------------------------------------------------------------


async def stored(url: str) -> tuple[Counter[str], dict[str, set[tuple[int, str | None]]]]:
    """The store's usage records: how many per request id, and each request id's (status, error) pairs."""
    store = SQLStore(url)
    await store.open()
    try:
        records = await store.usage_records(limit=10_000_000)
    finally:
        await store.aclose()
    counts: Counter[str] = Counter()
    outcome: dict[str, set[tuple[int, str | None]]] = {}
    for r in records:
        counts[r.request_id] += 1
        outcome.setdefault(r.request_id, set()).add((r.status, r.error))
    return counts, outcome


async def drop_schema(pg_url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def sse_events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order (comments and other fields left out)."""
    events: list[str] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
        if data:
            events.append(b"\n".join(data).decode())
    return events
