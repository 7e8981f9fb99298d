"""The usage ledger at scale (issue 13): fill a SQLite store with usage records through the real write path, then
time what the admin API and ``modelway usage`` read from it.

    python -m bench.ledger                          # 100,000 and 1,000,000 records (~3 min here)
    python -m bench.ledger --records 100000         # one size (~15 s)
    python -m bench.ledger --records 100000 --no-rollups   # the write alone, without the aggregates: their cost
    python -m bench.ledger --migration              # also time the migration over the filled records

For each size, in a fresh SQLite file (in a temporary directory, removed at the end unless ``--keep``):

1. *fill*: N records spread over ``--days`` days (ending now), made up like a gateway's traffic: ``--keys`` keys of
   Zipf-like popularity each calling 1 to 4 of ``--models`` models, each model served by 1 to 3 deployments, the
   endpoints chat/messages/responses/embeddings, 60 % streams with a TTFT, log-normal latencies, 3 % errors, 2 %
   refused before any deployment (``deployment`` None). They go through :class:`modelway.usage.Ledger` (no journal)
   into :meth:`SQLStore.insert_usage`, ``--batch`` at a time, which also keeps the hourly and daily aggregates. A
   progress bar shows the rate. Reported: records per second, µs per record (wall), bytes of database per record,
   aggregate rows.
2. *queries*: each one ``--repeat`` times on the filled store; the median and the slowest are reported. Totals
   (``/admin/usage``) by every grouping over all the data and the last 7 days, by hour over the last 48 hours, with
   a key or a model filter; series (``/admin/usage/series``) per day over 30 days and per hour over 7 days and 48
   hours; a key's spend this month; pages of raw records (``/admin/usage/records``): the newest, a key's, a model's,
   5xx only, an endpoint's, a deep page (``before`` = the middle id).
3. *retention*: one deletion batch (1,000 of the oldest records), as the ledger's writer runs it; the bytes on disk
   per table, and the mean length of each text column of a record (what every record repeats).
4. with ``--migration``: the database made to look as an older modelway left it (records, no aggregates), and
   opened: the time of the migration that fills the aggregates from the records.

The goal (issue 13): every usage query over 1,000,000 records under 200 ms. Exit status 1 when one is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from modelway.store import rollups
from modelway.store.sql import RecordFilter, SQLStore
from modelway.usage import Ledger, UsageRecord
from modelway.usage.ledger import PURGE_BATCH

GOAL_MS = 200.0
ENDPOINTS = (("chat", 0.7), ("messages", 0.12), ("responses", 0.06), ("embeddings", 0.12))


class Traffic:
    """Made-up traffic with the shape of a gateway's: a few busy keys, each on a few models."""

    def __init__(self, *, keys: int, models: int, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.models = [f"model-{m:02d}" for m in range(models)]
        providers = ["openai", "zhipu", "dashscope", "deepseek", "anthropic", "moonshot"]
        self.deployments = {
            m: [f"{rng.choice(providers)}/{m}-{d}" for d in range(rng.randint(1, 3))] for m in self.models
        }
        self.latency = {m: rng.uniform(5.5, 7.5) for m in self.models}  # log-mean: ~250 ms to ~1.8 s
        self.keys = [f"key_{k:016x}" for k in range(keys)]
        self.key_weights = [1 / (k + 1) ** 0.9 for k in range(keys)]
        self.key_models = {k: rng.sample(self.models, rng.randint(1, min(4, models))) for k in self.keys}
        self.key_endpoint = {k: rng.choices([e for e, _ in ENDPOINTS], [w for _, w in ENDPOINTS])[0] for k in self.keys}

    def record(self, i: int, ts: float) -> UsageRecord:
        rng = self.rng
        key = rng.choices(self.keys, self.key_weights)[0]
        model = rng.choice(self.key_models[key])
        endpoint = self.key_endpoint[key] if rng.random() < 0.9 else rng.choice([e for e, _ in ENDPOINTS])
        refused = rng.random() < 0.02
        status = 429 if refused else (rng.choice((500, 502, 504, 499)) if rng.random() < 0.03 else 200)
        stream = endpoint != "embeddings" and rng.random() < 0.6
        pt = 0 if refused else int(rng.lognormvariate(6.0, 1.0))
        ct = 0 if refused or endpoint == "embeddings" else int(rng.lognormvariate(5.0, 1.0))
        latency = rng.uniform(0.2, 3.0) if refused else rng.lognormvariate(self.latency[model], 0.7)
        return UsageRecord(
            ts=ts,
            request_id=f"req-{i}",
            key_id=key,
            model=model,
            deployment=None if refused else rng.choice(self.deployments[model]),
            endpoint=endpoint,
            stream=stream,
            prompt_tokens=pt,
            completion_tokens=ct,
            total_tokens=pt + ct,
            cost=(pt * 0.5 + ct * 1.5) / 1_000_000,
            status=status,
            error=None if status == 200 else "upstream_error",
            latency_ms=latency,
            ttft_ms=latency * rng.uniform(0.05, 0.4) if stream and not refused else None,
            attempts=0 if refused else 1,
        )


class Progress:
    """A one-line progress bar on stderr: done / total, rate, time left."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.start = time.perf_counter()
        self.shown = 0.0
        self.tty = sys.stderr.isatty()
        self.finished = False

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.finished or (done < self.total and now - self.shown < (0.2 if self.tty else 5.0)):
            return
        self.finished = done >= self.total
        self.shown = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate else 0.0
        filled = int(30 * done / self.total)
        bar = "█" * filled + "·" * (30 - filled)
        line = f"{self.label} [{bar}] {done:,}/{self.total:,}  {rate:,.0f}/s  {left:4.0f} s left"
        print(("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        if done >= self.total and self.tty:
            print(file=sys.stderr)


async def fill(store: SQLStore, n: int, *, days: float, traffic: Traffic, batch: int) -> dict[str, Any]:
    """Write ``n`` records through the ledger; what it took."""
    now = time.time()
    start = now - days * 86_400
    ledger = Ledger(store, batch_size=batch, flush_interval=3600)  # flushed here, every batch
    progress = Progress(n, f"fill {n:,}")
    made = 0.0
    t0 = time.perf_counter()
    step = (now - start) / n
    for i in range(n):
        m0 = time.perf_counter()
        ledger.record(traffic.record(i, start + i * step + traffic.rng.random() * step))
        made += time.perf_counter() - m0
        if ledger.pending >= batch:
            await ledger.flush()
            progress.update(i + 1)
    await ledger.flush()
    progress.update(n)
    wall = time.perf_counter() - t0 - made  # the writes, not the making up of records
    await ledger.aclose()
    return {"records": n, "seconds": wall, "per_second": n / wall, "us_per_record": wall / n * 1e6}


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float, Any]:
    out: Any = None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), out


def queries(store: SQLStore, traffic: Traffic, mid_id: int) -> list[tuple[str, bool, Callable[[], Awaitable[Any]]]]:
    """(name, from the aggregates: held to the goal, call)."""
    now = time.time()
    week, two_days, month = now - 7 * 86_400, now - 2 * 86_400, now - 30 * 86_400
    busy_key, busy_model = traffic.keys[0], traffic.key_models[traffic.keys[0]][0]
    month_start = time.mktime(time.strptime(time.strftime("%Y-%m-01", time.gmtime(now)), "%Y-%m-%d")) - time.timezone
    out: list[tuple[str, bool, Callable[[], Awaitable[Any]]]] = []
    for group_by in ("key", "model", "deployment", "endpoint", "day"):
        out.append((f"usage group_by={group_by}, all", True, lambda g=group_by: store.usage_summary(group_by=g)))
        out.append(
            (f"usage group_by={group_by}, 7 days", True, lambda g=group_by: store.usage_summary(group_by=g, since=week))
        )
    out += [
        ("usage group_by=hour, 48 h", True, lambda: store.usage_summary(group_by="hour", since=two_days)),
        ("usage group_by=model, key_id=", True, lambda: store.usage_summary(group_by="model", key_id=busy_key)),
        ("usage group_by=key, model=", True, lambda: store.usage_summary(group_by="key", model=busy_model)),
        (
            "series day, 30 days, by model",
            True,
            lambda: store.usage_series(bucket="day", since=month, until=now, group_by="model"),
        ),
        (
            "series day, 30 days, by key",
            True,
            lambda: store.usage_series(bucket="day", since=month, until=now, group_by="key"),
        ),
        ("series hour, 7 days", True, lambda: store.usage_series(bucket="hour", since=week, until=now)),
        (
            "series hour, 7 days, by deployment",
            True,
            lambda: store.usage_series(bucket="hour", since=week, until=now, group_by="deployment"),
        ),
        (
            "series hour, 48 h, by key",
            True,
            lambda: store.usage_series(bucket="hour", since=two_days, until=now, group_by="key"),
        ),
        ("spend of the busiest key, this month", True, lambda: store.spend(busy_key, since=month_start)),
        ("records: newest 100", False, lambda: store.usage_page(limit=100)),
        ("records: a key's newest 100", False, lambda: store.usage_page(RecordFilter(key_id=busy_key), limit=100)),
        ("records: a model's newest 100", False, lambda: store.usage_page(RecordFilter(model=busy_model), limit=100)),
        ("records: 5xx, newest 100", False, lambda: store.usage_page(RecordFilter(status=(500, 600)), limit=100)),
        (
            "records: endpoint=responses, 100",
            False,
            lambda: store.usage_page(RecordFilter(endpoint="responses"), limit=100),
        ),
        ("records: deep page (before=middle)", False, lambda: store.usage_page(RecordFilter(before=mid_id), limit=100)),
        ("records: one by record_id", False, lambda: store.usage_record("legacy-does-not-exist")),
    ]
    return out


async def run_size(n: int, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    path = directory / f"ledger-{n}.db"
    store = SQLStore(f"sqlite:///{path}")
    await store.open()
    traffic = Traffic(keys=args.keys, models=args.models, seed=args.seed)
    try:
        written = await fill(store, n, days=args.days, traffic=traffic, batch=args.batch)
        async with store._connect() as conn:
            counts = {}
            for table in ("mw_usage", "mw_usage_hourly", "mw_usage_daily"):
                counts[table] = (await conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            mid = (await conn.exec_driver_sql("SELECT MAX(id) / 2 FROM mw_usage")).scalar_one()
        size = sum(p.stat().st_size for p in directory.glob(f"ledger-{n}.db*"))  # noqa: ASYNC240
        results = []
        for name, held, fn in queries(store, traffic, int(mid)):
            median, worst, out = await timed(fn, args.repeat)
            rows = len(out) if isinstance(out, list) else len(out[0]) if isinstance(out, tuple) else "-"
            results.append({"query": name, "median_ms": median, "max_ms": worst, "held": held, "rows": rows})
        sizes = await table_sizes(store)
        t0 = time.perf_counter()
        deleted = await store.delete_usage_before(time.time() - args.days * 86_400 / 2, limit=PURGE_BATCH)
        purge_ms = (time.perf_counter() - t0) * 1000
        migrate_s = await migration(store) if args.migration else None
    finally:
        await store.aclose()
    return {
        "records": n,
        "fill": written,
        "rows": counts,
        "db_bytes": size,
        "bytes_per_record": size / n,
        "tables": sizes,
        "queries": results,
        "purge": {"deleted": deleted, "ms": purge_ms},
        "migration_seconds": migrate_s,
    }


async def table_sizes(store: SQLStore) -> dict[str, Any]:
    """Bytes on disk per table (its indexes included) and the raw records' text columns' mean lengths: what each
    record repeats (SQLite's dbstat)."""
    async with store._connect() as conn:
        pages = (await conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all()
        owners = dict((await conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master")).all())
        lengths = (
            await conn.exec_driver_sql(
                "SELECT AVG(LENGTH(request_id)), AVG(LENGTH(record_id)), AVG(LENGTH(key_id)), AVG(LENGTH(model)), "
                "AVG(LENGTH(deployment)), AVG(LENGTH(endpoint)), AVG(LENGTH(error)) FROM mw_usage"
            )
        ).one()
    tables: dict[str, int] = {}
    for name, size in pages:
        owner = owners.get(name, name)
        tables[owner] = tables.get(owner, 0) + int(size)
    names = ("request_id", "record_id", "key_id", "model", "deployment", "endpoint", "error")
    return {"bytes": tables, "text_lengths": {k: round(float(v or 0), 1) for k, v in zip(names, lengths, strict=True)}}


async def migration(store: SQLStore) -> float:
    """Seconds to open the filled database as an older modelway left it (records, no aggregates): the migration
    that fills the aggregates from the records (the database is changed: the last step of a run)."""
    async with store._connect(write=True) as conn:
        for r in rollups.ROLLUPS:
            await conn.exec_driver_sql(f"DROP TABLE {r.name}")
        for stmt in (
            "DROP INDEX mw_usage_key_id",
            "DROP INDEX mw_usage_model_id",
            "CREATE INDEX mw_usage_key_ts ON mw_usage (key_id, ts)",
            "CREATE INDEX mw_usage_model_ts ON mw_usage (model, ts)",
            "UPDATE mw_schema_version SET version = 5",
        ):
            await conn.exec_driver_sql(stmt)
    await store.aclose()
    t0 = time.perf_counter()
    await store.open()
    return time.perf_counter() - t0


def report(r: dict[str, Any]) -> str:
    f = r["fill"]
    lines = [
        f"## {r['records']:,} records",
        "",
        f"fill: {f['seconds']:.1f} s, {f['per_second']:,.0f} records/s, {f['us_per_record']:.1f} µs per record; "
        f"database {r['db_bytes'] / 1e6:,.0f} MB ({r['bytes_per_record']:.0f} bytes per record); "
        f"{r['rows']['mw_usage_hourly']:,} hourly and {r['rows']['mw_usage_daily']:,} daily aggregate rows",
        f"retention: one batch deleted {r['purge']['deleted']:,} records in {r['purge']['ms']:.0f} ms",
        "on disk (MB, indexes included): "
        + ", ".join(f"{t} {b / 1e6:,.1f}" for t, b in sorted(r["tables"]["bytes"].items(), key=lambda kv: -kv[1])[:8]),
        "a record's text columns, mean characters: "
        + ", ".join(f"{k} {v}" for k, v in r["tables"]["text_lengths"].items()),
    ]
    if r["migration_seconds"] is not None:
        lines.append(f"migration 6 on an older database of {r['records']:,} records: {r['migration_seconds']:.1f} s")
    lines += [
        "",
        "| query | rows | median ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for q in r["queries"]:
        flag = " ⚠" if q["held"] and q["max_ms"] > GOAL_MS else ""
        lines.append(f"| {q['query']} | {q['rows']} | {q['median_ms']:.1f} | {q['max_ms']:.1f}{flag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--records", default="100000,1000000", help="sizes, comma-separated (default %(default)s)")
    parser.add_argument("--days", type=float, default=30.0, help="the records' span, ending now (default 30)")
    parser.add_argument("--keys", type=int, default=200, help="virtual keys (default 200)")
    parser.add_argument("--models", type=int, default=30, help="models (default 30)")
    parser.add_argument("--batch", type=int, default=500, help="records per write, as usage.batch_size (500)")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each query (default 7)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-rollups", action="store_true", help="write without the aggregates (their cost)")
    parser.add_argument(
        "--migration", action="store_true", help="last, time the migration that fills the aggregates of old records"
    )
    parser.add_argument("--dir", help="where the databases go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", help="also write the results here as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.records.split(",") if s.strip()]
    if args.no_rollups:  # the aggregates' share of the write: nothing to add up (SQLStore looks it up per write)
        rollups.deltas = lambda recs: [[] for _ in rollups.ROLLUPS]  # type: ignore[assignment]
    directory = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mw-ledger-"))
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            for old in directory.glob(f"ledger-{n}.db*"):
                old.unlink()
            r = asyncio.run(run_size(n, args, directory))
            results.append(r)
            print(report(r), flush=True)
            print(flush=True)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(directory, ignore_errors=True)
        elif args.keep:
            print(f"databases kept in {directory}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    slow = [
        (r["records"], q["query"], q["max_ms"])
        for r in results
        if r["records"] >= 1_000_000 and not args.no_rollups
        for q in r["queries"]
        if q["held"] and q["max_ms"] > GOAL_MS
    ]
    for n, name, ms in slow:
        print(f"over the goal: {name} at {n:,} records: {ms:.0f} ms (goal {GOAL_MS:.0f} ms)", file=sys.stderr)
    return 1 if slow else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
