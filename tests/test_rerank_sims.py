"""Rerank simulators (wire formats, scores, faults; the dashscope SDK against its simulator) and the library's
``Client.rerank`` / ``AsyncClient.rerank`` against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import httpx
import pytest
import requests
from dashscope import TextReRank

import modelway
from modelway.testing import (
    BaseSimulator,
    CohereSimulator,
    DashScopeSimulator,
    Fault,
    JinaSimulator,
    Reply,
    ZhipuSimulator,
    rerank_score,
)

DOCS = ["the cat sat on the mat", "dogs are loyal friends", "a cat and a dog play", "quantum physics"]
QUERY = "cat on a mat"
#: rerank_score(QUERY, d): 3/4, 0, 2/4, 0 → order 0, 2, 1, 3
ORDER = [0, 2, 1, 3]

PROVIDERS: dict[str, tuple[type[BaseSimulator], str]] = {
    "dashscope": (DashScopeSimulator, "gte-rerank-v2"),
    "zhipu": (ZhipuSimulator, "rerank"),
    "jina": (JinaSimulator, "jina-reranker-v2-base-multilingual"),
    "cohere": (CohereSimulator, "rerank-v3.5"),
}


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, BaseSimulator]]:
    started = {name: cls().start() for name, (cls, _) in PROVIDERS.items()}
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture(autouse=True)
def _clean(sims: dict[str, BaseSimulator]) -> None:
    for sim in sims.values():
        sim.clear()


def post(sim: BaseSimulator, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or sim.api_key}"}
    return httpx.post(sim.url + path, json=body, headers=headers, timeout=10)


def client(sims: dict[str, BaseSimulator], **kw: Any) -> modelway.Client:
    providers = {name: {"api_key": s.api_key, "base_url": s.base_url} for name, s in sims.items()}
    return modelway.Client(providers=providers, **kw)


class TestScore:
    def test_word_overlap_share_of_the_query(self) -> None:
        assert [rerank_score(QUERY, d) for d in DOCS] == [0.75, 0.0, 0.5, 0.0]
        assert rerank_score("Cat!", "the CAT") == 1.0 and rerank_score("", "x") == 0.0

    def test_cjk_characters_are_terms(self) -> None:
        assert rerank_score("排序模型", "文本排序") == 0.5
        assert rerank_score("排序模型", "量子计算") == 0.0


class TestWire:
    def test_dashscope(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["dashscope"]
        body = {
            "model": "gte-rerank-v2",
            "input": {"query": QUERY, "documents": DOCS},
            "parameters": {"top_n": 2, "return_documents": True},
        }
        r = post(sim, "/api/v1/services/rerank/text-rerank/text-rerank", body)
        assert r.status_code == 200
        data = r.json()
        assert data["output"]["results"] == [
            {"index": 0, "relevance_score": 0.75, "document": {"text": DOCS[0]}},
            {"index": 2, "relevance_score": 0.5, "document": {"text": DOCS[2]}},
        ]
        assert data["usage"]["total_tokens"] > 0 and data["request_id"] == r.headers["x-request-id"]
        body["parameters"] = {}
        data = post(sim, "/api/v1/services/rerank/text-rerank/text-rerank", body).json()
        assert [x["index"] for x in data["output"]["results"]] == ORDER
        assert all("document" not in x for x in data["output"]["results"])  # default: no documents

    def test_dashscope_refuses_bad_input_in_its_shape(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["dashscope"]
        path = "/api/v1/services/rerank/text-rerank/text-rerank"
        r = post(sim, path, {"model": "gte-rerank-v2", "input": {"query": "q", "documents": []}})
        assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
        r = post(sim, path, {"input": {"query": "q", "documents": ["a"]}})
        assert r.status_code == 400 and r.json()["code"] == "BadRequest.EmptyModel"
        r = post(sim, path, {"model": "m", "input": {"query": "q", "documents": ["a"] * 501}})
        assert r.status_code == 400

    def test_zhipu(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["zhipu"]
        body = {"model": "rerank", "query": QUERY, "documents": DOCS, "top_n": 0, "return_documents": True}
        r = post(sim, "/api/paas/v4/rerank", body)
        assert r.status_code == 200
        data = r.json()
        assert [x["index"] for x in data["results"]] == ORDER  # top_n 0: all
        assert data["results"][0] == {"index": 0, "relevance_score": 0.75, "document": DOCS[0]}  # a plain string
        assert data["usage"]["prompt_tokens"] == data["usage"]["total_tokens"] > 0
        assert isinstance(data["created"], int) and data["id"] and data["request_id"]
        r = post(sim, "/api/paas/v4/rerank", {"model": "rerank", "query": QUERY, "documents": [{"text": "x"}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "1214"  # strings only
        assert post(sim, "/api/paas/v4/rerank", {**body, "documents": ["d"] * 129}).status_code == 400

    def test_zhipu_echoes_the_caller_s_request_id(self, sims: dict[str, BaseSimulator]) -> None:
        body = {"model": "rerank", "query": "q", "documents": ["q"], "request_id": "mine-1"}
        data = post(sims["zhipu"], "/api/paas/v4/rerank", body).json()
        assert data["request_id"] == "mine-1" and data["results"][0]["relevance_score"] == 1.0

    def test_jina(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["jina"]
        docs: list[Any] = [DOCS[0], {"text": DOCS[1]}, DOCS[2]]
        r = post(sim, "/v1/rerank", {"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": docs})
        data = r.json()
        assert r.status_code == 200 and data["model"] == "jina-reranker-v2-base-multilingual"
        assert data["results"][0] == {"index": 0, "document": {"text": DOCS[0]}, "relevance_score": 0.75}  # default
        assert data["usage"]["total_tokens"] > 0
        body = {"model": "m", "query": QUERY, "documents": DOCS, "top_n": 1, "return_documents": False}
        assert post(sim, "/v1/rerank", body).json()["results"] == [{"index": 0, "relevance_score": 0.75}]
        r = post(sim, "/v1/rerank", {"model": "m", "documents": DOCS})
        assert r.status_code == 422 and "query" in r.json()["detail"]

    def test_cohere(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["cohere"]
        r = post(sim, "/v2/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS * 40, "top_n": 2})
        data = r.json()
        assert r.status_code == 200 and data["id"] == r.headers["x-request-id"]
        assert data["results"] == [{"index": 0, "relevance_score": 0.75}, {"index": 4, "relevance_score": 0.75}]
        assert data["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 2}}  # 160 docs
        r = post(sim, "/v2/rerank", {"model": "rerank-v3.5", "query": " ", "documents": DOCS})
        assert r.status_code == 400 and "query must not be empty" in r.json()["message"]
        r = post(sim, "/v2/rerank", {"model": "rerank-v3.5", "query": "q", "documents": DOCS}, key="wrong")
        assert r.status_code == 401 and r.json()["message"] == "invalid api token"

    @pytest.mark.parametrize("name", list(PROVIDERS))
    def test_faults_play_on_the_rerank_route(self, sims: dict[str, BaseSimulator], name: str) -> None:
        sim = sims[name]
        sim.push(Fault.http(503, retry_after=2), Fault.malformed_json(), Reply(usage=(77, 0)))
        with client(sims, max_retries=0) as c:
            model = f"{name}/{PROVIDERS[name][1]}"
            with pytest.raises(modelway.ProviderError) as exc:  # (Zhipu's 503 says 1305: too many requests)
                c.rerank(model, QUERY, DOCS)
            assert exc.value.status_code == 503 and exc.value.retry_after == 2.0 and exc.value.provider == name
            with pytest.raises(modelway.StreamError):
                c.rerank(model, QUERY, DOCS)
            resp = c.rerank(model, QUERY, DOCS)
        assert resp.usage is None if name == "cohere" else resp.usage == modelway.Usage(77, 0, 77)
        assert len(sim.requests) == 3


class TestDashScopeSDK:
    def test_text_rerank_call(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["dashscope"]
        with requests.Session() as session:
            resp = TextReRank.call(
                model=TextReRank.Models.qwen3_rerank,
                query=QUERY,
                documents=DOCS,
                top_n=3,
                return_documents=True,
                api_key=sim.api_key,
                base_address=sim.base_url,
                session=session,
            )
            assert resp.status_code == HTTPStatus.OK
            assert [r.index for r in resp.output.results] == ORDER[:3]
            assert resp.output.results[0]["document"]["text"] == DOCS[0]
            assert resp.output.results[0].relevance_score == 0.75 and resp.usage.total_tokens > 0
            req = sim.last_request
            assert req.path == "/api/v1/services/rerank/text-rerank/text-rerank"
            assert req.json["input"] == {"query": QUERY, "documents": DOCS}
            sim.push(Fault.http(429))
            resp = TextReRank.call(
                model="gte-rerank-v2",
                query="q",
                documents=["a"],
                api_key=sim.api_key,
                base_address=sim.base_url,
                session=session,
            )
            assert resp.status_code == 429 and resp.code == "Throttling.RateQuota"


class TestLibrary:
    @pytest.mark.parametrize("name", list(PROVIDERS))
    def test_rerank_through_each_provider(self, sims: dict[str, BaseSimulator], name: str) -> None:
        with client(sims) as c:
            resp = c.rerank(f"{name}/{PROVIDERS[name][1]}", QUERY, [DOCS[0], {"text": DOCS[1]}, *DOCS[2:]], top_n=3)
        assert [r.index for r in resp.results] == ORDER[:3]
        assert [r.document for r in resp.results] == [DOCS[i] for i in ORDER[:3]]
        assert resp.results[0].relevance_score == 0.75 and resp.provider == name and resp.id
        assert resp.model == PROVIDERS[name][1]
        if name == "cohere":
            assert resp.usage is None and resp.search_units == 1
        else:
            assert resp.usage is not None and resp.usage.total_tokens > 0 and resp.search_units is None

    def test_without_documents(self, sims: dict[str, BaseSimulator]) -> None:
        with client(sims) as c:
            resp = c.rerank("jina/jina-reranker-v2-base-multilingual", QUERY, DOCS, return_documents=False)
        assert [r.document for r in resp.results] == [None] * 4
        assert sims["jina"].last_request.json["return_documents"] is False

    def test_a_5xx_is_retried(self, sims: dict[str, BaseSimulator]) -> None:
        sim = sims["zhipu"]
        sim.push(Fault.http(500, retry_after=0))
        with client(sims, max_retries=1) as c:
            resp = c.rerank("zhipu/rerank", QUERY, DOCS, top_n=1)
        assert [r.index for r in resp.results] == [0] and len(sim.requests) == 2

    def test_bad_input_is_refused_before_any_request(self, sims: dict[str, BaseSimulator]) -> None:
        with client(sims) as c, pytest.raises(modelway.InvalidRequestError) as exc:
            c.rerank("jina/m", QUERY, [], top_n=1)
        assert exc.value.param == "documents" and sims["jina"].requests == []

    def test_a_provider_without_rerank(self, sims: dict[str, BaseSimulator]) -> None:
        with modelway.Client(providers={"openai": {"api_key": "k"}}) as c, pytest.raises(modelway.InvalidRequestError):
            c.rerank("openai/gpt-4o-mini", QUERY, DOCS)

    async def test_async_client_and_extras(self, sims: dict[str, BaseSimulator]) -> None:
        providers = {"dashscope": {"api_key": sims["dashscope"].api_key, "base_url": sims["dashscope"].base_url}}
        async with modelway.AsyncClient(providers=providers) as c:
            resp = await c.rerank("dashscope/qwen3-rerank", QUERY, tuple(DOCS), top_n=2, instruct="Find the cat.")
        assert [r.index for r in resp.results] == [0, 2]
        assert sims["dashscope"].last_request.json["parameters"] == {
            "return_documents": False,
            "top_n": 2,
            "instruct": "Find the cat.",
        }
