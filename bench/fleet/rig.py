"""The fleet on this machine: a fresh PostgreSQL database, two upstreams, N ``modelway serve --workers W`` replicas on
``deploy/modelway-fleet.yaml`` and nginx in front of them on ``deploy/nginx/nginx.conf``.

Every child runs in a session of its own (a replica's supervisor and its workers are one process group) and gets
``PR_SET_PDEATHSIG`` (:mod:`bench.procs`); :meth:`Fleet.close` stops every group still running (SIGTERM, then
SIGKILL) and drops the database, whatever happened before. Replicas take SIGTERM at their supervisor only, as
``docker stop`` and Kubernetes send it (through ``tini``) to a container's first process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from modelway.config import Price

from ..procs import Child, ProcessTable, free_port, http_get_status
from .upstream import API_KEY, USAGE

__all__ = [
    "COST",
    "MASTER",
    "MODEL",
    "Fleet",
    "FleetOptions",
    "Replica",
    "nginx_path",
]

ROOT = Path(__file__).resolve().parents[2]
FLEET_CONFIG = ROOT / "deploy" / "modelway-fleet.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
MASTER = "sk-fleet-master-" + secrets.token_hex(8)
#: the model every request asks for: two deployments, one on each upstream
MODEL = "chat"
#: per million tokens: the upstreams' usage (10, 20) costs 0.0625, a binary fraction (budgets add up exactly)
PRICE = Price(input=2500.0, output=1875.0)
COST = PRICE.cost(*USAGE)
#: the usage journal's directory beside the spill file (the config's default)
JOURNAL = "modelway-usage-journal"


def nginx_path() -> str | None:
    """Debian's nginx (or one on PATH), or ``None``."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@dataclass
class FleetOptions:
    pg_url: str  # a PostgreSQL server (its database is only used to create the fleet's own)
    redis_url: str
    replicas: int = 3
    workers: int = 2
    key_refresh: float = 5.0
    latency: float = 0.05  # the upstreams' delay before each answer
    chunk_delay: float = 0.02  # between stream events
    work: Path | None = None  # scratch directory (default: a new temporary one, removed unless keep)
    keep: bool = False


