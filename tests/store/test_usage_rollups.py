"""The usage aggregates (hourly and daily, with latency histograms) on both backends: kept with every insert, filled
by the migration, read by totals, series, pages of records and spend; and what outlives the deletion of records."""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import text

from modelway.auth.keys import ApiKey
from modelway.store import SQLStore
from modelway.store.rollups import (
    DAY,
    HOUR,
    LATENCY_BOUNDS_MS,
    LATENCY_HIST,
    ROLLUPS,
    TTFT_BOUNDS_MS,
    Plan,
    deltas,
    percentile,
    split,
)
from modelway.store.sql import RecordFilter
from modelway.usage import UsageRecord

#: 2023-11-15 00:00:00 UTC
MIDNIGHT = 1_700_006_400
KEYS = ["key_a", "key_b", "key_c", None]
MODELS = {"gpt": ["openai/gpt", "azure/gpt"], "glm": ["zhipu/glm"], "qwen": ["dashscope/qwen", None]}
ENDPOINTS = ["chat", "messages", "embeddings"]
STATUSES = [200] * 8 + [429, 500, 502, 499]


def make(rng: random.Random, i: int, start: float, span: float) -> UsageRecord:
    model = rng.choice(sorted(MODELS))
    stream = rng.random() < 0.5
    pt, ct = rng.randrange(0, 2000), rng.randrange(0, 500)
    return UsageRecord(
        ts=start + rng.random() * span,
        request_id=f"req{i}",
        key_id=rng.choice(KEYS),
        model=model,
        deployment=rng.choice(MODELS[model]),
        endpoint=rng.choice(ENDPOINTS),
        stream=stream,
        prompt_tokens=pt,
        completion_tokens=ct,
        total_tokens=pt + ct,
        cost=rng.randrange(0, 64) / 64,  # binary fractions: every sum is exact whatever the order
        status=rng.choice(STATUSES),
        latency_ms=rng.lognormvariate(6.5, 1.0),
        ttft_ms=rng.lognormvariate(5.5, 0.8) if stream else None,
        record_id=f"rid{i}",
    )


def records(n: int, *, seed: int = 7, start: float = MIDNIGHT - 2 * DAY, span: float = 4 * DAY) -> list[UsageRecord]:
    rng = random.Random(seed)
    return [make(rng, i, start, span) for i in range(n)]


BUCKETS = len(LATENCY_HIST)


def hist(values: list[float], bounds: tuple[int, ...] = LATENCY_BOUNDS_MS) -> list[int]:
    out = [0] * (len(bounds) + 1)
    for v in values:
        out[bisect.bisect_left(bounds, v)] += 1
    return out


def expected(recs: list[UsageRecord], group: Any) -> dict[Any, dict[str, Any]]:
    """What a summary must say, computed from the records themselves."""
    acc: dict[Any, list[UsageRecord]] = defaultdict(list)
    for r in recs:
        acc[group(r)].append(r)
    out = {}
    for g, rs in acc.items():
        ttfts = [r.ttft_ms for r in rs if r.ttft_ms is not None]
        out[g] = {
            "group": g,
            "requests": len(rs),
            "errors": sum(r.status >= 400 for r in rs),
            "prompt_tokens": sum(r.prompt_tokens for r in rs),
            "completion_tokens": sum(r.completion_tokens for r in rs),
            "total_tokens": sum(r.total_tokens for r in rs),
            "cost": sum(r.cost for r in rs),
            "p50_ms": percentile(hist([r.latency_ms for r in rs]), 0.5),
            "p95_ms": percentile(hist([r.latency_ms for r in rs]), 0.95),
            "ttft_p50_ms": percentile(hist(ttfts, TTFT_BOUNDS_MS), 0.5, TTFT_BOUNDS_MS),
        }
    return out


def day(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(ts))


GROUPS = {
    "key": lambda r: r.key_id,
    "model": lambda r: r.model,
    "deployment": lambda r: r.deployment or "(none)",
    "endpoint": lambda r: r.endpoint,
    "day": lambda r: day(r.ts),
}


