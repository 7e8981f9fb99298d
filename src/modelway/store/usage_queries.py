"""What the admin API and ``modelway usage`` read from the usage ledger: totals and series from the aggregates
(:mod:`.rollups`), pages of raw records, a key's spend, and the deletion of records past their retention.

Every function runs on a connection the caller opened (:meth:`SQLStore._connect`), so one call is one transaction.
Totals and series are read at whole UTC hours: ``since`` is rounded down and ``until`` up to an hour (the answer says
which range it covers). A deployment of ``None`` (a request refused before one was chosen) is the group ``"(none)"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..usage.records import FIELDS, GROUP_BY, RecordWithBodies, UsageRecord
from . import tables
from .rollups import (
    DAY,
    HOUR,
    METRICS,
    SUMS,
    Plan,
    ceil_to,
    day_label,
    floor_to,
    hour_label,
    latency_summary,
    pair_for,
    split,
)

__all__ = [
    "NO_DEPLOYMENT",
    "OTHER",
    "RecordFilter",
    "delete_before",
    "record",
    "records_page",
    "series",
    "spend",
    "spends",
    "summary",
]

#: the group of requests no deployment served (their ``deployment`` is ``None``)
NO_DEPLOYMENT = "(none)"
#: a series' group that sums the groups beyond the ones shown
OTHER = "(other)"

_FLOAT_METRICS = frozenset({"cost", "latency_ms_sum", "ttft_ms_sum"})
_HIST0 = len(SUMS)

Sums = list[Any]


#: the dimension a grouping needs (none: a grouping by time)
_DIMENSION = {"key": "key_id", "model": "model", "deployment": "deployment", "endpoint": "endpoint"}


def _sources(plan: Plan, dims: set[str]) -> list[tuple[Table, str, tuple[int | None, int | None]]]:
    """The tables and ranges of start times that hold ``plan``'s range, in the narrowest rollups with ``dims``."""
    hourly, daily = pair_for(dims)
    out: list[tuple[Table, str, tuple[int | None, int | None]]] = []
    if plan.days is not None:
        out.append((daily.table, daily.time_column, plan.days))
    out += [(hourly.table, hourly.time_column, r) for r in plan.hours]
    return out


def _needs(group_by: str | None, key_id: str | None, model: str | None) -> set[str]:
    """The dimensions a query groups or filters by."""
    out = {_DIMENSION[group_by]} if group_by in _DIMENSION else set()
    if key_id is not None:
        out.add("key_id")
    if model is not None:
        out.add("model")
    return out


def _group(t: Table, time_column: str, group_by: str) -> ColumnElement[Any]:
    """The expression ``group_by`` groups the rows of aggregate table ``t`` by."""
    if group_by in _DIMENSION:
        return t.c[_DIMENSION[group_by]]
    start = t.c[time_column]
    if group_by == "day":
        # constants inlined, not bound: an expression with bound values is not the same expression twice
        return start if time_column == "day" else start - start % literal_column(str(DAY))
    if group_by == "hour" and time_column == "hour":
        return start
    raise ValueError(f"cannot group usage by {group_by!r}; use one of: {', '.join(GROUP_BY)}")


