"""Watching the server: its RSS, descriptors (by kind: :class:`FdCensus`) and readiness counts (:class:`Probe`),
sampled every second by a thread (:class:`Sampler`)."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..procs import rss_bytes
from .cases import MASTER_KEY

MB = 1024 * 1024


@dataclass
class Sample:
    t: float  # seconds since the load started
    phase: str
    done: int  # requests finished
    rss_mb: float
    fds: int
    tasks: int | None
    usage_pending: int | None


@dataclass
class FdCensus:
    """The server's descriptors by what they are."""

    total: int = 0
    #: connections to the simulators, by simulator (idle ones sit in the gateway's keep-alive pool)
    upstream: dict[str, int] = field(default_factory=dict)
    #: connections from clients (the load; not the probe's own)
    downstream: int = 0
    #: the store's connections (SQLite: open handles on the database file; PostgreSQL: sockets to it), and the
    #: descriptors they hold (SQLite: the database and its WAL per connection, the shared-memory index)
    store_connections: int = 0
    store_fds: int = 0
    #: the rest by kind: files (by name), pipes, anon inodes (epoll, eventfd), the listening socket, ...
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def upstream_total(self) -> int:
        return sum(self.upstream.values())

    @property
    def rest(self) -> int:
        """Every descriptor but the pooled connections (upstream keep-alive, the store's): what must come back to
        its value exactly."""
        return self.total - self.upstream_total - self.store_fds


def _tcp_sockets(pid: int) -> dict[int, tuple[int, int, str]]:
    """socket inode -> (local port, remote port, state) for the TCP sockets visible to ``pid``."""
    out: dict[int, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    out[int(parts[9])] = (lport, rport, parts[3])
        except OSError:
            pass
    return out


class Probe:
    """Reads the server's RSS, descriptors and readiness counts, one reading at a time (the sampler thread and the
    quiet checks share it). Readiness is asked on one persistent connection, told apart in the census."""

    def __init__(
        self, pid: int, port: int, sim_ports: dict[int, str], *, db_file: str | None, db_port: int | None
    ) -> None:
        self.pid = pid
        self.port = port
        self.sim_ports = sim_ports
        self.db_file = db_file
        self.db_port = db_port
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._conn_port = 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0

    def census(self) -> FdCensus:
        with self._lock:
            return self._census()

    def _census(self) -> FdCensus:
        c = FdCensus()
        inodes: list[int] = []
        kinds: Counter[str] = Counter()
        try:
            names = os.listdir(f"/proc/{self.pid}/fd")
        except OSError:
            return c
        for n in names:
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{n}")
            except OSError:
                continue
            c.total += 1
            if target.startswith("socket:["):
                inodes.append(int(target[8:-1]))
            elif self.db_file is not None and Path(target).name.startswith(self.db_file):
                c.store_fds += 1
                c.store_connections += Path(target).name == self.db_file
            elif target.startswith("/"):
                kinds[f"file {Path(target).name}"] += 1
            else:
                kinds[target.split("[", 1)[0].rstrip(":")] += 1  # pipe, anon_inode (epoll, eventfd)
        tcp = _tcp_sockets(self.pid)
        for inode in inodes:
            found = tcp.get(inode)
            if found is None:
                kinds["socket (unix)"] += 1
                continue
            lport, rport, state = found
            if state == "0A":
                kinds["socket (listening)"] += 1
            elif lport == self.port and rport == self._conn_port:
                kinds["socket (the probe's)"] += 1
            elif lport == self.port:
                c.downstream += 1
            elif rport in self.sim_ports:
                sim = self.sim_ports[rport]
                c.upstream[sim] = c.upstream.get(sim, 0) + 1
            elif rport == self.db_port:
                c.store_fds += 1
                c.store_connections += 1
            else:
                kinds[f"socket (to port {rport})"] += 1
        c.kinds = dict(sorted(kinds.items()))
        return c

    def readiness(self) -> dict[str, Any]:
        """The readiness body for the master key, on the probe's persistent connection (opened again if needed)."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self._conn.connect()
                assert self._conn.sock is not None
                self._conn_port = self._conn.sock.getsockname()[1]
            try:
                self._conn.request("GET", "/health/readiness", headers={"Authorization": f"Bearer {MASTER_KEY}"})
                body = self._conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            out: dict[str, Any] = orjson.loads(body)
            return out
        raise AssertionError("unreachable")

    def read(self) -> tuple[float, int, dict[str, Any]]:
        """(RSS MB, descriptors, readiness body or {} when it did not answer)."""
        with self._lock:
            fds = self.fds()
            return rss_bytes(self.pid) / MB, fds, self._ready()

    def snapshot(self) -> tuple[float, FdCensus, dict[str, Any]]:
        """(RSS MB, the descriptors by kind, readiness body or {})."""
        with self._lock:
            census = self._census()
            return rss_bytes(self.pid) / MB, census, self._ready()

    def _ready(self) -> dict[str, Any]:
        try:
            return self.readiness()
        except (OSError, http.client.HTTPException, ValueError):
            return {}


class Sampler(threading.Thread):
    """Samples the server every ``interval`` seconds until stopped."""

    def __init__(self, probe: Probe, interval: float, progress: Callable[[], tuple[str, int]]) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.probe = probe
        self.interval = interval
        self.progress = progress
        self.samples: list[Sample] = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            self.take()
            self._halt.wait(self.interval)

    def take(self) -> Sample:
        phase, done = self.progress()
        rss, fds, ready = self.probe.read()
        s = Sample(
            round(time.monotonic() - self.t0, 2), phase, done, round(rss, 2), fds, ready.get("tasks"),
            ready.get("usage_pending"),
        )  # fmt: skip
        self.samples.append(s)
        return s

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(10)