def without(rows: list[dict[str, Any]], *names: str) -> dict[Any, dict[str, Any]]:
    return {r["group"]: {k: v for k, v in r.items() if k not in names} for r in rows}


class TestHistogram:
    def test_percentile_is_within_the_bucket_of_the_true_one(self) -> None:
        rng = random.Random(3)
        values = sorted(rng.lognormvariate(6.0, 1.2) for _ in range(20_000))
        h = hist(values)
        for q in (0.5, 0.9, 0.95, 0.99):
            true = values[int(q * len(values)) - 1]
            i = bisect.bisect_left(LATENCY_BOUNDS_MS, true)
            lo = LATENCY_BOUNDS_MS[i - 1] if i else 0
            est = percentile(h, q)
            assert est is not None and lo <= est <= LATENCY_BOUNDS_MS[i], (q, true, est)
            assert abs(est - true) / true < 0.15, (q, true, est)  # interpolation does better than the bucket

    def test_interpolation_empty_and_the_open_last_bucket(self) -> None:
        assert percentile([0] * BUCKETS, 0.5) is None
        one = hist([120.0])  # in (100, 200]: the middle of it
        assert percentile(one, 0.5) == 150.0
        assert percentile(hist([1.0, 2.0, 3.0, 4.0]), 0.5) == 5.0  # (0, 10]: half of it
        assert percentile(hist([50.0]), 0.99) == 49.6  # a value on a bound is in the bucket it closes: (10, 50]
        assert percentile(hist([50.0001]), 0.01) == 50.5  # just above: the next bucket
        ttft = hist([40_000.0, 250.0], TTFT_BOUNDS_MS)  # the TTFT histogram has bounds of its own
        assert percentile(ttft, 0.5, TTFT_BOUNDS_MS) == 300.0 and percentile(ttft, 0.99, TTFT_BOUNDS_MS) == 30_000
        assert percentile(hist([900_000.0]), 0.5) == LATENCY_BOUNDS_MS[-1]  # "at least" the last bound

    def test_deltas_fold_a_batch_into_hours_and_days(self) -> None:
        base = UsageRecord(MIDNIGHT - 1.5, "a", "k", "m", None, "chat", False, 1, 2, 3, 0.5, latency_ms=20.0)
        same_hour = UsageRecord(MIDNIGHT - 3599.0, "b", "k", "m", None, "chat", True, 1, 1, 2, 0.25, 500, "x", 80.0, 7)
        next_day = UsageRecord(MIDNIGHT, "c", None, "m", "p/m", "chat", False, latency_ms=5.0)
        other_key = UsageRecord(MIDNIGHT - 7000.0, "d", "k2", "m", None, "chat", False, 4, 0, 4, 1.0, latency_ms=9.0)
        hours, days, key_hours, key_days, dep_hours, dep_days = deltas([next_day, base, same_hour, other_key])
        assert [h[:5] for h in hours] == [
            (MIDNIGHT - 2 * HOUR, "k2", "m", "", "chat"),
            (MIDNIGHT - HOUR, "k", "m", "", "chat"),
            (MIDNIGHT, "", "m", "p/m", "chat"),
        ]
        h = hours[1]
        assert h[5:14] == (2, 1, 2, 3, 5, 0.75, 100.0, 7.0, 1)
        assert sum(h[14 : 14 + BUCKETS]) == 2 and sum(h[14 + BUCKETS :]) == 1
        assert [d[:5] for d in days] == [
            (MIDNIGHT - DAY, "k", "m", "", "chat"),
            (MIDNIGHT - DAY, "k2", "m", "", "chat"),
            (MIDNIGHT, "", "m", "p/m", "chat"),
        ]
        assert days[0][5:] == h[5:]
        assert [k[:3] for k in key_hours] == [
            (MIDNIGHT - 2 * HOUR, "k2", "m"),
            (MIDNIGHT - HOUR, "k", "m"),
            (MIDNIGHT, "", "m"),
        ]
        assert [k[:3] for k in key_days] == [
            (MIDNIGHT - DAY, "k", "m"),
            (MIDNIGHT - DAY, "k2", "m"),
            (MIDNIGHT, "", "m"),
        ]
        assert [d[:3] for d in dep_hours] == [
            (MIDNIGHT - 2 * HOUR, "", "chat"),
            (MIDNIGHT - HOUR, "", "chat"),
            (MIDNIGHT, "p/m", "chat"),
        ]
        [folded, _] = dep_days  # both keys' requests of the day before, in one row
        assert folded[:3] == (MIDNIGHT - DAY, "", "chat") and folded[3:8] == (3, 1, 6, 3, 9)
        assert folded[8] == 1.75 and sum(folded[12 : 12 + BUCKETS]) == 3


