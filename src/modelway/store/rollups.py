"""Usage aggregates that outlive the raw records: per UTC hour and per UTC day, with fixed-bucket latency and TTFT
histograms (so percentiles need no raw record).

The aggregates of record (``mw_usage_hourly``, ``mw_usage_daily``) have a row per hour (or day) and key, model,
deployment and endpoint. Two narrower pairs hold the same sums per (key, model) and per (deployment, endpoint): a
query reads the narrowest pair that has the dimensions it groups and filters by (:func:`pair_for`). A query over a
range reads whole days from the daily table and the hours at its edges from the hourly one (:func:`split`). Both the
narrow pairs and the daily tables are there for speed: a gateway with a few hundred keys has a row per hour for
nearly every request of its quiet hours, and summing a month of those took a second (BENCHMARKS.md, "Ledger at
scale").

Every table is kept up to date in the transaction that stores the records (:func:`deltas` folds a batch into one
row per table, time and group, and an upsert adds them), and filled from the existing records by the migration
that creates them. ``None`` key ids and deployments are stored as ``''``: NULL is never equal to NULL in a primary
key, so an upsert would never find the row to add to.

Nothing here does I/O; :mod:`.usage_queries` reads the tables and :mod:`.migrations` creates them.
"""

from __future__ import annotations

import bisect
import operator
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Double, MetaData, String, Table

from ..usage.records import UsageRecord

__all__ = [
    "LATENCY_HIST",
    "DAY",
    "DIMENSIONS",
    "HOUR",
    "LATENCY_BOUNDS_MS",
    "METRICS",
    "ROLLUPS",
    "SUMS",
    "TTFT_BOUNDS_MS",
    "TTFT_HIST",
    "Plan",
    "Rollup",
    "deltas",
    "pair_for",
    "percentile",
    "split",
]

HOUR = 3600
DAY = 86_400

