"""The admin API's usage routes through a running gateway: totals (JSON and CSV), series, pages of records, one
record, and every bad input answered 400 naming the parameter. Records are stored straight into the gateway's
SQLite store, so every number below is known."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.auth.keys import ApiKey
from modelway.store import SQLStore
from modelway.testing import OpenAISimulator
from modelway.usage import UsageRecord

HOUR, DAY = 3600, 86_400
#: two UTC days before today: the records below fall in the default range of a daily series (30 days)
BASE = int(time.time() // DAY) * DAY - 2 * DAY


def rec(n: int, at: float, key: str | None, model: str, dep: str | None, endpoint: str, **f: Any) -> UsageRecord:
    return UsageRecord(
        ts=BASE + at, request_id=f"r{n}", key_id=key, model=model, deployment=dep, endpoint=endpoint, stream=False,
        record_id=f"rid-{n}", **f,
    )  # fmt: skip


RECORDS = [
    rec(1, 10, "key_a", "gpt", "openai/gpt", "chat", prompt_tokens=10, completion_tokens=5, total_tokens=15,
        cost=0.5, latency_ms=120.0),
    rec(2, 20, "key_a", "gpt", "azure/gpt", "chat", prompt_tokens=4, completion_tokens=0, total_tokens=4,
        cost=0.25, status=500, error="upstream_error", latency_ms=800.0),
    rec(3, HOUR + 5, "key_b", "glm", "zhipu/glm", "messages", prompt_tokens=100, completion_tokens=50,
        total_tokens=150, cost=1.0, latency_ms=2500.0),
    rec(4, HOUR + 6, None, "gpt", None, "chat", status=429, error="rate_limited", latency_ms=1.0),
    rec(5, DAY + 7, "key_b", "glm", "zhipu/glm", "responses", prompt_tokens=1, completion_tokens=1,
        total_tokens=2, cost=2.0, latency_ms=50.0),
]  # fmt: skip
RECORDS[1].stream, RECORDS[1].ttft_ms = True, 300.0
RECORDS[2].stream, RECORDS[2].ttft_ms = True, 900.0


async def seed(url: str) -> None:
    store = SQLStore(url)
    await store.open()
    try:
        for key_id, name in (("key_a", "team, a"), ("key_b", "team b")):
            await store.insert_key(ApiKey(id=key_id, name=name, key_hash=key_id * 8, prefix="mw-x", created_at=1.0))
        await store.insert_usage(RECORDS)
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def gw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    db = tmp_path_factory.mktemp("usage") / "gw.db"
    asyncio.run(seed(f"sqlite:///{db}"))
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    yield start_gateway(
        {
            "server": {"master_key": MASTER_KEY},
            "store": {"url": f"sqlite:///{db}"},
            "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
            "models": [{"name": "gpt", "deployments": [dep]}],
        }
    )


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10) as c:
        yield c


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def bad(r: httpx.Response, param: str, status: int = 400) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    return str(err["message"])


class TestTotals:
    def test_by_key_with_names_percentiles_and_the_range_read(self, admin: httpx.Client) -> None:
        since, until = BASE + 100, BASE + 2 * DAY - 100  # rounded out: BASE .. BASE + 2 days
        body = ok(admin.get("/admin/usage", params={"group_by": "key", "since": since, "until": until}))
        assert (body["object"], body["group_by"], body["currency"]) == ("list", "key", "USD")
        assert (body["since"], body["until"]) == (BASE, BASE + 2 * DAY)
        assert body["data"] == [
            {
                "group": "key_b",
                "key_name": "team b",
                "requests": 2,
                "errors": 0,
                "prompt_tokens": 101,
                "completion_tokens": 51,
                "total_tokens": 152,
                "cost": 3.0,
                "p50_ms": 50.0,
                "p95_ms": 2900.0,
                "ttft_p50_ms": 875.0,
            },
            {
                "group": "key_a",
                "key_name": "team, a",
                "requests": 2,
                "errors": 1,
                "prompt_tokens": 14,
                "completion_tokens": 5,
                "total_tokens": 19,
                "cost": 0.75,
                "p50_ms": 200.0,
                "p95_ms": 975.0,
                "ttft_p50_ms": 250.0,
            },
            {
                "group": None,
                "key_name": None,
                "requests": 1,
                "errors": 1,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
                "cost": 0.0,
                "p50_ms": 5.0,
                "p95_ms": 9.5,
                "ttft_p50_ms": None,
            },
        ]

    @pytest.mark.parametrize(
        ("group_by", "groups"),
        [
            ("model", {"glm": 2, "gpt": 3}),
            ("deployment", {"zhipu/glm": 2, "openai/gpt": 1, "azure/gpt": 1, "(none)": 1}),
            ("endpoint", {"chat": 3, "messages": 1, "responses": 1}),
            ("day", {time.strftime("%Y-%m-%d", time.gmtime(BASE + d)): n for d, n in ((0, 4), (DAY, 1))}),
            ("hour", {time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(BASE + h)): n for h, n in ((0, 2), (HOUR, 2))}),
        ],
    )
    def test_every_grouping(self, admin: httpx.Client, group_by: str, groups: dict[str, int]) -> None:
        params: dict[str, Any] = {"group_by": group_by}
        if group_by == "hour":
            params.update(since=BASE, until=BASE + DAY)
        rows = ok(admin.get("/admin/usage", params=params))["data"]
        assert {r["group"]: r["requests"] for r in rows} == groups
        assert all("key_name" not in r for r in rows)

    def test_filters(self, admin: httpx.Client) -> None:
        rows = ok(admin.get("/admin/usage", params={"group_by": "deployment", "key_id": "key_a"}))["data"]
        assert [(r["group"], r["cost"]) for r in rows] == [("openai/gpt", 0.5), ("azure/gpt", 0.25)]
        rows = ok(admin.get("/admin/usage", params={"group_by": "endpoint", "model": "glm", "since": BASE + DAY}))
        assert [(r["group"], r["requests"]) for r in rows["data"]] == [("responses", 1)]

    def test_by_hour_defaults_to_the_last_48_hours(self, admin: httpx.Client) -> None:
        body = ok(admin.get("/admin/usage", params={"group_by": "hour"}))
        assert body["until"] - body["since"] in (2 * DAY, 2 * DAY + HOUR)  # at whole hours
        assert abs(body["until"] - time.time()) <= HOUR

    def test_csv(self, admin: httpx.Client) -> None:
        r = admin.get("/admin/usage", params={"group_by": "key", "format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="usage-by-key.csv"'
        lines = r.text.splitlines()
        assert lines[0] == (
            "group,key_name,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost,p50_ms,p95_ms,ttft_p50_ms"
        )
        assert len(lines) == 4
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert rows[1]["key_name"] == "team, a" and rows[1]["cost"] == "0.75"
        assert rows[2]["group"] == "" and rows[2]["ttft_p50_ms"] == ""  # None is empty, never "None"
        r = admin.get("/admin/usage", params={"group_by": "deployment", "format": "csv"})
        assert "(none),1,1," in r.text and "None" not in r.text and "key_name" not in r.text


class TestSeries:
    def test_hourly_points_every_bucket(self, admin: httpx.Client) -> None:
        body = ok(admin.get("/admin/usage/series", params={"since": BASE, "until": BASE + 3 * HOUR}))
        assert (body["bucket"], body["since"], body["until"], body["group_by"]) == ("hour", BASE, BASE + 3 * HOUR, None)
        [series] = body["series"]
        assert series["group"] is None
        assert [(p["t"], p["requests"], p["errors"], p["total_tokens"], p["cost"]) for p in series["points"]] == [
            (BASE, 2, 1, 19, 0.75),
            (BASE + HOUR, 2, 1, 150, 1.0),
            (BASE + 2 * HOUR, 0, 0, 0, 0.0),
        ]
        assert series["points"][0]["p50_ms"] == 200.0 and series["points"][2]["p50_ms"] is None

    def test_daily_by_key_with_the_rest_as_other(self, admin: httpx.Client) -> None:
        params: dict[str, Any] = {
            "bucket": "day",
            "group_by": "key",
            "limit": 1,
            "since": BASE,
            "until": BASE + 2 * DAY,
        }
        body = ok(admin.get("/admin/usage/series", params=params))
        assert [(s["group"], s["key_name"]) for s in body["series"]] == [("key_b", "team b"), ("(other)", None)]
        assert [p["cost"] for p in body["series"][0]["points"]] == [1.0, 2.0]
        assert [p["requests"] for p in body["series"][1]["points"]] == [3, 0]

    def test_by_deployment_names_none(self, admin: httpx.Client) -> None:
        params: dict[str, Any] = {"group_by": "deployment", "since": BASE, "until": BASE + 2 * HOUR}
        groups = [s["group"] for s in ok(admin.get("/admin/usage/series", params=params))["series"]]
        assert sorted(groups) == ["(none)", "azure/gpt", "openai/gpt", "zhipu/glm"]

    def test_default_ranges(self, admin: httpx.Client) -> None:
        hourly = ok(admin.get("/admin/usage/series"))
        assert len(hourly["series"][0]["points"]) in (48, 49)  # the last 48 hours, at whole hours
        daily = ok(admin.get("/admin/usage/series", params={"bucket": "day"}))
        assert len(daily["series"][0]["points"]) in (30, 31)
        assert sum(p["requests"] for p in daily["series"][0]["points"]) == 5


class TestRecords:
    def test_pages_newest_first_with_names_and_ids(self, admin: httpx.Client) -> None:
        first = ok(admin.get("/admin/usage/records", params={"limit": 2}))
        assert [r["request_id"] for r in first["data"]] == ["r5", "r4"]
        assert first["has_more"] is True and first["next_before"] == first["data"][-1]["id"]
        top = first["data"][0]
        assert top["key_name"] == "team b" and top["record_id"] == "rid-5" and top["cost"] == 2.0
        assert set(RECORDS[0].to_dict()) | {"id", "key_name"} == set(top)  # every field of a record, and two more
        second = ok(admin.get("/admin/usage/records", params={"limit": 2, "before": first["next_before"]}))
        assert [r["request_id"] for r in second["data"]] == ["r3", "r2"]
        last = ok(admin.get("/admin/usage/records", params={"limit": 2, "before": second["next_before"]}))
        assert [r["request_id"] for r in last["data"]] == ["r1"]
        assert last["has_more"] is False and last["next_before"] is None

    @pytest.mark.parametrize(
        ("params", "ids"),
        [
            ({"key_id": "key_a"}, ["r2", "r1"]),
            ({"model": "glm"}, ["r5", "r3"]),
            ({"deployment": "(none)"}, ["r4"]),
            ({"deployment": "azure/gpt"}, ["r2"]),
            ({"endpoint": "messages"}, ["r3"]),
            ({"status": "5xx"}, ["r2"]),
            ({"status": "4xx"}, ["r4"]),
            ({"status": "200"}, ["r5", "r3", "r1"]),
            ({"since": BASE + HOUR, "until": BASE + HOUR + 6}, ["r3"]),
            ({"key_id": ""}, ["r5", "r4", "r3", "r2", "r1"]),  # empty: no filter
        ],
    )
    def test_filters(self, admin: httpx.Client, params: dict[str, Any], ids: list[str]) -> None:
        assert [r["request_id"] for r in ok(admin.get("/admin/usage/records", params=params))["data"]] == ids

    def test_one_record(self, admin: httpx.Client) -> None:
        body = ok(admin.get("/admin/usage/records/rid-3"))
        assert body["request_id"] == "r3" and body["key_name"] == "team b" and body["ttft_ms"] == 900.0
        r = admin.get("/admin/usage/records/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "record_not_found"


class TestRefusals:
    @pytest.mark.parametrize(
        ("path", "params", "param"),
        [
            ("/admin/usage", {"group_by": "week"}, "group_by"),
            ("/admin/usage", {"format": "xml"}, "format"),
            ("/admin/usage", {"since": "10", "until": "5"}, "since"),
            ("/admin/usage", {"since": "-1"}, "since"),
            ("/admin/usage", {"until": "1e12"}, "until"),
            ("/admin/usage", {"group_by": "hour", "since": "0", "until": str(15 * DAY)}, "since"),
            ("/admin/usage", {"key_id": "k" * 300}, "key_id"),
            ("/admin/usage", {"model": "a\x00b"}, "model"),
            ("/admin/usage/series", {"bucket": "week"}, "bucket"),
            ("/admin/usage/series", {"group_by": "day"}, "group_by"),
            ("/admin/usage/series", {"limit": "0"}, "limit"),
            ("/admin/usage/series", {"limit": "51"}, "limit"),
            ("/admin/usage/series", {"since": str(time.time() - 15 * DAY)}, "since"),
            ("/admin/usage/series", {"bucket": "day", "since": "0", "until": str(400 * DAY)}, "since"),
            ("/admin/usage/series", {"since": str(time.time() + DAY)}, "since"),  # after until (now)
            ("/admin/usage/records", {"before": "0"}, "before"),
            ("/admin/usage/records", {"before": "abc"}, "before"),
            ("/admin/usage/records", {"before": "9" * 30}, "before"),
            ("/admin/usage/records", {"status": "600"}, "status"),
            ("/admin/usage/records", {"status": "2x"}, "status"),
            ("/admin/usage/records", {"status": "ok"}, "status"),
            ("/admin/usage/records", {"endpoint": "nope"}, "endpoint"),
            ("/admin/usage/records", {"deployment": "d" * 300}, "deployment"),
            ("/admin/usage/records", {"limit": "10001"}, "limit"),
        ],
    )
    def test_bad_input_is_400_naming_the_parameter(
        self, admin: httpx.Client, path: str, params: dict[str, str], param: str
    ) -> None:
        bad(admin.get(path, params=params), param)

    def test_a_range_too_long_says_what_to_do(self, admin: httpx.Client) -> None:
        message = bad(admin.get("/admin/usage", params={"group_by": "hour", "since": "0"}), "since")
        assert message == "a range by hour covers at most 336 hours: narrow since and until, or group by day"

    @pytest.mark.parametrize(
        "path", ["/admin/usage", "/admin/usage/series", "/admin/usage/records", "/admin/usage/records/rid-1"]
    )
    def test_master_key_only(self, gw: RunningGateway, admin: httpx.Client, path: str) -> None:
        key = admin.post("/admin/keys", json={"name": "caller"}).json()["key"]
        r = httpx.get(gw.url + path, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
        assert httpx.get(gw.url + path).status_code == 401

    @pytest.mark.parametrize("path", ["/admin/usage/series", "/admin/usage/records/rid-1"])
    def test_other_methods_are_405(self, admin: httpx.Client, path: str) -> None:
        r = admin.post(path, json={})
        assert r.status_code == 405 and r.headers["allow"] == "GET"

    def test_unknown_usage_paths_are_404(self, admin: httpx.Client) -> None:
        assert admin.get("/admin/usage/nope").status_code == 404
        assert admin.get("/admin/usage/records/a/b").status_code == 404


def test_without_a_store_the_routes_say_so(start_gateway: Callable[[dict[str, Any]], RunningGateway]) -> None:
    gw = start_gateway({"server": {"master_key": MASTER_KEY}})
    r = httpx.get(gw.url + "/admin/usage/series", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_store"