class TestSplit:
    def test_whole_days_from_the_daily_table_and_edge_hours_from_the_hourly(self) -> None:
        plan = split(MIDNIGHT - 5 * HOUR + 10, MIDNIGHT + 2 * DAY + 3 * HOUR - 10)
        assert plan == Plan(
            MIDNIGHT - 5 * HOUR,
            MIDNIGHT + 2 * DAY + 3 * HOUR,
            (MIDNIGHT, MIDNIGHT + 2 * DAY),
            ((MIDNIGHT - 5 * HOUR, MIDNIGHT), (MIDNIGHT + 2 * DAY, MIDNIGHT + 2 * DAY + 3 * HOUR)),
        )

    def test_less_than_a_whole_day_is_hours_only(self) -> None:
        plan = split(MIDNIGHT + HOUR, MIDNIGHT + DAY - HOUR)
        assert plan.days is None and plan.hours == ((MIDNIGHT + HOUR, MIDNIGHT + DAY - HOUR),)
        assert split(MIDNIGHT - HOUR, MIDNIGHT + HOUR).hours == ((MIDNIGHT - HOUR, MIDNIGHT + HOUR),)

    def test_open_ends(self) -> None:
        assert split(None, None) == Plan(None, None, (None, None), ())
        assert split(MIDNIGHT + 1, None) == Plan(MIDNIGHT, None, (MIDNIGHT, None), ())
        assert split(MIDNIGHT + HOUR, None).hours == ((MIDNIGHT + HOUR, MIDNIGHT + DAY),)
        assert split(None, MIDNIGHT + HOUR) == Plan(
            None, MIDNIGHT + HOUR, (None, MIDNIGHT), ((MIDNIGHT, MIDNIGHT + HOUR),)
        )
        assert split(None, MIDNIGHT, hours_only=True) == Plan(None, MIDNIGHT, None, ((None, MIDNIGHT),))