async def _aggregate(
    conn: AsyncConnection,
    plan: Plan,
    groups: Callable[[Table, str], list[ColumnElement[Any]]],
    *,
    dims: set[str],
    key_id: str | None,
    model: str | None,
    metrics: Sequence[str] = METRICS,
) -> dict[tuple[Any, ...], Sums]:
    """The sums of ``metrics`` per group (the ``groups`` expressions' values) over the rows ``plan`` names."""
    out: dict[tuple[Any, ...], Sums] = {}
    convert = [float if m in _FLOAT_METRICS else int for m in metrics]
    for t, time_column, (lo, hi) in _sources(plan, dims):
        exprs = groups(t, time_column)
        start = t.c[time_column]
        where = [
            *([] if lo is None else [start >= lo]),
            *([] if hi is None else [start < hi]),
            *([] if key_id is None else [t.c.key_id == key_id]),
            *([] if model is None else [t.c.model == model]),
        ]
        # grouped by the columns of a subquery: PostgreSQL accepts a computed group only when the GROUP BY expression
        # is the SELECT's, which bound values (the IN list of a folded series) would make differ
        inner = select(*(e.label(f"g{i}") for i, e in enumerate(exprs)), *(t.c[m] for m in metrics))
        if where:
            inner = inner.where(and_(*where))
        sub = inner.subquery()
        keys = [sub.c[f"g{i}"] for i in range(len(exprs))]
        query = select(*keys, *(func.sum(sub.c[m]) for m in metrics)).group_by(*keys)
        n = len(keys)
        for row in (await conn.execute(query)).all():
            group = tuple(row[:n])
            acc = out.get(group)
            values = [c(v or 0) for c, v in zip(convert, row[n:], strict=True)]  # (no rows at all: NULL sums)
            if acc is None:
                out[group] = values
            else:
                for i, v in enumerate(values):
                    acc[i] += v
    return out


def _totals(sums: Sums) -> dict[str, Any]:
    return {
        "requests": sums[0],
        "errors": sums[1],
        "prompt_tokens": sums[2],
        "completion_tokens": sums[3],
        "total_tokens": sums[4],
        "cost": sums[5],
        **latency_summary(sums[_HIST0:]),
    }


def _label(group_by: str | None, value: Any) -> Any:
    """A group's value as the API shows it."""
    if group_by == "key":
        return value or None
    if group_by == "deployment":
        return value or NO_DEPLOYMENT
    if group_by == "day":
        return day_label(int(value))
    if group_by == "hour":
        return hour_label(int(value))
    return value


async def key_names(conn: AsyncConnection, ids: Sequence[str | None]) -> dict[str, str]:
    """The names of the keys ``ids`` (revoked ones too; an id no key has is left out)."""
    wanted = sorted({i for i in ids if i})
    out: dict[str, str] = {}
    for at in range(0, len(wanted), 500):
        query = select(tables.keys.c.id, tables.keys.c.name).where(tables.keys.c.id.in_(wanted[at : at + 500]))
        out.update({row[0]: row[1] for row in (await conn.execute(query)).all()})
    return out


def _order(rows: list[dict[str, Any]]) -> None:
    """Most expensive first; equal costs by group, no key or deployment last (in Python: both backends order
    alike)."""
    rows.sort(key=lambda r: (-r["cost"], r["group"] in (None, NO_DEPLOYMENT), r["group"] or ""))


async def summary(
    conn: AsyncConnection,
    *,
    group_by: str,
    since: float | None,
    until: float | None,
    key_id: str | None,
    model: str | None,
) -> tuple[Plan, list[dict[str, Any]]]:
    """Totals per group over ``[since, until)`` at whole hours, most expensive first; the range read, and the rows."""
    if group_by not in GROUP_BY:
        raise ValueError(f"cannot group usage by {group_by!r}; use one of: {', '.join(GROUP_BY)}")
    plan = split(since, until, hours_only=group_by == "hour")
    key_id, model = key_id or None, model or None
    dims = _needs(group_by, key_id, model)
    sums = await _aggregate(conn, plan, lambda t, c: [_group(t, c, group_by)], dims=dims, key_id=key_id, model=model)
    rows = [{"group": _label(group_by, g), **_totals(s)} for (g,), s in sums.items()]
    if group_by == "key":
        names = await key_names(conn, [r["group"] for r in rows])
        for r in rows:
            r["key_name"] = names.get(r["group"] or "")
    _order(rows)
    return plan, rows


#: a point of a bucket in which nothing happened
_ZERO: dict[str, Any] = {
    "requests": 0,
    "errors": 0,
    "total_tokens": 0,
    "cost": 0.0,
    "p50_ms": None,
    "p95_ms": None,
    "ttft_p50_ms": None,
}


def _point(t: int, sums: Sums | None) -> dict[str, Any]:
    if sums is None:
        return {"t": t, **_ZERO}
    tot = _totals(sums)
    return {"t": t, **{k: tot[k] for k in _ZERO}}


