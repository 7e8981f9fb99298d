"""The soak's run (:func:`run_soak`): the simulators, a ``modelway serve`` child in front of them, the load in its
phases with the server sampled throughout, SIGTERM, and the usage records read back from the store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from modelway.store.sql import SQLStore

from ..machine import machine_info
from ..phases import raise_nofile
from ..procs import ProcessTable, cpu_seconds, free_port, wait_http_ok
from .cases import SimHost, _new_loop, gateway_config, plan_cases
from .checks import _check_records, _checks, _scan_log, _summarize
from .load import Load
from .probe import FdCensus, Probe, Sampler
from .result import TOLERANCES, SoakOptions, SoakResult


def _store_url(opts: SoakOptions, work: Path, run_id: str) -> tuple[str, str | None]:
    """(store URL, PostgreSQL schema)."""
    if opts.db == "sqlite":
        return f"sqlite:///{work / 'soak.db'}", None
    schema = f"soak_{run_id}"
    sep = "&" if "?" in opts.pg_url else "?"
    return f"{opts.pg_url}{sep}schema={schema}", schema


async def _read_records(url: str, limit: int) -> list[tuple[str, int, str | None]]:
    store = SQLStore(url)
    await store.open()
    try:
        return [(r.request_id, r.status, r.deployment) for r in await store.usage_records(limit=limit)]
    finally:
        await store.aclose()


async def _drop_schema(pg_url: str, schema: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    url = pg_url.replace("postgresql://", "postgresql+asyncpg://", 1).replace("postgres://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def _quiet(probe: Probe, *, tasks_below: int | None, fds_below: int | None, timeout: float) -> float:
    """Wait until the usage ledger has nothing pending, no client connection is open, and the task count (and,
    when given, the descriptors but upstream connections) are at most the given values and stable for 1 s;
    seconds waited. Gives up after ``timeout`` (the end sample is then taken as it is, and the checks fail)."""
    start = time.monotonic()
    last: tuple[int, int] | None = None
    stable_since = start
    while time.monotonic() - start < timeout:
        _, census, ready = probe.snapshot()
        tasks, pending = ready.get("tasks"), ready.get("usage_pending")
        settled = (
            pending == 0
            and census.downstream == 0
            and isinstance(tasks, int)
            and (tasks_below is None or tasks <= tasks_below)
            and (fds_below is None or census.rest <= fds_below)
        )
        now = (tasks if isinstance(tasks, int) else -1, census.rest)
        if not settled or now != last:
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            break
        last = now
        time.sleep(0.2)
    return time.monotonic() - start


def _drain(probe: Probe, timeout: float) -> tuple[float, FdCensus]:
    """Wait until the gateway holds no upstream connection; (seconds waited, the census then)."""
    start = time.monotonic()
    census = probe.census()
    while census.upstream_total and time.monotonic() - start < timeout:
        time.sleep(0.5)
        census = probe.census()
    return time.monotonic() - start, census


def run_soak(opts: SoakOptions) -> SoakResult:
    """Run the soak; the result carries every figure and the verdict (``passed``)."""
    say = opts.say
    warmup = opts.warmup if opts.warmup is not None else max(100, min(5000, opts.requests // 10))
    warmup = min(warmup, opts.requests // 2)
    res = SoakResult(
        command=opts.command,
        started=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        machine={k: v for k, v in machine_info().items() if k not in ("wrk", "nginx")},
        db=opts.db,
        requests=opts.requests,
        concurrency=opts.concurrency,
        warmup=warmup,
        seed=opts.seed,
    )
    t_start = time.perf_counter()
    raise_nofile()
    run_id = os.urandom(4).hex()
    work = Path(tempfile.mkdtemp(prefix="modelway-soak-"))
    procs = ProcessTable(work)
    sims = SimHost()
    schema: str | None = None
    sampler: Sampler | None = None
    failed = True
    try:
        sims.start()
        store_url, schema = _store_url(opts, work, run_id)
        cfg = work / "soak.yaml"
        cfg.write_text(json.dumps(gateway_config(sims, store_url, work), indent=2))
        port = free_port()
        argv = [sys.executable, "-m", "modelway.cli", "serve", "-c", str(cfg), "--port", str(port)]
        say(f"starting modelway serve ({opts.db} store) on :{port}")
        env = procs.python_env()
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "modelway-soak-pycache")  # kept across runs
        child = procs.spawn("modelway", argv, env=env, cwd=work)
        wait_http_ok(child, port, "/health/readiness", timeout=60)
        probe = Probe(
            child.pid,
            port,
            sims.ports(),
            db_file="soak.db" if opts.db == "sqlite" else None,
            db_port=None if opts.db == "sqlite" else (urlsplit(opts.pg_url).port or 5432),
        )
        load = Load(f"http://127.0.0.1:{port}", opts.concurrency, run_id)
        sampler = Sampler(probe, opts.sample_interval, lambda: (load.phase, load.done))

        census = probe.census()
        first = sampler.take()
        res.rss_start_mb, res.fds_start, res.tasks_start = first.rss_mb, census.total, first.tasks
        say(f"idle: RSS {first.rss_mb:.1f} MB, {census.total} descriptors, {first.tasks} tasks")

        plan = list(enumerate(plan_cases(opts.requests, opts.seed)))
        sampler.start()
        runner = asyncio.Runner(loop_factory=_new_loop)
        cpu0, own0 = cpu_seconds(child.pid), time.process_time()
        try:
            load.phase = "warm-up"
            say(f"warm-up: {warmup:,} requests at concurrency {opts.concurrency}")
            res.load_s += runner.run(load.run(plan[:warmup]))
            load.phase = "quiet"
            _quiet(probe, tasks_below=None, fds_below=None, timeout=opts.quiet_timeout)
            rss, census, ready = probe.snapshot()
            res.fds_warm_kinds = census.kinds
            res.rss_warm_mb, res.fds_warm, res.fds_warm_rest = rss, census.total, census.rest
            res.store_connections_warm = census.store_connections
            res.tasks_idle_before = ready.get("tasks")
            say(f"after warm-up, idle: RSS {rss:.1f} MB, {census.total} descriptors ({census.upstream_total} "
                f"upstream), {res.tasks_idle_before} tasks")  # fmt: skip

            load.phase = "load"
            rest = plan[warmup:]
            say(f"load: {len(rest):,} requests")
            reporter = threading.Thread(target=_report_progress, args=(sampler, load, len(plan), say), daemon=True)
            reporter.start()
            res.load_s += runner.run(load.run(rest))
            load.phase = "quiet"
            res.server_cpu_s, res.harness_cpu_s = cpu_seconds(child.pid) - cpu0, time.process_time() - own0
        finally:
            runner.close()
        res.quiet_s = _quiet(
            probe,
            tasks_below=(res.tasks_idle_before or 0) + int(TOLERANCES["task_growth"]),
            fds_below=res.fds_warm_rest + int(TOLERANCES["fd_growth"]),
            timeout=opts.quiet_timeout,
        )
        rss, census, ready = probe.snapshot()
        res.fds_end_kinds = census.kinds
        res.rss_end_mb, res.fds_end, res.fds_end_rest = rss, census.total, census.rest
        res.store_connections_end = census.store_connections
        res.fds_end_upstream, res.fds_end_downstream = dict(sorted(census.upstream.items())), census.downstream
        res.tasks_idle_after = ready.get("tasks")
        say(f"end, idle after {res.quiet_s:.1f} s: RSS {rss:.1f} MB, {census.total} descriptors "
            f"({census.upstream_total} upstream), {res.tasks_idle_after} tasks")  # fmt: skip
        if opts.drain > 0:
            say(f"waiting up to {opts.drain:g} s for the idle upstream connections to close")
            res.drain_s, census = _drain(probe, opts.drain)
            res.fds_drained, res.fds_drained_upstream = census.total, census.upstream_total
            say(f"after {res.drain_s:.1f} s: {census.total} descriptors, {census.upstream_total} upstream")
        sampler.stop()
        probe.close()
        res.samples = sampler.samples
        sampler = None

        say("SIGTERM to the server")
        child.popen.send_signal(signal.SIGTERM)
        try:
            res.exit_code = child.popen.wait(60)
        except Exception:
            res.notes.append("the server did not exit within 60 s of SIGTERM")
        _scan_log(child, res)

        say("reading the usage records")
        records = asyncio.run(_read_records(store_url, limit=opts.requests * 2 + 1000))
        _check_records(res, load, records)
        res.faults = sims.faults_played()
        _summarize(res, load)
        res.checks = _checks(res, drained=opts.drain > 0)
        failed = False
    finally:
        if sampler is not None:  # stopped early by an error
            sampler.stop()
        sims.stop()
        procs.stop_all()
        if schema is not None and not opts.keep:
            try:
                asyncio.run(_drop_schema(opts.pg_url, schema))
            except Exception as exc:
                res.notes.append(f"could not drop the schema {schema}: {exc}")
        res.wall_s = time.perf_counter() - t_start
        if failed or opts.keep:
            say(f"scratch directory (config, server log, store) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return res


def _report_progress(sampler: Sampler, load: Load, total: int, say: Callable[[str], None]) -> None:
    last_done, last_t = load.done, time.monotonic()
    while load.phase == "load":
        time.sleep(10)
        if load.phase != "load" or not sampler.samples:
            break
        s = sampler.samples[-1]
        now = time.monotonic()
        rate = (load.done - last_done) / (now - last_t)
        last_done, last_t = load.done, now
        wrong = sum(st.wrong + st.hung for st in load.stats.values())
        say(f"{load.done:,}/{total:,} done, {rate:,.0f} req/s; RSS {s.rss_mb:.1f} MB, {s.fds} descriptors, "
            f"{s.tasks} tasks, {s.usage_pending} records pending; {wrong} not as expected")  # fmt: skip
