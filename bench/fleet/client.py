"""The fleet's clients: aiohttp on an event loop in a thread of its own, so that load runs while the harness (in the
main thread) kills, restarts and reconfigures replicas.

Every chat request carries its own ``x-request-id`` (``fl-<phase>-<n>``), which the gateway stores as its usage
record's ``request_id``; every :class:`Answer` is kept in :attr:`Client.answers`, for the final match with the
records. Which replica answered comes from nginx's ``X-Upstream-Addr``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson

from .rig import MASTER, MODEL

__all__ = ["Answer", "Background", "Client", "Probe", "admin"]

T = TypeVar("T")

#: a request's whole time limit: far above what any answer takes here, so a hung request shows as one
TIMEOUT = 60.0


@dataclass(slots=True)
class Answer:
    """What one chat request got."""

    rid: str
    key: str  # the key's label
    stream: bool
    sent: float  # time.time() when it was sent
    done: float = 0.0
    #: the HTTP status (``None``: no response at all)
    status: int | None = None
    #: a whole answer: a JSON completion, a stream to ``[DONE]``, or an error body in the OpenAI format
    complete: bool = False
    #: why the answer is not complete (or not in the OpenAI error format)
    error: str | None = None
    #: an error answer's ``error.code`` and ``error.type``, and its ``Retry-After``
    code: str | None = None
    type: str | None = None
    retry_after: str | None = None
    upstream: str | None = None  # X-Upstream-Addr: the replicas nginx tried, the last one answered
    deployment: str | None = None  # x-modelway-deployment

    @property
    def ok(self) -> bool:
        return self.complete and self.status == 200

    @property
    def failed(self) -> bool:
        """Neither a whole answer nor a refusal of the gateway's own: what a client counts as a failed request."""
        return not self.complete or self.status not in (200, 429)


@dataclass(slots=True)
class Probe:
    """One probe of one worker: its status, which worker (the prefix of the request id it made) and when."""

    at: float
    status: int
    worker: str
    code: str | None


class Client:
    """``with Client(lb_url) as client:`` an event loop in a thread, an aiohttp session to nginx (kept alive)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[Answer] = []
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-client", daemon=True)
        self._session: aiohttp.ClientSession | None = None
        self._probes: aiohttp.ClientSession | None = None

    def __enter__(self) -> Client:
        self._thread.start()
        self.run(self._open())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), timeout=timeout)
        # probes of replicas: a connection each, so that the kernel hands them to either worker
        self._probes = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), timeout=timeout)

    async def _close(self) -> None:
        for s in (self._session, self._probes):
            if s is not None:
                await s.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the client's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def rid(self, phase: str) -> str:
        return f"fl-{phase}-{next(self._ids):07d}"

    # -- chat -----------------------------------------------------------------------------------------------------
    async def chat(self, secret: str, label: str, phase: str, *, stream: bool) -> Answer:
        """One chat request through nginx with the key ``secret``."""
        assert self._session is not None
        rid = self.rid(phase)
        a = Answer(rid, label, stream, time.time())
        self.answers.append(a)
        body = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {secret}", "x-request-id": rid}
        try:
            async with self._session.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r:
                a.status = r.status
                a.upstream = r.headers.get("X-Upstream-Addr")
                a.deployment = r.headers.get("x-modelway-deployment")
                a.retry_after = r.headers.get("Retry-After")
                raw = await r.read()
                _judge(a, raw, r.headers.get("x-request-id"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            a.error = f"{type(exc).__name__}: {exc}"[:200]
        a.done = time.time()
        return a

    async def probe(self, url: str, secret: str) -> Probe:
        """``GET /v1/models`` on one replica with ``secret``, on a new connection (no request id of ours: the
        worker's own tells which worker answered)."""
        assert self._probes is not None
        async with self._probes.get(url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}) as r:
            raw = await r.read()
            code = None
            if r.status != 200:
                code = orjson.loads(raw)["error"]["code"]
            return Probe(time.time(), r.status, r.headers["x-request-id"][:12], code)

    def background(
        self, phase: str, keys: Mapping[str, str], *, concurrency: int, rps: float, stream_share: float = 0.5
    ) -> Background:
        """Start steady load: ``concurrency`` clients sharing ``rps`` requests per second, over ``keys`` (label to
        secret) in turn, a share of them streams; :meth:`Background.stop` ends it."""
        bg = Background(self, phase, dict(keys), concurrency, rps, stream_share)
        bg.task = asyncio.run_coroutine_threadsafe(bg.run(), self._loop)
        return bg


@dataclass
class Background:
    client: Client
    phase: str
    keys: dict[str, str]
    concurrency: int
    rps: float
    stream_share: float
    answers: list[Answer] = field(default_factory=list)
    task: Any = None
    _stop: bool = False
    _next: float = 0.0
    _n: int = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.concurrency)))

    async def _worker(self) -> None:
        labels = list(self.keys)
        while not self._stop:
            await self._pace()
            if self._stop:
                return
            n = self._n = self._n + 1
            label = labels[n % len(labels)]
            stream = (n * self.stream_share) % 1.0 < self.stream_share
            self.answers.append(await self.client.chat(self.keys[label], label, self.phase, stream=stream))

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self._next)
        self._next = at + 1.0 / self.rps
        if at > now:
            await asyncio.sleep(at - now)

    def stop(self) -> list[Answer]:
        """End the load (requests in flight finish) and return its answers."""
        self._stop = True
        self.task.result(TIMEOUT + 10)
        return self.answers


def _judge(a: Answer, raw: bytes, echoed: str | None) -> None:
    """Complete or not, and an error answer's code, from the body."""
    if echoed is None:
        a.error = f"{a.status} not from a gateway (no x-request-id): {raw[:80]!r}"
        return
    if echoed != a.rid:
        a.error = f"x-request-id echoed as {echoed!r}"
        return
    if a.status == 200 and a.stream:
        if raw.endswith(b"data: [DONE]\n\n"):
            a.complete = True
        else:
            a.error = f"stream without [DONE]: {raw[-120:]!r}"
        return
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        a.error = f"not JSON ({a.status}): {raw[:120]!r}"
        return
    if a.status == 200:
        if body.get("choices"):
            a.complete = True
        else:
            a.error = f"no choices: {raw[:120]!r}"
        return
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str) and "type" in err and "code" in err:
        a.complete = True
        a.code, a.type = err["code"], err["type"]
    else:
        a.error = f"not an OpenAI error body ({a.status}): {raw[:120]!r}"


def admin(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """An admin API call to one replica (``url``) with the master key: (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json", "Connection": "close"}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
