"""Usage aggregates that outlive the raw records: per UTC hour and per UTC day, per key, model, deployment and
endpoint, with fixed-bucket latency and TTFT histograms (so percentiles need no raw record).

Both tables (``mw_usage_hourly``, ``mw_usage_daily``) are kept up to date in the transaction that stores the records
(:func:`deltas` folds a batch into one row per hour or day and group, then an upsert adds them), and are filled from
the existing records by the migration that creates them. A query over a range reads whole days from the daily table
and the hours at its edges from the hourly one (:func:`split`): the daily table is there because summing the hours
of a month of a busy gateway (a row per hour per key, model, deployment and endpoint) took seconds.

``None`` key ids and deployments are stored as ``''`` in the aggregates: NULL is never equal to NULL in a primary
key, so an upsert would never find the row to add to.

Nothing here does I/O; :mod:`.usage_queries` reads the tables and :mod:`.migrations` creates them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Double, MetaData, String, Table

from ..usage.records import UsageRecord

__all__ = [
    "DAY",
    "DIMENSIONS",
    "HISTOGRAM_COLUMNS",
    "HOUR",
    "LATENCY_BOUNDS_MS",
    "METRICS",
    "Plan",
    "daily",
    "deltas",
    "hourly",
    "percentile",
    "split",
]

HOUR = 3600
DAY = 86_400

#: the histogram buckets' upper bounds in milliseconds (a value ``v`` is in the first bucket with ``v <= bound``; one
#: more bucket holds what is above the last bound). Frozen: they are the columns the migration creating the tables
#: made (``latency_h00`` ...), so other bounds would be a new migration. Neighbouring bounds are at most 2.5 times
#: apart (1.5 between 100 ms and 20 s), which bounds how far an interpolated percentile can be from the true one.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    *(10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000),
    *(3000, 5000, 7500, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000),
)
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
LATENCY_HIST = tuple(f"latency_h{i:02d}" for i in range(BUCKETS))
TTFT_HIST = tuple(f"ttft_h{i:02d}" for i in range(BUCKETS))
HISTOGRAM_COLUMNS = LATENCY_HIST + TTFT_HIST

#: what identifies an aggregate row besides its hour or day
DIMENSIONS = ("key_id", "model", "deployment", "endpoint")
#: the sums every aggregate row holds: requests, errors (status 400 or more), tokens, cost, the latency sum (its count
#: is ``requests``), the TTFT sum and count (streams that produced output), then the histograms
SUMS = (
    *("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost"),
    *("latency_ms_sum", "ttft_ms_sum", "ttft_count"),
)
METRICS = SUMS + HISTOGRAM_COLUMNS
_FLOATS = frozenset({"cost", "latency_ms_sum", "ttft_ms_sum"})
_LAT0 = len(SUMS)
_TTFT0 = _LAT0 + BUCKETS

_meta = MetaData()


def _table(name: str, time_column: str) -> Table:
    return Table(
        name,
        _meta,
        Column(time_column, BigInteger, primary_key=True),
        *(Column(d, String, primary_key=True) for d in DIMENSIONS),
        *(Column(m, Double if m in _FLOATS else BigInteger) for m in METRICS),
    )


#: one row per UTC hour (``hour``: its start, Unix seconds) and group
hourly = _table("mw_usage_hourly", "hour")
#: one row per UTC day (``day``: its start, Unix seconds) and group: the sum of that day's hours
daily = _table("mw_usage_daily", "day")


def table_ddl(name: str, time_column: str, without_rowid: str) -> str:
    """``CREATE TABLE`` of an aggregate table (for the migration; ``without_rowid`` is SQLite's clause or '')."""
    cols = [f"{time_column} BIGINT NOT NULL", *(f"{d} TEXT NOT NULL" for d in DIMENSIONS)]
    for m in METRICS:
        cols.append(f"{m} {'DOUBLE PRECISION' if m in _FLOATS else 'BIGINT'} NOT NULL DEFAULT 0")
    cols.append(f"PRIMARY KEY ({time_column}, {', '.join(DIMENSIONS)})")
    return f"CREATE TABLE {name} (\n    " + ",\n    ".join(cols) + f"\n){without_rowid}"


def _bucket_sql(column: str, i: int) -> str:
    bounds = LATENCY_BOUNDS_MS
    if i == 0:
        cond = f"{column} <= {bounds[0]}"
    elif i == len(bounds):
        cond = f"{column} > {bounds[-1]}"
    else:
        cond = f"{column} > {bounds[i - 1]} AND {column} <= {bounds[i]}"
    return f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"


def backfill_hourly_sql(hour_expr: str) -> str:
    """Fill ``mw_usage_hourly`` from every stored record (``hour_expr``: a record's hour start, per dialect)."""
    sums = [
        "COUNT(*)",
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
        *(f"SUM({c})" for c in ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms")),
        "COALESCE(SUM(ttft_ms), 0)",
        "COUNT(ttft_ms)",
        *(_bucket_sql("latency_ms", i) for i in range(BUCKETS)),
        *(_bucket_sql("ttft_ms", i) for i in range(BUCKETS)),
    ]
    names = ", ".join(("hour", *DIMENSIONS, *METRICS))
    return (
        f"INSERT INTO mw_usage_hourly ({names}) SELECT {hour_expr}, COALESCE(key_id, ''), model, "
        f"COALESCE(deployment, ''), endpoint, {', '.join(sums)} FROM mw_usage GROUP BY 1, 2, 3, 4, 5"
    )


def backfill_daily_sql() -> str:
    """Fill ``mw_usage_daily`` from ``mw_usage_hourly``."""
    names = ", ".join(("day", *DIMENSIONS, *METRICS))
    sums = ", ".join(f"SUM({m})" for m in METRICS)
    return (
        f"INSERT INTO mw_usage_daily ({names}) SELECT hour - hour % {DAY}, {', '.join(DIMENSIONS)}, {sums} "
        "FROM mw_usage_hourly GROUP BY 1, 2, 3, 4, 5"
    )


# -- the write side ---------------------------------------------------------------------------------------------------

Key = tuple[int, str, str, str, str]


def deltas(records: Iterable[UsageRecord]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What ``records`` add to the hourly and to the daily table: one tuple per row, ``(time, *DIMENSIONS,
    *METRICS)``, sorted by primary key (concurrent writers then lock rows in the same order: no deadlock)."""
    hours: dict[Key, list[Any]] = {}
    width = len(METRICS)
    bounds = LATENCY_BOUNDS_MS
    for r in records:
        key = (int(r.ts // HOUR) * HOUR, r.key_id or "", r.model, r.deployment or "", r.endpoint)
        row = hours.get(key)
        if row is None:
            row = hours[key] = [0] * width
            row[5] = row[6] = row[7] = 0.0
        row[0] += 1
        if r.status >= 400:
            row[1] += 1
        row[2] += r.prompt_tokens
        row[3] += r.completion_tokens
        row[4] += r.total_tokens
        row[5] += r.cost
        row[6] += r.latency_ms
        row[_LAT0 + bisect.bisect_left(bounds, r.latency_ms)] += 1
        if r.ttft_ms is not None:
            row[7] += r.ttft_ms
            row[8] += 1
            row[_TTFT0 + bisect.bisect_left(bounds, r.ttft_ms)] += 1
    days: dict[Key, list[Any]] = {}
    for key, row in hours.items():
        dkey = (key[0] - key[0] % DAY, key[1], key[2], key[3], key[4])
        acc = days.get(dkey)
        if acc is None:
            days[dkey] = list(row)
        else:
            for i, v in enumerate(row):
                acc[i] += v
    return (
        [(*k, *v) for k, v in sorted(hours.items())],
        [(*k, *v) for k, v in sorted(days.items())],
    )


# -- the read side ----------------------------------------------------------------------------------------------------


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of the values counted in ``hist`` (one count per bucket of
    :data:`LATENCY_BOUNDS_MS`), interpolated linearly inside its bucket; ``None`` when nothing was counted. In the
    last bucket (above the last bound) it is that bound: a value at least that large."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            lo = float(LATENCY_BOUNDS_MS[i - 1]) if i else 0.0
            if i == len(LATENCY_BOUNDS_MS):
                return lo
            hi = float(LATENCY_BOUNDS_MS[i])
            return round(lo + (hi - lo) * (rank - seen) / count, 1)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])  # not reached: the counts sum to total


def latency_summary(hist: Sequence[int]) -> dict[str, float | None]:
    """``p50_ms``, ``p95_ms`` and ``ttft_p50_ms`` of a row's histograms (both, one after the other)."""
    return {
        "p50_ms": percentile(hist[:BUCKETS], 0.5),
        "p95_ms": percentile(hist[:BUCKETS], 0.95),
        "ttft_p50_ms": percentile(hist[BUCKETS:], 0.5),
    }


def floor_to(t: float, step: int) -> int:
    return int(t // step) * step


def ceil_to(t: float, step: int) -> int:
    return -int(-t // step) * step


Range = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class Plan:
    """Where the aggregates of ``[since, until)`` (whole hours) are read: ``days`` from the daily table (``None``:
    not at all), ``hours`` from the hourly table (ranges of hour starts, ``None`` for no bound)."""

    since: int | None
    until: int | None
    days: Range | None
    hours: tuple[Range, ...]


def split(since: float | None, until: float | None, *, hours_only: bool = False) -> Plan:
    """The aggregates that cover ``[since, until)`` rounded out to whole UTC hours: whole days in it from the daily
    table, the hours before the first and after the last whole day from the hourly one."""
    lo = None if since is None else floor_to(since, HOUR)
    hi = None if until is None else ceil_to(until, HOUR)
    if hours_only:
        return Plan(lo, hi, None, ((lo, hi),))
    d0 = None if lo is None else ceil_to(lo, DAY)
    d1 = None if hi is None else floor_to(hi, DAY)
    if d0 is not None and d1 is not None and d0 >= d1:
        return Plan(lo, hi, None, ((lo, hi),))
    hours: list[Range] = []
    if lo is not None and d0 is not None and lo < d0:
        hours.append((lo, d0))
    if hi is not None and d1 is not None and d1 < hi:
        hours.append((d1, hi))
    return Plan(lo, hi, (d0, d1), tuple(hours))


def day_label(t: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def hour_label(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(t))