async def series(
    conn: AsyncConnection,
    *,
    bucket: str,
    since: float,
    until: float,
    group_by: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    limit: int = 10,
) -> dict[str, Any]:
    """Points per hour or day over ``[since, until)`` (rounded out to buckets), every bucket present (zero when
    nothing happened), one series per group: the ``limit`` most expensive groups, then one ``"(other)"`` series
    summing the rest."""
    step = HOUR if bucket == "hour" else DAY
    first, last = floor_to(since, step), ceil_to(until, step)
    plan = split(first, last, hours_only=bucket == "hour")
    key_id, model = key_id or None, model or None
    dims = _needs(group_by, key_id, model)
    top: list[Any] = []
    folded = False
    if group_by is not None:
        totals = await _aggregate(
            conn,
            plan,
            lambda t, c: [_group(t, c, group_by)],
            dims=dims,
            key_id=key_id,
            model=model,
            metrics=("cost", "requests"),
        )
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0][0] or ""))
        top = [g for (g,), _ in ranked[:limit]]
        folded = len(ranked) > limit

    def groups(t: Table, c: str) -> list[ColumnElement[Any]]:
        out = [_group(t, c, bucket)]
        if group_by is not None:
            g = _group(t, c, group_by)
            if folded:  # the groups beyond the top ones as one: (NULL, 1)
                out += [case((g.in_(top), g), else_=None), case((g.in_(top), 0), else_=1)]
            else:
                out += [g, literal_column("0")]
        return out

    sums = await _aggregate(conn, plan, groups, dims=dims, key_id=key_id, model=model)
    by_group: dict[tuple[Any, int], dict[int, Sums]] = {}
    for key, s in sums.items():
        group = (key[1], int(key[2])) if group_by is not None else (None, 0)
        by_group.setdefault(group, {})[int(key[0])] = s
    if group_by is None:
        order: list[tuple[Any, int]] = [(None, 0)]
    else:
        order = [(g, 0) for g in top] + ([(None, 1)] if folded else [])
    names = await key_names(conn, top) if group_by == "key" else {}
    out = []
    for g, other in order:
        points = by_group.get((g, other))
        if points is None and group_by is not None:
            continue
        entry: dict[str, Any] = {"group": OTHER if other else _label(group_by, g)}
        if group_by == "key":
            entry["key_name"] = None if other else names.get(g or "")
        entry["points"] = [_point(t, (points or {}).get(t)) for t in range(first, last, step)]
        out.append(entry)
    return {"bucket": bucket, "since": first, "until": last, "group_by": group_by, "series": out}


