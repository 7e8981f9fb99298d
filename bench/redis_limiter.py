"""What one Redis limiter acquire + release costs in client CPU: the gateway's own RESP client against redis-py,
over plain TCP and over TLS, one pair at a time and 100 at once, on asyncio's loop and on uvloop.

``python -m bench.redis_limiter [--url redis://127.0.0.1:6379/15] [--tls] [-n 5000] [--rounds 3]``

The limiter is :class:`~modelway.limits.redis.RedisLimiter` either way (the same Lua scripts, the same keys); for
the redis-py rows its client is swapped for :class:`RedisPyClient`, a thin adapter over ``redis.asyncio`` (a
connection pool, ``EVALSHA`` with a ``SCRIPT LOAD`` on NOSCRIPT). ``--tls`` starts a throwaway ``redis-server``
with a TLS port and a self-signed certificate made by ``openssl`` (verified as its own CA, hostname checked).
Process CPU (``time.process_time``) is this process's only: Redis runs in its own. The medians of ``--rounds``
interleaved rounds are printed. Numbers are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelway.limits import Limits
from modelway.limits.redis import RedisLimiter
from modelway.limits.resp import Arg, Script

REDIS_URL = os.environ.get("MODELWAY_BENCH_REDIS", "redis://127.0.0.1:6379/15")
LIMITS = Limits(rpm=10**9, tpm=10**12, max_parallel=10**6)


class RedisPyClient:
    """The four calls RedisLimiter makes of its client, over redis-py's asyncio client."""

    def __init__(self, url: str, pool: int | None = None) -> None:
        import redis.asyncio

        if pool is None:  # redis-py's default pool: a new connection whenever none is free
            self._redis = redis.asyncio.Redis.from_url(url)
        else:  # at most ``pool`` connections; callers wait for one (up to 10 s)
            blocking = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=pool, timeout=10)
            self._redis = redis.asyncio.Redis(connection_pool=blocking)

    async def connect(self) -> None:
        return None  # redis-py connects inside each command

    async def execute(self, *args: Arg) -> Any:
        return await self._redis.execute_command(*args)

    async def run_script(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        import redis.exceptions

        try:
            return await self._redis.evalsha(script.sha.decode(), len(keys), *keys, *args)  # type: ignore[misc]
        except redis.exceptions.NoScriptError:
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha.decode(), len(keys), *keys, *args)  # type: ignore[misc]

    async def aclose(self) -> None:
        await self._redis.aclose()


def _limiter(client: str, url: str) -> RedisLimiter:
    limiter = RedisLimiter(url, prefix=f"mw:bench:{uuid.uuid4().hex[:8]}:")
    if client == "redis-py":
        limiter._client = RedisPyClient(url)  # type: ignore[assignment]
    elif client.startswith("redis-py/"):  # redis-py/16: a blocking pool of 16 connections
        limiter._client = RedisPyClient(url, int(client.split("/")[1]))  # type: ignore[assignment]
    return limiter


async def _pairs(limiter: RedisLimiter, n: int, concurrency: int) -> float:
    """CPU µs per acquire + release, ``n`` pairs, ``concurrency`` at a time."""

    async def pair() -> None:
        await limiter.release(await limiter.acquire("k", LIMITS), tokens=10)

    for _ in range(200):  # warm up: connection, scripts loaded, caches
        await pair()
    cpu = time.process_time()
    if concurrency == 1:
        for _ in range(n):
            await pair()
    else:
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await pair()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / n * 1e6


def _measure(client: str, url: str, n: int, concurrency: int, loop: str) -> float:
    async def main() -> float:
        limiter = _limiter(client, url)
        try:
            return await _pairs(limiter, n, concurrency)
        finally:
            await limiter.aclose()

    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


@contextmanager
def _tls_redis() -> Iterator[str]:
    """A throwaway redis-server with a TLS port; the limiter's URL for it."""
    work = Path(tempfile.mkdtemp(prefix="modelway-bench-tls-"))
    proc = None
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost"],
            cwd=work, check=True, capture_output=True,
        )  # fmt: skip
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
             "--bind", "127.0.0.1", "--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem",
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(work)],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the TLS redis-server did not start (built without TLS?)") from None
                time.sleep(0.05)
        yield f"rediss://localhost:{port}/0?ssl_ca_certs={work}/cert.pem"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def run(url: str, tls: bool, n: int, rounds: int, clients: list[str], say: Callable[[str], None] = print) -> None:
    targets = [("tcp", url)]
    with _tls_redis() if tls else _nothing() as tls_url:
        if tls_url is not None:
            targets.append(("tls", tls_url))
        rows: dict[tuple[str, str, str, int], list[float]] = {}
        for _ in range(rounds):
            for transport, target in targets:
                for loop in ("asyncio", "uvloop"):
                    for concurrency in (1, 100):
                        for client in clients:
                            try:
                                us = _measure(client, target, n, concurrency, loop)
                            except Exception as exc:  # redis-py's default pool over TLS, 100 at once: see the doc
                                say(f"{transport} {loop} {client} x{concurrency}: {type(exc).__name__}: {exc}")
                                us = math.nan
                            rows.setdefault((transport, loop, client, concurrency), []).append(us)
    say(f"CPU µs per acquire + release (rpm, tpm, max_parallel), {n} pairs, median of {rounds} rounds")
    say("| transport | loop | client | one at a time | 100 at once |")
    say("|---|---|---|---|---|")
    for transport, _ in targets:
        for loop in ("asyncio", "uvloop"):
            for client in clients:
                one, many = (_cell(rows[(transport, loop, client, c)]) for c in (1, 100))
                say(f"| {transport} | {loop} | {client} | {one} | {many} |")


def _cell(values: list[float]) -> str:
    ok = [v for v in values if not math.isnan(v)]
    if not ok:
        return "failed"
    return f"{statistics.median(ok):.0f}" + ("" if len(ok) == len(values) else f" ({len(values) - len(ok)} failed)")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default=REDIS_URL)
    p.add_argument("--tls", action="store_true", help="also over TLS (a throwaway redis-server; needs openssl)")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--clients",
        default="resp,redis-py,redis-py/16",
        help="comma-separated: resp, redis-py (its default pool), redis-py/N (a blocking pool of N connections)",
    )
    a = p.parse_args()
    run(a.url, a.tls, a.n, a.rounds, a.clients.split(","))


if __name__ == "__main__":
    main()
