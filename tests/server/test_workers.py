"""``modelway serve --workers 2`` with the control plane on: limits stay exact across worker processes (Redis),
metrics add up over the workers, and every worker's usage records reach the store by the time the server exits.

A real server process with two uvicorn workers, the Redis on this machine, a SQLite store in a temporary directory,
and the OpenAI simulator as the upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from modelway.store.sql import SQLStore
from modelway.testing import OpenAISimulator
from services import redis_url

pytestmark = pytest.mark.usefixtures("redis_server")

MASTER = "sk-workers-test"
RPM = 40
SENT = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], workers: int, seconds: float = 30) -> None:
    """Until ``workers`` different processes have answered (the request id's prefix is per process)."""
    deadline = time.monotonic() + seconds
    seen: set[str] = set()
    while len(seen) < workers:
        try:
            with urllib.request.urlopen(url + "/health/readiness", timeout=2) as r:
                if r.status == 200:
                    seen.add(r.headers["x-request-id"][:12])
        except OSError:
            pass
        assert proc.poll() is None, "modelway serve exited"
        assert time.monotonic() < deadline, f"modelway serve: {len(seen)} of {workers} workers ready"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, subprocess.Popen[bytes], str]]:
    tmp = tmp_path_factory.mktemp("workers")
    with OpenAISimulator() as sim:
        db = tmp / "gw.db"
        cfg = tmp / "gw.yaml"
        dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
        cfg.write_text(
            json.dumps(
                {
                    "server": {"master_key": MASTER},
                    "store": {"url": f"sqlite:///{db}", "redis_url": redis_url(15)},
                    "usage": {"spill_path": str(tmp / "spill.jsonl")},
                    "models": [{"name": "gpt", "deployments": [dep]}],
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
        made = subprocess.run(
            [sys.executable, "-m", "modelway.cli", "keys", "create", "-c", str(cfg), "--name", "w", "--rpm", str(RPM),
             "--json"],
            env=env, capture_output=True, check=True,
        )  # fmt: skip
        secret = json.loads(made.stdout)["key"]
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelway.cli", "serve", "-c", str(cfg), "--port", str(port), "--workers", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, workers=2)
            yield url, db, proc, secret
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=20)


async def _burst(url: str, key: str, n: int) -> tuple[Counter[int], Counter[str]]:
    statuses: Counter[int] = Counter()
    workers: Counter[str] = Counter()
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    # a connection per request, so the kernel spreads them over both workers' accepts
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20, force_close=True)) as s:

        async def one() -> None:
            async with s.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
                statuses[r.status] += 1
                workers[r.headers["x-request-id"][:12]] += 1  # the per-process prefix of the request id

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses, workers


def test_rate_limits_metrics_and_usage_across_two_workers(
    served: tuple[str, Path, subprocess.Popen[bytes], str],
) -> None:
    url, db, proc, secret = served
    left = 60 - time.time() % 60
    if left < 10:  # the limit counts per calendar minute: keep the burst inside one
        time.sleep(left + 0.2)
    statuses, workers = asyncio.run(_burst(url, secret, SENT))
    assert statuses == {200: RPM, 429: SENT - RPM}
    assert len(workers) == 2, f"one worker answered everything: {workers}"

    # any worker answers for both: its own values and the other's snapshot (at most half a second old)
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if line.startswith("modelway_requests_total{"):
                counts[line.split('status="')[1][:3]] += int(float(line.rsplit(" ", 1)[1]))
        if counts == {"200": RPM, "429": SENT - RPM} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counts == {"200": RPM, "429": SENT - RPM}
    assert "modelway_requests_in_flight 0.0" in text

    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -15), err.decode()

    async def statuses_in_store() -> Counter[int]:
        store = SQLStore(f"sqlite:///{db}")
        await store.open()
        try:
            return Counter(r.status for r in await store.usage_records(limit=1000))
        finally:
            await store.aclose()

    assert asyncio.run(statuses_in_store()) == {200: RPM, 429: SENT - RPM}