#: the latency histogram's bucket upper bounds in milliseconds (a value ``v`` is in the first bucket with ``v <=
#: bound``; one more bucket holds what is above the last bound). Frozen: they are the columns the migration creating
#: the tables made (``latency_h00`` ...), so other bounds would be a new migration. Neighbouring bounds are at most
#: 1.5 times apart from 200 ms to 20 s (2 below and above, 2.5 at the top, 5 from 10 to 50 ms: answers that fast are
#: refusals, not a model's), which bounds how far an interpolated percentile can be from the true one; few buckets
#: keep the rows narrow (each is a column written and summed).
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    *(10, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500),
    *(10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000),
)
#: the same for the time to first token (only its median is shown): fewer buckets, and the top at 30 s
TTFT_BOUNDS_MS: tuple[int, ...] = (10, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000, 30_000)
LATENCY_HIST = tuple(f"latency_h{i:02d}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
TTFT_HIST = tuple(f"ttft_h{i:02d}" for i in range(len(TTFT_BOUNDS_MS) + 1))

#: what identifies a row of the aggregates of record besides its hour or day
DIMENSIONS = ("key_id", "model", "deployment", "endpoint")
#: the sums every aggregate row holds: requests, errors (status 400 or more), tokens, cost, the latency sum (its count
#: is ``requests``), the TTFT sum and count (streams that produced output), then the histograms
SUMS = (
    *("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost"),
    *("latency_ms_sum", "ttft_ms_sum", "ttft_count"),
)
METRICS = SUMS + LATENCY_HIST + TTFT_HIST
_FLOATS = frozenset({"cost", "latency_ms_sum", "ttft_ms_sum"})
_LAT0 = len(SUMS)
_TTFT0 = _LAT0 + len(LATENCY_HIST)

_meta = MetaData()


@dataclass(frozen=True, slots=True)
class Rollup:
    """One aggregate table: its name, the length of its time step (``hour`` or ``day`` column: the step's start in
    Unix seconds), the dimensions of its rows, and the table as SQLAlchemy binds it."""

    name: str
    step: int
    dims: tuple[str, ...]
    table: Table

    @property
    def time_column(self) -> str:
        return "hour" if self.step == HOUR else "day"

    def ddl(self, without_rowid: str) -> str:
        """``CREATE TABLE`` (for the migration; ``without_rowid`` is SQLite's clause, or '')."""
        cols = [f"{self.time_column} BIGINT NOT NULL", *(f"{d} TEXT NOT NULL" for d in self.dims)]
        for m in METRICS:
            cols.append(f"{m} {'DOUBLE PRECISION' if m in _FLOATS else 'BIGINT'} NOT NULL DEFAULT 0")
        cols.append(f"PRIMARY KEY ({', '.join((self.time_column, *self.dims))})")
        return f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(cols) + f"\n){without_rowid}"

    def fill_from(self, source: Rollup) -> str:
        """Fill this table from a finer one (the migration)."""
        names = ", ".join((self.time_column, *self.dims, *METRICS))
        start = source.time_column
        if source.step != self.step:
            start = f"{start} - {start} % {self.step}"
        sums = ", ".join(f"SUM({m})" for m in METRICS)
        groups = ", ".join(str(i) for i in range(1, len(self.dims) + 2))
        return (
            f"INSERT INTO {self.name} ({names}) SELECT {start}, {', '.join(self.dims)}, {sums} FROM {source.name} "
            f"GROUP BY {groups}"
        )


def _rollup(name: str, step: int, dims: tuple[str, ...]) -> Rollup:
    time_column = "hour" if step == HOUR else "day"
    table = Table(
        name,
        _meta,
        Column(time_column, BigInteger, primary_key=True),
        *(Column(d, String, primary_key=True) for d in dims),
        *(Column(m, Double if m in _FLOATS else BigInteger) for m in METRICS),
    )
    return Rollup(name, step, dims, table)


#: the aggregates of record: per hour (day) and key, model, deployment, endpoint
HOURLY = _rollup("mw_usage_hourly", HOUR, DIMENSIONS)
DAILY = _rollup("mw_usage_daily", DAY, DIMENSIONS)
#: who used what: per hour (day), key and model
HOURLY_KEY_MODEL = _rollup("mw_usage_hourly_key_model", HOUR, ("key_id", "model"))
DAILY_KEY_MODEL = _rollup("mw_usage_daily_key_model", DAY, ("key_id", "model"))
#: where it went: per hour (day), deployment and endpoint
HOURLY_DEPLOYMENT = _rollup("mw_usage_hourly_deployment", HOUR, ("deployment", "endpoint"))
DAILY_DEPLOYMENT = _rollup("mw_usage_daily_deployment", DAY, ("deployment", "endpoint"))
ROLLUPS = (HOURLY, DAILY, HOURLY_KEY_MODEL, DAILY_KEY_MODEL, HOURLY_DEPLOYMENT, DAILY_DEPLOYMENT)
#: (hourly, daily) pairs, the one with the fewest rows first
_PAIRS = ((HOURLY_DEPLOYMENT, DAILY_DEPLOYMENT), (HOURLY_KEY_MODEL, DAILY_KEY_MODEL), (HOURLY, DAILY))


def pair_for(dims: Iterable[str]) -> tuple[Rollup, Rollup]:
    """The (hourly, daily) tables with the fewest rows that have every dimension of ``dims``."""
    wanted = set(dims)
    return next(p for p in _PAIRS if wanted <= set(p[0].dims))


def _bucket_sql(column: str, bounds: Sequence[int], i: int) -> str:
    if i == 0:
        cond = f"{column} <= {bounds[0]}"
    elif i == len(bounds):
        cond = f"{column} > {bounds[-1]}"
    else:
        cond = f"{column} > {bounds[i - 1]} AND {column} <= {bounds[i]}"
    return f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)"


def backfill_sql(hour_expr: str) -> list[str]:
    """Fill every aggregate table from the stored records (``hour_expr``: a record's hour start, per dialect)."""
    sums = [
        "COUNT(*)",
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
        *(f"SUM({c})" for c in ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "latency_ms")),
        "COALESCE(SUM(ttft_ms), 0)",
        "COUNT(ttft_ms)",
        *(_bucket_sql("latency_ms", LATENCY_BOUNDS_MS, i) for i in range(len(LATENCY_HIST))),
        *(_bucket_sql("ttft_ms", TTFT_BOUNDS_MS, i) for i in range(len(TTFT_HIST))),
    ]
    names = ", ".join(("hour", *DIMENSIONS, *METRICS))
    hourly = (
        f"INSERT INTO {HOURLY.name} ({names}) SELECT {hour_expr}, COALESCE(key_id, ''), model, "
        f"COALESCE(deployment, ''), endpoint, {', '.join(sums)} FROM mw_usage GROUP BY 1, 2, 3, 4, 5"
    )
    return [
        hourly,
        DAILY.fill_from(HOURLY),
        HOURLY_KEY_MODEL.fill_from(HOURLY),
        DAILY_KEY_MODEL.fill_from(DAILY),
        HOURLY_DEPLOYMENT.fill_from(HOURLY),
        DAILY_DEPLOYMENT.fill_from(DAILY),
    ]