@dataclass(eq=False)
class Replica:
    """One ``modelway serve --workers W`` on ``port``, restartable; its usage spill file and journal in ``home``."""

    index: int
    port: int
    home: Path
    config: Path
    fleet: Fleet
    child: Child | None = None
    starts: int = 0
    #: request-id prefixes of its worker processes, as of its last readiness (one per worker)
    workers: set[str] = field(default_factory=set)
    #: processes of its group still running after its supervisor exited on SIGTERM (killed; must stay 0)
    stragglers: int = 0

    @property
    def name(self) -> str:
        return f"r{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def addr(self) -> str:
        """How nginx names it in ``$upstream_addr``."""
        return f"127.0.0.1:{self.port}"

    @property
    def journal(self) -> Path:
        return self.home / JOURNAL

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def start(self) -> None:
        assert not self.alive(), f"{self.name} is running"
        self.starts += 1
        argv = [sys.executable, "-m", "modelway.cli", "serve", "-c", str(self.config), "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(self.fleet.opts.workers)]  # fmt: skip
        self.child = self.fleet.procs.spawn(f"{self.name}-{self.starts}", argv, env=self.fleet.env)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until every worker answered its readiness 200 (told apart by their request ids' prefixes); seconds."""
        assert self.child is not None
        t0 = time.monotonic()
        seen: set[str] = set()
        while len(seen) < self.fleet.opts.workers:
            try:
                request = urllib.request.Request(self.url + "/health/readiness", headers={"Connection": "close"})
                with urllib.request.urlopen(request, timeout=2) as r:
                    if r.status == 200:
                        seen.add(r.headers["x-request-id"][:12])
            except OSError:
                pass
            if not self.child.alive():
                raise RuntimeError(f"{self.name} exited with {self.child.popen.returncode}:\n{self.child.log_tail(40)}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(
                    f"{self.name}: {len(seen)} workers ready after {timeout} s:\n{self.child.log_tail()}"
                )
            time.sleep(0.02)
        self.workers = seen
        return time.monotonic() - t0

    def terminate(self, timeout: float = 60.0, *, signalled: float | None = None) -> tuple[int | None, float]:
        """SIGTERM to the supervisor (unless it was sent at ``signalled``, a ``time.monotonic()``); its exit status
        (``None``: still running after ``timeout``, then killed) and the seconds it took."""
        assert self.child is not None
        t0 = time.monotonic() if signalled is None else signalled
        if signalled is None:
            self.child.popen.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        self.stragglers += self.fleet.reap(self.child)
        return rc, took

    def kill(self) -> None:
        """SIGKILL to the whole process group: the supervisor and its workers, at once."""
        assert self.child is not None
        os.killpg(self.child.pid, signal.SIGKILL)
        self.child.popen.wait(10)
        self.fleet.reap(self.child)

    def segments(self) -> list[Path]:
        """The usage journal's segment files."""
        if not self.journal.is_dir():
            return []
        return sorted(p for p in self.journal.rglob("*") if p.is_file() and "journal-" in p.name)

    def log_tail(self, lines: int = 30) -> str:
        return self.child.log_tail(lines) if self.child is not None else ""


class Fleet:
    """See the module docstring. ``with Fleet(opts) as fleet:`` starts it all and stops it all."""

    def __init__(self, opts: FleetOptions, say: Callable[[str], None] = lambda msg: None) -> None:
        self.opts = opts
        self.say = say
        self.run_id = secrets.token_hex(4)
        self._own_work = opts.work is None
        self.work = Path(opts.work) if opts.work is not None else Path(tempfile.mkdtemp(prefix="modelway-fleet-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.procs = ProcessTable(self.work)
        self.database = f"mw_fleet_{self.run_id}"
        self.store_url = _with_database(opts.pg_url, self.database)
        self.redis_url = opts.redis_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
        self.env.update(MODELWAY_MASTER_KEY=MASTER, MODELWAY_DB_URL=self.store_url, MODELWAY_REDIS_URL=self.redis_url)
        #: the upstreams, by name: their ports; the deployment each one serves (``provider/model``)
        self.upstreams: dict[str, int] = {}
        self.deployments: dict[str, str] = {}
        self.replicas: list[Replica] = []
        self.nginx: Child | None = None
        self.lb_port = 0
        self._db_made = False

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def __enter__(self) -> Fleet:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start ----------------------------------------------------------------------------------------------------
    def start(self) -> None:
        nginx = nginx_path()
        if nginx is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        asyncio.run(_create_database(self.opts.pg_url, self.database))
        self._db_made = True
        for name in ("a", "b"):
            port = free_port()
            argv = [sys.executable, "-m", "bench.fleet.upstream", "--port", str(port),
                    "--latency", str(self.opts.latency), "--chunk-delay", str(self.opts.chunk_delay)]  # fmt: skip
            child = self.procs.spawn(f"upstream-{name}", argv, env=self.env, cwd=ROOT)
            self.upstreams[name] = port
            self.deployments[name] = f"openai/fleet-{name}-{self.run_id}"
            _wait_port(child, port, "/stats", {"Authorization": f"Bearer {API_KEY}"})
        config = self._gateway_config()
        for i in range(self.opts.replicas):
            home = self.work / f"r{i}"
            home.mkdir(exist_ok=True)
            config["usage"]["spill_path"] = str(home / "usage-spill.jsonl")
            path = home / "modelway.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            self.replicas.append(Replica(i, free_port(), home, path, self))
        # all at once (the first to open the database makes its tables, under an advisory lock)
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            r.wait_ready()
        self.lb_port = free_port()
        conf = self.work / "nginx.conf"
        conf.write_text(nginx_conf(self.replicas, self.lb_port, self.work / "nginx-access.log"))
        argv = [nginx, "-p", f"{self.work}/", "-c", str(conf), "-g", f"pid {self.work}/nginx.pid; daemon off;"]
        self.nginx = self.procs.spawn("nginx", argv)
        _wait_port(self.nginx, self.lb_port, "/nginx-health")
        self.say(
            f"fleet: {len(self.replicas)} replicas x {self.opts.workers} workers on ports "
            f"{', '.join(str(r.port) for r in self.replicas)}, nginx on {self.lb_port}; database {self.database}; "
            f"scratch {self.work}"
        )

    def _gateway_config(self) -> dict[str, Any]:
        """deploy/modelway-fleet.yaml with this run's models (two deployments of one model, one per upstream) and
        ``key_refresh``; the rest as shipped (secrets and store URLs from the environment)."""
        config = yaml.safe_load(FLEET_CONFIG.read_text())
        config["server"]["host"] = "127.0.0.1"
        config["store"]["key_refresh"] = self.opts.key_refresh
        price = {"input": PRICE.input, "output": PRICE.output}
        deps = [
            {"model": self.deployments[name], "api_key": API_KEY, "api_base": f"http://127.0.0.1:{port}/v1"}
            for name, port in self.upstreams.items()
        ]
        config["models"] = [{"name": MODEL, "price": price, "deployments": deps}]
        return dict(config)

    # -- stop -----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process (SIGTERM, SIGKILL to the group after 30 s) and drop the database."""
        for r in self.replicas:
            if r.alive() and r.child is not None:
                r.child.popen.send_signal(signal.SIGTERM)  # all at once: their drains overlap
        for child in list(self.procs.children):
            if child.alive():
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in list(self.procs.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"fleet: {child.name} did not stop in 30 s after SIGTERM: killed")
            self.reap(child)
        if self._db_made:
            try:
                asyncio.run(_drop_database(self.opts.pg_url, self.database))
            except Exception as exc:  # reported, never hidden: the database stays behind
                self.say(f"fleet: could not drop database {self.database}: {exc}")
            self._db_made = False
        if self._own_work and not self.opts.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def reap(self, child: Child) -> int:
        """SIGKILL whatever is left of ``child``'s process group (nothing, normally); how many were left."""
        left: list[int] = []
        deadline = time.monotonic() + 2.0  # (a process on its way out: multiprocessing's resource tracker, say)
        while time.monotonic() < deadline:
            left = _group_members(child.pid)
            if not left:
                break
            time.sleep(0.05)
        if left:
            names = [_cmdline(pid)[:100] for pid in left]
            self.say(f"fleet: {len(left)} processes of {child.name}'s group still ran: killed: {names}")
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if child.popen.poll() is None:
            child.popen.wait(10)
        if child in self.procs.children:
            self.procs.children.remove(child)
        return len(left)

    # -- what the harness asks ------------------------------------------------------------------------------------
    def replica_of(self, upstream_addr: str | None) -> Replica | None:
        """The replica that answered, from nginx's ``X-Upstream-Addr`` (the last address tried)."""
        if not upstream_addr:
            return None
        last = upstream_addr.split(",")[-1].strip()
        return next((r for r in self.replicas if r.addr == last), None)

    def served(self, upstream: str) -> int:
        """Chat requests the upstream ``a`` or ``b`` answered so far."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.upstreams[upstream]}/stats", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return int(json.loads(r.read())["served"])


def nginx_conf(replicas: list[Replica], port: int, access_log: Path) -> str:
    """deploy/nginx/nginx.conf for this machine: the replicas as the upstream's servers, listening on ``port``, an
    access log naming the replica, and each answer saying which replica it came from (``X-Upstream-Addr``)."""
    text = NGINX_CONF.read_text()
    found = re.search(r"^ *server gateway:4000 .*\n", text, re.M)
    if found is None:
        raise RuntimeError("deploy/nginx/nginx.conf changed: no 'server gateway:4000 ...' line")
    server = found.group(0)
    pieces = [
        (server, "".join(server.replace("gateway:4000", r.addr) for r in replicas)),
        ("        listen 4000 backlog=4096;\n", f"        listen 127.0.0.1:{port} backlog=4096;\n"),
        ("        listen [::]:4000 backlog=4096;\n", ""),
        (
            "            proxy_pass http://modelway;\n",
            "            proxy_pass http://modelway;\n            add_header X-Upstream-Addr $upstream_addr always;\n",
        ),
        (
            "    access_log off;\n",
            '    log_format fleet \'$msec $status $upstream_addr $upstream_status $request_time "$request" '
            "$http_x_request_id';\n"
            f"    access_log {access_log} fleet buffer=32k flush=1s;\n",
        ),
    ]
    for old, new in pieces:
        if old not in text:
            raise RuntimeError(f"deploy/nginx/nginx.conf changed: {old.strip()!r} not found")
        text = text.replace(old, new, 1)
    return text


def _wait_port(child: Child, port: int, path: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 30
    while http_get_status(port, path, headers=headers) != 200:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name}: GET {path} not 200 in 30 s:\n{child.log_tail()}")
        time.sleep(0.05)


def _group_members(pgid: int) -> list[int]:
    """Living processes (not zombies) of the process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


async def _create_database(pg_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_database(pg_url, urlsplit(pg_url).path.lstrip("/") or "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def _drop_database(pg_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_database(pg_url, urlsplit(pg_url).path.lstrip("/") or "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()
