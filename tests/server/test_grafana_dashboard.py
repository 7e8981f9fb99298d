"""deploy/grafana/modelway-dashboard.json is a valid dashboard, and every metric its queries use is one the gateway
serves on /metrics (so a renamed metric cannot leave a panel empty unnoticed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from gw import MASTER_KEY, RunningGateway
from prometheus_client.parser import text_string_to_metric_families

from modelway.testing import OpenAISimulator, Reply

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "modelway-dashboard.json"
#: PromQL words that are not metric names
_PROMQL = {"sum", "by", "rate", "max", "histogram_quantile", "le", "increase", "without", "avg", "min", "count"}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def queries(data: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    out += [v["definition"] for v in data["templating"]["list"] if "definition" in v]
    return out


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"by \([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"label_values\(([^,)]+)(,[^)]*)?\)", r"\1", expr)  # a variable's query: its metric
    expr = re.sub(r"\b\d[\d.]*(?:e[+-]?\d+)?\b", "", expr)  # numbers (1e9)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - _PROMQL


def test_the_dashboard_is_well_formed() -> None:
    data = dashboard()
    assert data["title"] and data["uid"] and isinstance(data["schemaVersion"], int)
    panels = data["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in data["templating"]["list"]}
    assert {"datasource", "model"} <= names
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            assert t["refId"]
    titles = " ".join(p["title"].lower() for p in panels)
    for what in ("requests per second", "error rate", "p50 / p95", "first token", "tokens", "cost", "circuit",
                 "in flight", "retries", "queue"):  # fmt: skip
        assert what in titles, what


def test_every_metric_a_query_uses_is_served(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator
) -> None:
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    gw = start_gateway({"server": {"master_key": MASTER_KEY}, "models": [{"name": "gpt", "deployments": [dep]}]})
    openai_sim.push(Reply(text="hi"))

    async def scrape() -> str:
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        body = {"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200
                await r.read()
            async with s.get(gw.url + "/metrics") as r:
                return await r.text()

    import asyncio

    text = asyncio.run(scrape())
    served: set[str] = set()
    for family in text_string_to_metric_families(text):
        served.add(family.name)
        served.update(s.name for s in family.samples)
    # a histogram or counter with no sample yet (no queue wait so far) is still declared: its family counts
    declared = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    used = set().union(*(metric_names(q) for q in queries(dashboard())))
    assert used, "no metric found in the dashboard's queries"
    missing = {
        n for n in used if n not in served and re.sub(r"_(bucket|count|sum|total)$", "", n) not in served | declared
    }
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {sorted(missing)}"
    assert {"modelway_requests_total", "modelway_deployment_circuit_state", "process_cpu_seconds_total"} <= used


def test_the_metric_name_extraction_finds_a_renamed_metric() -> None:
    assert metric_names('sum by (model) (rate(modelway_requests_total{model=~"$model",status=~"5.."}[5m]))') == {
        "modelway_requests_total"
    }
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[1m])))") == {"x_bucket"}
    assert metric_names("label_values(modelway_requests_total, model)") == {"modelway_requests_total"}
    assert metric_names("sum(process_resident_memory_bytes) / 1e9") == {"process_resident_memory_bytes"}