# -- the write side ---------------------------------------------------------------------------------------------------


def _fold(rows: dict[tuple[Any, ...], list[Any]], step: int, picks: Sequence[int]) -> dict[tuple[Any, ...], list[Any]]:
    """``rows`` summed into coarser rows: their start times rounded down to ``step``, only the key parts ``picks``."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    add = operator.add
    for key, sums in rows.items():
        folded = (key[0] - key[0] % step, *[key[i] for i in picks])
        acc = out.get(folded)
        out[folded] = sums if acc is None else list(map(add, acc, sums))
    return out


def deltas(records: Iterable[UsageRecord]) -> list[list[tuple[Any, ...]]]:
    """What ``records`` add to each table of :data:`ROLLUPS` (in that order): one tuple per row, ``(time, *dims,
    *METRICS)``, sorted by primary key (concurrent writers then lock rows in the same order: no deadlock)."""
    hours: dict[tuple[Any, ...], list[Any]] = {}
    empty: list[Any] = [0.0 if m in _FLOATS else 0 for m in METRICS]
    lat_bounds, ttft_bounds = LATENCY_BOUNDS_MS, TTFT_BOUNDS_MS
    where = bisect.bisect_left
    for r in records:
        key = (int(r.ts // HOUR) * HOUR, r.key_id or "", r.model, r.deployment or "", r.endpoint)
        row = hours.get(key)
        if row is None:
            row = hours[key] = empty.copy()
        row[0] += 1
        if r.status >= 400:
            row[1] += 1
        row[2] += r.prompt_tokens
        row[3] += r.completion_tokens
        row[4] += r.total_tokens
        row[5] += r.cost
        row[6] += r.latency_ms
        row[_LAT0 + where(lat_bounds, r.latency_ms)] += 1
        if r.ttft_ms is not None:
            row[7] += r.ttft_ms
            row[8] += 1
            row[_TTFT0 + where(ttft_bounds, r.ttft_ms)] += 1
    # each coarser table from the finest one that has its dimensions (fewer rows to fold); a folded row may be the
    # very list of a finer one: nothing is changed in place after this point
    days = _fold(hours, DAY, (1, 2, 3, 4))
    key_hours = _fold(hours, HOUR, (1, 2))
    dep_hours = _fold(hours, HOUR, (3, 4))
    folded = {
        HOURLY: hours,
        DAILY: days,
        HOURLY_KEY_MODEL: key_hours,
        DAILY_KEY_MODEL: _fold(key_hours, DAY, (1, 2)),
        HOURLY_DEPLOYMENT: dep_hours,
        DAILY_DEPLOYMENT: _fold(dep_hours, DAY, (1, 2)),
    }
    return [[(*k, *v) for k, v in sorted(folded[r].items())] for r in ROLLUPS]


# -- the read side ----------------------------------------------------------------------------------------------------


def percentile(hist: Sequence[int], q: float, bounds: Sequence[int] = LATENCY_BOUNDS_MS) -> float | None:
    """The ``q`` quantile (0 < q < 1) of the values counted in ``hist`` (one count per bucket of ``bounds``),
    interpolated linearly inside its bucket; ``None`` when nothing was counted. In the last bucket (above the last
    bound) it is that bound: a value at least that large."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            lo = float(bounds[i - 1]) if i else 0.0
            if i == len(bounds):
                return lo
            hi = float(bounds[i])
            return round(lo + (hi - lo) * (rank - seen) / count, 1)
        seen += count
    return float(bounds[-1])  # not reached: the counts sum to total


def latency_summary(hist: Sequence[int]) -> dict[str, float | None]:
    """``p50_ms``, ``p95_ms`` and ``ttft_p50_ms`` of a row's histograms (latency's, then TTFT's)."""
    n = len(LATENCY_HIST)
    return {
        "p50_ms": percentile(hist[:n], 0.5),
        "p95_ms": percentile(hist[:n], 0.95),
        "ttft_p50_ms": percentile(hist[n:], 0.5, TTFT_BOUNDS_MS),
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