class TestTotals:
    async def test_every_grouping_matches_the_records(self, store: SQLStore) -> None:
        recs = records(1500)
        for at in range(0, len(recs), 200):  # in batches, as the ledger writes
            await store.insert_usage(recs[at : at + 200])
        for group_by, of in GROUPS.items():
            rows = await store.usage_summary(group_by=group_by)
            assert without(rows, "key_name") == expected(recs, of), group_by
            costs = [r["cost"] for r in rows]
            assert costs == sorted(costs, reverse=True)

    async def test_every_grouping_with_every_filter_matches_the_records(self, store: SQLStore) -> None:
        recs = records(900)
        await store.insert_usage(recs)
        filters: list[dict[str, str]] = [{"key_id": "key_b"}, {"model": "gpt"}, {"key_id": "key_a", "model": "qwen"}]
        for f in filters:
            keep = [r for r in recs if all(getattr(r, k) == v for k, v in f.items())]
            for group_by, of in GROUPS.items():
                rows = await store.usage_summary(group_by=group_by, since=MIDNIGHT - DAY - 1, **f)
                inside = [r for r in keep if r.ts >= MIDNIGHT - DAY - HOUR]
                assert without(rows, "key_name") == expected(inside, of), (group_by, f)

    async def test_a_range_is_read_at_whole_hours_from_days_and_hours_alike(self, store: SQLStore) -> None:
        recs = records(1200, span=5 * DAY)
        await store.insert_usage(recs)
        since, until = MIDNIGHT - DAY - 5 * HOUR - 100, MIDNIGHT + DAY + 7 * HOUR + 100  # whole days and edges
        lo, hi = MIDNIGHT - DAY - 6 * HOUR, MIDNIGHT + DAY + 8 * HOUR
        inside = [r for r in recs if lo <= r.ts < hi and r.key_id == "key_a"]
        for group_by in ("model", "day", "hour"):
            rows = await store.usage_summary(group_by=group_by, since=since, until=until, key_id="key_a")
            of = GROUPS.get(group_by) or (lambda r: _hour(r.ts))
            assert without(rows, "key_name") == expected(inside, of), group_by
        assert len(await store.usage_summary(group_by="hour", since=since, until=until)) == 62

    async def test_key_rows_carry_the_key_name(self, store: SQLStore) -> None:
        await store.insert_key(_key("key_a", "team a"))
        await store.insert_key(_key("key_b", "team b"))
        await store.revoke_key("key_b", at=1.0)  # revoked: still named
        await store.insert_usage(records(200))
        names = {r["group"]: r["key_name"] for r in await store.usage_summary(group_by="key")}
        assert names == {"key_a": "team a", "key_b": "team b", "key_c": None, None: None}

    async def test_a_record_stored_twice_is_counted_once(self, store: SQLStore) -> None:
        recs = records(300)
        await store.insert_usage(recs[:200])
        await store.insert_usage(recs[100:] + recs[250:])  # a replay, and repeats within one batch
        await store.insert_usage(recs)
        assert without(await store.usage_summary(group_by="model"), "key_name") == expected(recs, GROUPS["model"])
        assert len(await store.usage_records(limit=1000)) == 300

    async def test_a_refused_batch_adds_nothing(self, store: SQLStore) -> None:
        bad = UsageRecord(1.0, "bad", "k1", None, None, "chat", False)  # type: ignore[arg-type]  # model NOT NULL
        with pytest.raises(Exception, match="(?i)null"):
            await store.insert_usage([*records(10), bad])
        assert await store.usage_summary(group_by="model") == []

    async def test_two_stores_storing_the_same_records_at_once_count_them_once(self, url: str) -> None:
        a, b = SQLStore(url), SQLStore(url)
        await asyncio.gather(a.open(), b.open())
        try:
            recs = records(400)
            await asyncio.gather(*(s.insert_usage(recs[at : at + 50]) for at in range(0, 400, 50) for s in (a, b)))
            rows = await a.usage_summary(group_by="endpoint")
            assert without(rows, "key_name") == expected(recs, GROUPS["endpoint"])
        finally:
            await a.aclose()
            await b.aclose()


def _hour(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(ts))


def _key(key_id: str, name: str) -> ApiKey:
    return ApiKey(id=key_id, name=name, key_hash=key_id * 4, prefix="mw-x", created_at=1.0)


class TestSeries:
    async def test_every_bucket_is_a_point_and_points_match_the_records(self, store: SQLStore) -> None:
        recs = records(800)
        await store.insert_usage(recs)
        since, until = MIDNIGHT - 3 * HOUR + 5, MIDNIGHT + 2 * HOUR
        got = await store.usage_series(bucket="hour", since=since, until=until)
        assert (got["bucket"], got["since"], got["until"], got["group_by"]) == (
            "hour",
            MIDNIGHT - 3 * HOUR,
            MIDNIGHT + 2 * HOUR,
            None,
        )
        [only] = got["series"]
        assert only["group"] is None and [p["t"] for p in only["points"]] == list(range(since - 5, until, HOUR))
        for p in only["points"]:
            inside = [r for r in recs if p["t"] <= r.ts < p["t"] + HOUR]
            [want] = expected(inside, lambda r: None).values()
            assert p == {"t": p["t"], **{k: want[k] for k in p if k != "t"}}

    async def test_an_empty_bucket_is_a_zero_point(self, store: SQLStore) -> None:
        await store.insert_usage(records(50, start=MIDNIGHT, span=HOUR))
        got = await store.usage_series(bucket="day", since=MIDNIGHT - DAY, until=MIDNIGHT + DAY, group_by="model")
        for s in got["series"]:
            assert [p["t"] for p in s["points"]] == [MIDNIGHT - DAY, MIDNIGHT]
            assert s["points"][0] == {
                "t": MIDNIGHT - DAY,
                "requests": 0,
                "errors": 0,
                "total_tokens": 0,
                "cost": 0.0,
                "p50_ms": None,
                "p95_ms": None,
                "ttft_p50_ms": None,
            }

    async def test_groups_beyond_the_limit_are_one_other_series(self, store: SQLStore) -> None:
        await store.insert_key(_key("key_a", "team a"))
        recs = records(1000)
        await store.insert_usage(recs)
        since, until = MIDNIGHT - 2 * DAY, MIDNIGHT + 2 * DAY
        full = await store.usage_series(bucket="day", since=since, until=until, group_by="key", limit=10)
        cost = {g: sum(r.cost for r in recs if r.key_id == g) for g in KEYS}
        ranked = sorted(KEYS, key=lambda g: -cost[g])
        assert [s["group"] for s in full["series"]] == ranked
        assert {s["group"]: s["key_name"] for s in full["series"]}["key_a"] == "team a"
        top = await store.usage_series(bucket="day", since=since, until=until, group_by="key", limit=2)
        assert [s["group"] for s in top["series"]] == [*ranked[:2], "(other)"]
        other = top["series"][2]
        rest = [r for r in recs if r.key_id in ranked[2:]]
        for p in other["points"]:
            inside = [r for r in rest if p["t"] <= r.ts < p["t"] + DAY]
            assert p["requests"] == len(inside) and p["cost"] == sum(r.cost for r in inside)
        by_dep = await store.usage_series(bucket="day", since=since, until=until, group_by="deployment")
        assert "(none)" in [s["group"] for s in by_dep["series"]]


