"""``POST /v1/rerank`` through a running gateway: every rerank provider (simulated), validation, failover, keys,
usage records and metrics (a SQLite store in a temporary directory), and the library's ``Client.rerank`` pointed at
the gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw import MASTER_KEY, RunningGateway

import modelway
from modelway.testing import (
    BaseSimulator,
    CohereSimulator,
    DashScopeSimulator,
    Fault,
    JinaSimulator,
    Reply,
    ZhipuSimulator,
)

DOCS = ["the cat sat on the mat", "dogs are loyal friends", "a cat and a dog play", "quantum physics"]
QUERY = "cat on a mat"
#: the simulators' scores for QUERY: 0.75, 0, 0.5, 0 → best first: 0, 2, 1, 3
ORDER = [0, 2, 1, 3]
PRICE_IN = 1.0  # per million tokens
JINA_MODEL = "jina/jina-reranker-v2-base-multilingual"


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, BaseSimulator]]:
    started: dict[str, BaseSimulator] = {
        "jina": JinaSimulator().start(),
        "cohere": CohereSimulator().start(),
        "dashscope": DashScopeSimulator().start(),
        "zhipu": ZhipuSimulator().start(),
    }
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture(autouse=True)
def _clean(sims: dict[str, BaseSimulator]) -> None:
    for sim in sims.values():
        sim.clear()


def dep(model: str, sim: BaseSimulator) -> dict[str, Any]:
    return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url}


@pytest.fixture(scope="module")
def gw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    sims: dict[str, BaseSimulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    db: Path = tmp_path_factory.mktemp("rerank") / "modelway.db"
    never = {"model": "deepseek/deepseek-chat", "api_key": "k", "api_base": "http://127.0.0.1:9"}  # never dialled
    return start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "store": {"url": f"sqlite:///{db}", "key_refresh": 3600},
            "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
            "models": [
                {"name": "rr", "price": {"input": PRICE_IN}, "deployments": [dep(JINA_MODEL, sims["jina"])]},
                {"name": "qwen-rr", "deployments": [dep("dashscope/gte-rerank-v2", sims["dashscope"])]},
                {"name": "glm-rr", "deployments": [dep("zhipu/rerank", sims["zhipu"])]},
                {"name": "co-rr", "deployments": [dep("cohere/rerank-v3.5", sims["cohere"])]},
                {"name": "pair", "deployments": [dep("jina/first", sims["jina"]), dep("jina/second", sims["jina"])]},
                {"name": "chat-only", "deployments": [never]},
                {"name": "mixed", "deployments": [never, dep("jina/mixed", sims["jina"])]},
            ],
        }
    )


def call(gw: RunningGateway, body: Any, *, path: str = "/v1/rerank", key: str = MASTER_KEY) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def admin(gw: RunningGateway, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(method, gw.url + path, json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert r.status_code < 300, r.text
    return r.json()


def rerank(model: str = "rr", **extra: Any) -> dict[str, Any]:
    return {"model": model, "query": QUERY, "documents": DOCS, **extra}


class TestAnswers:
    def test_the_cohere_jina_shape(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        sims["jina"].push(Reply(usage=(40, 0)))
        r = call(gw, rerank())
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"id", "model", "results", "usage"}
        assert body["model"] == "rr" and body["id"]  # Jina's body has no id: its x-request-id header
        assert body["results"][0] == {"index": 0, "relevance_score": 0.75, "document": {"text": DOCS[0]}}
        assert [x["index"] for x in body["results"]] == ORDER
        scores = [x["relevance_score"] for x in body["results"]]
        assert scores == sorted(scores, reverse=True)
        assert body["usage"] == {"prompt_tokens": 40, "total_tokens": 40}
        sent = sims["jina"].last_request.json
        assert sent["model"] == "jina-reranker-v2-base-multilingual" and sent["return_documents"] is False

    def test_alias_route_top_n_and_no_documents(self, gw: RunningGateway) -> None:
        r = call(gw, rerank(top_n=2, return_documents=False), path="/rerank")
        assert r.status_code == 200
        assert r.json()["results"] == [{"index": 0, "relevance_score": 0.75}, {"index": 2, "relevance_score": 0.5}]

    def test_documents_as_text_objects(self, gw: RunningGateway) -> None:
        r = call(gw, rerank(documents=[{"text": d} for d in DOCS], top_n=1))
        assert r.json()["results"] == [{"index": 0, "relevance_score": 0.75, "document": {"text": DOCS[0]}}]

    @pytest.mark.parametrize(
        ("model", "provider", "path"),
        [
            ("qwen-rr", "dashscope", "/api/v1/services/rerank/text-rerank/text-rerank"),
            ("glm-rr", "zhipu", "/api/paas/v4/rerank"),
        ],
    )
    def test_dashscope_and_zhipu(
        self, gw: RunningGateway, sims: dict[str, BaseSimulator], model: str, provider: str, path: str
    ) -> None:
        body = call(gw, rerank(model, top_n=3)).json()
        assert [x["index"] for x in body["results"]] == ORDER[:3]
        assert body["results"][1]["document"] == {"text": DOCS[2]}
        assert body["usage"]["total_tokens"] > 0 and body["id"]
        assert sims[provider].last_request.path == path

    def test_cohere_search_units(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        body = call(gw, rerank("co-rr")).json()
        assert [x["index"] for x in body["results"]] == ORDER
        assert body["results"][0]["document"] == {"text": DOCS[0]}  # filled in by the gateway: v2 sends none
        assert body["meta"] == {"billed_units": {"search_units": 1}}
        assert body["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
        assert body["id"]

    def test_extras_reach_the_provider(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        assert call(gw, rerank("qwen-rr", instruct="Find the cat.")).status_code == 200
        assert sims["dashscope"].last_request.json["parameters"]["instruct"] == "Find the cat."

    def test_a_group_skips_deployments_without_rerank(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        for _ in range(3):
            assert call(gw, rerank("mixed")).status_code == 200
        assert [r.json["model"] for r in sims["jina"].requests] == ["mixed"] * 3


class TestRefusals:
    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"query": QUERY, "documents": DOCS}, "model"),
            (rerank(query=""), "query"),
            (rerank(query=None), "query"),
            (rerank(documents=[]), "documents"),
            (rerank(documents="one text"), "documents"),
            (rerank(documents=["a", {"text": 1}]), "documents[1].text"),
            (rerank(documents=["a", 2]), "documents[1]"),
            (rerank(documents=["d"] * 1001), "documents"),
            (rerank(top_n=0), "top_n"),
            (rerank(top_n="2"), "top_n"),
            (rerank(return_documents="no"), "return_documents"),
        ],
    )
    def test_bad_input_is_400_naming_the_field(
        self, gw: RunningGateway, sims: dict[str, BaseSimulator], body: dict[str, Any], param: str
    ) -> None:
        r = call(gw, body)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
        assert sims["jina"].requests == []

    def test_not_json_is_400(self, gw: RunningGateway) -> None:
        r = httpx.post(gw.url + "/v1/rerank", content=b"{", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"

    def test_unknown_model_is_404(self, gw: RunningGateway) -> None:
        r = call(gw, rerank("no-such-model"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"

    def test_a_model_that_is_no_rerank_model_is_400(self, gw: RunningGateway) -> None:
        r = call(gw, rerank("chat-only"))
        assert r.status_code == 400 and r.json()["error"]["code"] == "rerank_not_supported"
        assert r.json()["error"]["param"] == "model"

    def test_without_a_key_401(self, gw: RunningGateway) -> None:
        r = httpx.post(gw.url + "/v1/rerank", json=rerank(), timeout=10)
        assert r.status_code == 401

    def test_get_is_405(self, gw: RunningGateway) -> None:
        r = httpx.get(gw.url + "/v1/rerank", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"

    def test_an_upstream_rate_limit_reaches_the_caller(
        self, gw: RunningGateway, sims: dict[str, BaseSimulator]
    ) -> None:
        sims["jina"].push(Fault.http(429, retry_after=7))
        r = call(gw, rerank())
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert len(sims["jina"].requests) == 1


class TestFailover:
    def test_a_5xx_fails_over_to_the_second_deployment(
        self, gw: RunningGateway, sims: dict[str, BaseSimulator]
    ) -> None:
        secret = admin(gw, "POST", "/admin/keys", {"name": "failover"})
        sims["jina"].push(Fault.http(503))  # whichever deployment goes first gets it
        r = call(gw, rerank("pair"), key=secret["key"])
        assert r.status_code == 200 and [x["index"] for x in r.json()["results"]] == ORDER
        first, second = sims["jina"].requests
        assert {first.json["model"], second.json["model"]} == {"first", "second"}
        [rec] = admin(gw, "GET", f"/admin/usage/records?key_id={secret['id']}")["data"]
        assert rec["deployment"] == f"jina/{second.json['model']}" and rec["status"] == 200


class TestControlPlane:
    def test_a_key_not_allowed_the_model_gets_403(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        key = admin(gw, "POST", "/admin/keys", {"name": "limited", "models": ["qwen-rr"]})
        r = call(gw, rerank("rr"), key=key["key"])
        assert r.status_code == 403
        err = r.json()["error"]
        assert err["code"] == "model_not_allowed" and err["param"] == "model"
        assert sims["jina"].requests == []
        assert call(gw, rerank("qwen-rr"), key=key["key"]).status_code == 200
        records = admin(gw, "GET", f"/admin/usage/records?key_id={key['id']}")["data"]
        assert sorted((x["model"], x["status"], x["endpoint"]) for x in records) == [
            ("qwen-rr", 200, "rerank"),
            ("rr", 403, "rerank"),
        ]

    def test_the_usage_record(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        key = admin(gw, "POST", "/admin/keys", {"name": "usage"})
        sims["jina"].push(Reply(usage=(123, 0)))
        assert call(gw, rerank(), key=key["key"]).status_code == 200
        [rec] = admin(gw, "GET", f"/admin/usage/records?key_id={key['id']}")["data"]
        assert rec["endpoint"] == "rerank" and rec["model"] == "rr" and rec["deployment"] == JINA_MODEL
        assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"]) == (123, 0, 123)
        assert rec["cost"] == pytest.approx(123 * PRICE_IN / 1_000_000)
        assert rec["status"] == 200 and rec["stream"] is False and rec["estimated"] is False
        totals = admin(gw, "GET", f"/admin/usage?group_by=endpoint&key_id={key['id']}")["data"]
        assert [(t["group"], t["requests"], t["total_tokens"]) for t in totals] == [("rerank", 1, 123)]

    def test_metrics_count_the_rerank_endpoint(self, gw: RunningGateway) -> None:
        def sample() -> float:
            text = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}).text
            for line in text.splitlines():
                if line.startswith("modelway_requests_total{") and 'endpoint="rerank",model="rr",status="200"' in line:
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before = sample()
        assert call(gw, rerank()).status_code == 200
        assert sample() == before + 1


class TestLibraryClient:
    def test_client_rerank_through_the_gateway(self, gw: RunningGateway, sims: dict[str, BaseSimulator]) -> None:
        with modelway.Client(base_url=gw.base_url, api_key=MASTER_KEY) as c:
            resp = c.rerank("rr", QUERY, DOCS, top_n=3)
            assert [r.index for r in resp.results] == ORDER[:3]
            assert [r.document for r in resp.results] == [DOCS[i] for i in ORDER[:3]]
            assert resp.model == "rr" and resp.id
            assert resp.usage is not None and resp.usage.total_tokens > 0
            cohere = c.rerank("co-rr", QUERY, DOCS, return_documents=False)
            assert cohere.search_units == 1 and [r.document for r in cohere.results] == [None] * 4
            with pytest.raises(modelway.InvalidRequestError) as exc:
                c.rerank("rr", QUERY, DOCS, top_n=0)  # refused by the client itself
            assert exc.value.param == "top_n"
            with pytest.raises(modelway.BadRequestError):
                c.rerank("chat-only", QUERY, DOCS)  # the gateway's 400, read back