# -- raw records ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which raw records a page holds. ``deployment`` ``"(none)"`` is the records no deployment served; ``status`` is
    a range ``[lo, hi)``; ``before`` a row id (keyset pagination: the page after the one that ended there)."""

    key_id: str | None = None
    model: str | None = None
    deployment: str | None = None
    endpoint: str | None = None
    status: tuple[int, int] | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        u = tables.usage.c
        out: list[ColumnElement[bool]] = []
        if self.key_id is not None:
            out.append(u.key_id == self.key_id)
        if self.model is not None:
            out.append(u.model == self.model)
        if self.deployment is not None:
            out.append(u.deployment.is_(None) if self.deployment == NO_DEPLOYMENT else u.deployment == self.deployment)
        if self.endpoint is not None:
            out.append(u.endpoint == self.endpoint)
        if self.status is not None:
            out += [u.status >= self.status[0], u.status < self.status[1]]
        if self.since is not None:
            out.append(u.ts >= self.since)
        if self.until is not None:
            out.append(u.ts < self.until)
        if self.before is not None:
            out.append(u.id < self.before)
        return out


Row = tuple[int, str | None, UsageRecord]


def _records_query() -> Any:
    u, k = tables.usage, tables.keys
    return select(u, k.c.name.label("key_name")).select_from(u.outerjoin(k, k.c.id == u.c.key_id))


def _row(row: Any) -> Row:
    return int(row["id"]), row["key_name"], UsageRecord(**{name: row[name] for name in FIELDS})


async def records_page(conn: AsyncConnection, f: RecordFilter, limit: int) -> tuple[list[Row], bool]:
    """The newest ``limit`` records ``f`` selects, newest (the highest row id) first, as ``(row id, key name,
    record)``; and whether older ones follow."""
    query = _records_query().order_by(tables.usage.c.id.desc()).limit(limit + 1)
    where = f.where()
    if where:
        query = query.where(and_(*where))
    rows = [_row(r) for r in (await conn.execute(query)).mappings().all()]
    return rows[:limit], len(rows) > limit


async def record(conn: AsyncConnection, record_id: str) -> Row | None:
    """The record with ``record_id``, or ``None``; with its bodies (a :class:`RecordWithBodies`) when it has them."""
    u, b = tables.usage, tables.usage_bodies
    query = (
        _records_query()
        .add_columns(b.c.record_id.label("bodies_of"), b.c.request_body, b.c.response_body)
        .outerjoin(b, b.c.record_id == u.c.record_id)
        .where(u.c.record_id == record_id)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    row_id, key_name, rec = _row(row)
    if row["bodies_of"] is not None:
        rec = RecordWithBodies.of(rec, row["request_body"], row["response_body"])
    return row_id, key_name, rec


async def spend(conn: AsyncConnection, key_id: str, since: float) -> float:
    """What ``key_id`` spent in requests that arrived at ``since`` or later: whole days and hours from the aggregates
    (which outlive the records), the part of an hour before the first whole one from the records."""
    hour = ceil_to(since, HOUR)
    total = 0.0
    if since < hour:
        u = tables.usage.c
        query = select(func.coalesce(func.sum(u.cost), 0.0)).where(u.key_id == key_id, u.ts >= since, u.ts < hour)
        total += float((await conn.execute(query)).scalar_one())
    sums = await _aggregate(
        conn, split(hour, None), lambda t, c: [], dims={"key_id"}, key_id=key_id, model=None, metrics=("cost",)
    )
    return total + float(sum(s[0] for s in sums.values()))


async def spends(conn: AsyncConnection, key_ids: Sequence[str], since: float) -> dict[str, float]:
    """What each of ``key_ids`` spent from ``since`` on, as :func:`spend` reads it, in two queries for them all (a key
    that spent nothing is 0)."""
    out = dict.fromkeys(key_ids, 0.0)
    if not key_ids:
        return out
    hour = ceil_to(since, HOUR)
    if since < hour:
        u = tables.usage.c
        for at in range(0, len(key_ids), 500):
            chunk = list(key_ids[at : at + 500])
            query = (
                select(u.key_id, func.sum(u.cost))
                .where(u.key_id.in_(chunk), u.ts >= since, u.ts < hour)
                .group_by(u.key_id)
            )
            for key_id, cost in (await conn.execute(query)).all():
                out[key_id] += float(cost or 0.0)
    sums = await _aggregate(
        conn, split(hour, None), lambda t, c: [t.c.key_id], dims={"key_id"}, key_id=None, model=None, metrics=("cost",)
    )
    for (key_id,), s in sums.items():
        if key_id in out:
            out[key_id] += float(s[0])
    return out


async def delete_before(conn: AsyncConnection, cutoff: float, limit: int) -> int:
    """Delete at most ``limit`` records that arrived before ``cutoff`` (the aggregates keep them), and at most
    ``limit`` records' bodies; how many records. (A record's bodies have its ``ts``: there are never more bodies than
    records before a cutoff, so the bodies are gone when the records are.)"""
    u, b = tables.usage, tables.usage_bodies
    ids = select(u.c.id).where(u.c.ts < cutoff).limit(limit).scalar_subquery()
    result = await conn.execute(u.delete().where(u.c.id.in_(ids)))
    with_bodies = select(b.c.record_id).where(b.c.ts < cutoff).limit(limit).scalar_subquery()
    await conn.execute(b.delete().where(b.c.record_id.in_(with_bodies)))
    return int(result.rowcount or 0)