class TestRecords:
    async def test_filters_and_keyset_pages_newest_first(self, store: SQLStore) -> None:
        await store.insert_key(_key("key_a", "team a"))
        recs = records(600)
        await store.insert_usage(recs)
        filters = [
            (RecordFilter(), lambda r: True),
            (RecordFilter(key_id="key_a"), lambda r: r.key_id == "key_a"),
            (RecordFilter(model="qwen", deployment="(none)"), lambda r: r.model == "qwen" and r.deployment is None),
            (RecordFilter(deployment="azure/gpt"), lambda r: r.deployment == "azure/gpt"),
            (
                RecordFilter(endpoint="messages", status=(500, 600)),
                lambda r: r.endpoint == "messages" and r.status >= 500,
            ),
            (RecordFilter(status=(429, 430)), lambda r: r.status == 429),
            (RecordFilter(since=MIDNIGHT, until=MIDNIGHT + DAY), lambda r: MIDNIGHT <= r.ts < MIDNIGHT + DAY),
        ]
        for f, keep in filters:
            want = [r for r in reversed(recs) if keep(r)]
            got: list[UsageRecord] = []
            before = None
            while True:
                page, more = await store.usage_page(RecordFilter(**{**_fields(f), "before": before}), limit=37)
                got += [rec for _id, _name, rec in page]
                ids = [i for i, _name, _rec in page]
                assert ids == sorted(ids, reverse=True)
                assert all(name == ("team a" if rec.key_id == "key_a" else None) for _i, name, rec in page)
                if not more:
                    break
                before = ids[-1]
            assert got == want, f

    async def test_one_record_by_its_record_id(self, store: SQLStore) -> None:
        recs = records(5)
        await store.insert_usage(recs)
        found = await store.usage_record("rid3")
        assert found is not None and found[2] == recs[3] and found[0] == 4
        assert await store.usage_record("nope") is None


def _fields(f: RecordFilter) -> dict[str, Any]:
    return {name: getattr(f, name) for name in RecordFilter.__slots__}


class TestRetention:
    async def test_deleting_old_records_in_batches_keeps_totals_and_spend(self, store: SQLStore) -> None:
        recs = records(500)
        await store.insert_usage(recs)
        before = await store.usage_summary(group_by="day")
        # budget periods start at whole hours (a UTC day or month, or 0): their spend is all in the aggregates
        starts = (0, MIDNIGHT - DAY, MIDNIGHT - 3 * HOUR)
        spend = {(k, s): await store.spend(k, since=s) for k in ("key_a", "key_b") for s in starts}
        cutoff = MIDNIGHT + 0.5
        old = sum(r.ts < cutoff for r in recs)
        assert await store.delete_usage_before(cutoff, limit=100) == 100
        deleted = 100
        while n := await store.delete_usage_before(cutoff, limit=100):
            deleted += n
        assert deleted == old
        left = await store.usage_records(limit=1000)
        assert sorted(r.request_id for r in left) == sorted(r.request_id for r in recs if r.ts >= cutoff)
        assert await store.usage_summary(group_by="day") == before
        assert {(k, s): await store.spend(k, since=s) for k, s in spend} == spend

    async def test_spend_adds_the_part_of_an_hour_from_the_records(self, store: SQLStore) -> None:
        recs = records(400)
        await store.insert_usage(recs)
        for since in (0.0, MIDNIGHT - DAY - 0.25, MIDNIGHT + 1800.0, MIDNIGHT + 3 * HOUR, MIDNIGHT + 10 * DAY):
            want = sum(r.cost for r in recs if r.key_id == "key_b" and r.ts >= since)
            assert await store.spend("key_b", since=since) == want, since

    async def test_the_spends_of_many_keys_at_once_are_each_ones_spend(self, store: SQLStore) -> None:
        recs = records(400)
        await store.insert_usage(recs)
        starts = {"key_a": 0.0, "key_b": MIDNIGHT + 1800.0, "key_c": MIDNIGHT + 1800.0, "nobody": MIDNIGHT - DAY}
        got = await store.spends(starts)
        assert got == {k: await store.spend(k, since=since) for k, since in starts.items()}
        assert got["nobody"] == 0.0 and got["key_a"] == sum(r.cost for r in recs if r.key_id == "key_a")
        assert await store.spends({}) == {}


class TestMigration:
    async def test_the_aggregates_are_filled_from_the_records_stored_before(self, url: str) -> None:
        recs = records(700)
        s = SQLStore(url)
        await s.open()
        try:
            sql, order = s._usage_insert()
            async with s._connect(write=True) as conn:  # back to schema 5: records only, some without a record_id
                for stmt in (
                    "DROP TABLE mw_usage_bodies",
                    *(f"DROP TABLE {r.name}" for r in ROLLUPS),
                    "DROP INDEX mw_usage_key_id",
                    "DROP INDEX mw_usage_model_id",
                    "CREATE INDEX mw_usage_key_ts ON mw_usage (key_id, ts)",
                    "CREATE INDEX mw_usage_model_ts ON mw_usage (model, ts)",
                    "UPDATE mw_schema_version SET version = 5",
                ):
                    await conn.execute(text(stmt))
                await conn.exec_driver_sql(sql, _old_rows(recs, order))
            await s.aclose()
            await s.open()
            for group_by in ("model", "deployment", "day", "key"):  # (every rollup is read by one of these)
                rows = await s.usage_summary(group_by=group_by)
                assert without(rows, "key_name") == expected(recs, GROUPS[group_by]), group_by
                rows = await s.usage_summary(group_by=group_by, key_id="key_b", since=MIDNIGHT - HOUR)
                inside = [r for r in recs if r.key_id == "key_b" and r.ts >= MIDNIGHT - HOUR]
                assert without(rows, "key_name") == expected(inside, GROUPS[group_by]), group_by
            page, _ = await s.usage_page(limit=1000)
            ids = {rec.request_id: rec.record_id for _i, _n, rec in page}
            assert ids["req0"] == "legacy-1" and ids["req1"] == "rid1"  # every record can be fetched by its id
            found = await s.usage_record("legacy-1")
            assert found is not None and found[2].request_id == "req0"
            await s.insert_usage([recs[1], recs[3], records(1, seed=99)[0]])  # stored already, and one new one
            assert sum(r["requests"] for r in await s.usage_summary(group_by="model")) == 701
        finally:
            await s.aclose()


def _old_rows(recs: list[UsageRecord], order: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Records as an older modelway stored them: every other one without a record_id."""
    rows = []
    for i, r in enumerate(recs):
        values = {name: getattr(r, name) for name in order}
        if i % 2 == 0:
            values["record_id"] = None
        rows.append(tuple(values[name] for name in order))
    return rows
