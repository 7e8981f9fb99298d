"""Rerank adapters, sans-I/O: the request each one builds, how each answer and error is read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
)
from modelway.providers import PROVIDERS
from modelway.providers.base import Adapter, ProviderSettings
from modelway.providers.cohere import CohereAdapter
from modelway.providers.dashscope import DashScopeAdapter
from modelway.providers.jina import JinaAdapter
from modelway.providers.rerank import rerank_usage
from modelway.providers.zhipu import ZhipuAdapter
from modelway.rerank import RerankRequest, rerank_request
from modelway.types import ChatRequest, Usage

DOCS = ["the cat sat", "dogs bark", "a cat and a dog"]


def req(**kw: Any) -> RerankRequest:
    return rerank_request(kw.pop("model", "m"), kw.pop("query", "cat"), kw.pop("documents", DOCS), **kw)


def sent(adapter: Adapter, r: RerankRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
    http = adapter.rerank_request(r)
    assert http.method == "POST" and http.body is not None and http.provider == adapter.name
    body: dict[str, Any] = orjson.loads(http.body)
    return http.url, http.headers, body


def js(obj: Any) -> bytes:
    return orjson.dumps(obj)


class TestRequests:
    def test_dashscope_native_body(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="sk-1"))
        url, headers, body = sent(a, req(model="gte-rerank-v2", top_n=2, extra={"instruct": "Find answers."}))
        assert url == "https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank"
        assert headers["Authorization"] == "Bearer sk-1"
        assert body == {
            "model": "gte-rerank-v2",
            "input": {"query": "cat", "documents": DOCS},
            "parameters": {"return_documents": False, "top_n": 2, "instruct": "Find answers."},
        }

    def test_dashscope_workspace_header_and_no_top_n_when_not_given(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="sk-1", options={"workspace": "ws-9"}))
        _, headers, body = sent(a, req(model="qwen3-rerank"))
        assert headers["X-DashScope-WorkSpace"] == "ws-9"
        assert body["parameters"] == {"return_documents": False}

    def test_zhipu_flat_body_with_its_extras(self) -> None:
        a = ZhipuAdapter(ProviderSettings(api_key="id.secret"))
        url, headers, body = sent(a, req(model="rerank", top_n=1, extra={"return_raw_scores": True}))
        assert url == "https://open.bigmodel.cn/api/paas/v4/rerank"
        assert headers["Authorization"] == "Bearer id.secret"
        assert body == {
            "model": "rerank",
            "query": "cat",
            "documents": DOCS,
            "top_n": 1,
            "return_documents": False,
            "return_raw_scores": True,
        }

    def test_zhipu_jwt_auth_applies_to_rerank(self) -> None:
        a = ZhipuAdapter(ProviderSettings(api_key="id.secret", options={"auth": "jwt"}), clock=lambda: 1_700_000_000)
        _, headers, _ = sent(a, req(model="rerank"))
        token = headers["Authorization"].removeprefix("Bearer ")
        assert token.count(".") == 2 and token == a.token()

    def test_jina_body_and_the_path_option(self) -> None:
        a = JinaAdapter(ProviderSettings(api_key="jina_1"))
        url, headers, body = sent(a, req(model="jina-reranker-v2-base-multilingual"))
        assert url == "https://api.jina.ai/v1/rerank" and headers["Authorization"] == "Bearer jina_1"
        assert body == {
            "model": "jina-reranker-v2-base-multilingual",
            "query": "cat",
            "documents": DOCS,
            "return_documents": False,
        }
        compat = JinaAdapter(
            ProviderSettings(
                api_key="sk-2",
                base_url="https://dashscope.aliyuncs.com/compatible-api/v1/",
                options={"rerank_path": "reranks"},
            )
        )
        assert sent(compat, req(model="qwen3-rerank"))[0] == "https://dashscope.aliyuncs.com/compatible-api/v1/reranks"

    def test_jina_needs_no_key_for_a_local_server(self) -> None:
        a = JinaAdapter(ProviderSettings(base_url="http://127.0.0.1:8000/v1"))
        url, headers, _ = sent(a, req())
        assert url == "http://127.0.0.1:8000/v1/rerank" and "Authorization" not in headers

    def test_cohere_v2_body_has_no_return_documents(self) -> None:
        a = CohereAdapter(ProviderSettings(api_key="co-1"))
        url, headers, body = sent(a, req(model="rerank-v3.5", top_n=2, extra={"max_tokens_per_doc": 512}))
        assert url == "https://api.cohere.com/v2/rerank" and headers["Authorization"] == "Bearer co-1"
        assert body == {
            "model": "rerank-v3.5",
            "query": "cat",
            "documents": DOCS,
            "top_n": 2,
            "max_tokens_per_doc": 512,
        }

    def test_an_extra_never_overrides_what_the_adapter_sets(self) -> None:
        r = RerankRequest("m", "cat", DOCS, top_n=1, extra={"top_n": 99, "query": "x"})
        _, _, body = sent(JinaAdapter(ProviderSettings(api_key="k")), r)
        assert body["top_n"] == 1 and body["query"] == "cat"

    def test_cohere_needs_a_key(self) -> None:
        from modelway.errors import ConfigError

        with pytest.raises(ConfigError, match="CO_API_KEY"):
            CohereAdapter(ProviderSettings()).rerank_request(req())

    def test_providers_without_rerank_refuse_it_before_any_io(self) -> None:
        for name in ("openai", "anthropic", "deepseek"):
            a = PROVIDERS[name](ProviderSettings(api_key="k"))
            assert not a.supports_rerank
            with pytest.raises(InvalidRequestError, match="does not serve rerank") as exc:
                a.rerank_request(req())
            assert exc.value.code == "rerank_not_supported" and exc.value.param == "model"
            with pytest.raises(InvalidRequestError):
                a.parse_rerank(b"{}", {}, req())

    def test_cohere_chat_and_embeddings_use_its_compatibility_api(self) -> None:
        from modelway.errors import ConfigError
        from modelway.types import EmbeddingRequest

        a = CohereAdapter(ProviderSettings(api_key="co-1"))
        chat = a.chat_request(
            ChatRequest(model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}], stream=True)
        )
        assert chat.url == "https://api.cohere.com/compatibility/v1/chat/completions"
        assert chat.body is not None and "stream_options" not in orjson.loads(chat.body)  # that API refuses it
        embed = a.embed_request(EmbeddingRequest(model="embed-v4.0", input="hi"))
        assert embed.url == "https://api.cohere.com/compatibility/v1/embeddings"
        assert sent(a, req())[0] == "https://api.cohere.com/v2/rerank"
        with pytest.raises(ConfigError):
            a.models_request()

    def test_a_cohere_shaped_server_elsewhere(self) -> None:
        a = CohereAdapter(
            ProviderSettings(base_url="http://127.0.0.1:9997", api_key="k", options={"rerank_path": "/v1/rerank"})
        )
        assert sent(a, req())[0] == "http://127.0.0.1:9997/v1/rerank"

    def test_rerank_models_are_listed(self) -> None:
        ids = {
            m.id
            for cls in (DashScopeAdapter, ZhipuAdapter, JinaAdapter, CohereAdapter)
            for m in cls(ProviderSettings()).models()
        }
        assert {"dashscope/gte-rerank-v2", "dashscope/qwen3-rerank", "zhipu/rerank"} <= ids
        assert {"jina/jina-reranker-v2-base-multilingual", "cohere/rerank-v3.5"} <= ids
        assert "dashscope/qwen-plus" in ids  # the chat models are still there
        assert all(PROVIDERS[n].supports_rerank for n in ("dashscope", "zhipu", "jina", "cohere"))


class TestAnswers:
    def test_dashscope_answer_sorted_cut_and_filled_from_the_request(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="k"))
        body = {
            "output": {
                "results": [
                    {"index": 1, "relevance_score": 0.2},
                    {"index": 2, "relevance_score": 0.9, "document": {"text": "upstream copy"}},
                    {"index": 0, "relevance_score": 0.5},
                ]
            },
            "usage": {"total_tokens": 42},
            "request_id": "rid-1",
        }
        resp = a.parse_rerank(js(body), {}, req(model="gte-rerank-v2", top_n=2))
        assert [(r.index, r.relevance_score) for r in resp.results] == [(2, 0.9), (0, 0.5)]
        assert [r.document for r in resp.results] == [DOCS[2], DOCS[0]]  # the request's own texts
        assert resp.usage == Usage(42, 0, 42) and resp.id == "rid-1" and resp.provider == "dashscope"
        assert resp.search_units is None and resp.model == "gte-rerank-v2"

    def test_without_return_documents_no_document(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="k"))
        body = {"output": {"results": [{"index": 0, "relevance_score": 0.5}]}, "usage": {"total_tokens": 3}}
        resp = a.parse_rerank(js(body), {"x-request-id": "h-1"}, req(return_documents=False))
        assert resp.results[0].document is None and resp.id == "h-1"
        assert resp.to_dict()["results"] == [{"index": 0, "relevance_score": 0.5}]

    def test_dashscope_error_answered_with_200(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="k"))
        body = {"code": "Throttling.RateQuota", "message": "slow down", "request_id": "r"}
        with pytest.raises(RateLimitError, match="slow down") as exc:
            a.parse_rerank(js(body), {}, req())
        assert exc.value.request_id == "r" and exc.value.status_code == 200

    def test_zhipu_answer_with_string_documents(self) -> None:
        a = ZhipuAdapter(ProviderSettings(api_key="id.secret"))
        body = {
            "created": 1732083164,
            "id": "20241120141244890ab4ee4af84acf",
            "request_id": "1111",
            "results": [
                {"document": "a cat and a dog", "index": 2, "relevance_score": 0.99866986},
                {"document": "the cat sat", "index": 0, "relevance_score": 0.7},
            ],
            "usage": {"prompt_tokens": 72, "total_tokens": 72},
        }
        resp = a.parse_rerank(js(body), {}, req(model="rerank"))
        assert resp.id == "20241120141244890ab4ee4af84acf"
        assert [(r.index, r.document) for r in resp.results] == [(2, DOCS[2]), (0, DOCS[0])]
        assert resp.usage is not None and resp.usage.total_tokens == 72 and resp.usage.prompt_tokens == 72

    def test_jina_answer_and_a_server_that_ignores_top_n(self) -> None:
        a = JinaAdapter(ProviderSettings(api_key="k"))
        body = {
            "model": "jina-reranker-v2-base-multilingual",
            "usage": {"total_tokens": 815},
            "results": [
                {"index": 0, "document": {"text": DOCS[0]}, "relevance_score": 0.87},
                {"index": 2, "document": {"text": DOCS[2]}, "relevance_score": 0.76},
                {"index": 1, "document": {"text": DOCS[1]}, "relevance_score": 0.01},
            ],
        }
        resp = a.parse_rerank(js(body), {}, req(top_n=1))
        assert [r.index for r in resp.results] == [0]
        assert resp.usage == Usage(815, 0, 815) and resp.id == ""

    def test_cohere_answer_bills_search_units(self) -> None:
        a = CohereAdapter(ProviderSettings(api_key="k"))
        body = {
            "id": "07734bd2",
            "results": [{"index": 2, "relevance_score": 0.999071}, {"index": 0, "relevance_score": 0.32713068}],
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }
        resp = a.parse_rerank(js(body), {}, req(model="rerank-v3.5"))
        assert resp.id == "07734bd2" and resp.usage is None and resp.search_units == 1
        assert [(r.index, r.document) for r in resp.results] == [(2, DOCS[2]), (0, DOCS[0])]
        d = resp.to_dict()
        assert d["meta"] == {"billed_units": {"search_units": 1}}
        assert d["usage"] == {"prompt_tokens": 0, "total_tokens": 0}

    def test_ties_keep_the_request_order_and_duplicates_are_dropped(self) -> None:
        a = JinaAdapter(ProviderSettings(api_key="k"))
        body = {
            "results": [
                {"index": 2, "relevance_score": 0.5},
                {"index": 0, "relevance_score": 0.5},
                {"index": 0, "relevance_score": 0.1},
            ]
        }
        resp = a.parse_rerank(js(body), {}, req())
        assert [(r.index, r.relevance_score) for r in resp.results] == [(0, 0.5), (2, 0.5)]

    @pytest.mark.parametrize(
        ("results", "match"),
        [
            ([{"index": 3, "relevance_score": 0.1}], "names document 3"),
            ([{"index": -1, "relevance_score": 0.1}], "names document -1"),
            ([{"index": True, "relevance_score": 0.1}], "names document True"),
            ([{"index": 0, "relevance_score": "high"}], "no numeric relevance_score"),
            ([{"index": 0, "relevance_score": float("nan")}], "no numeric relevance_score"),
            (["x"], "is not an object"),
        ],
    )
    def test_odd_results_are_a_stream_error(self, results: list[Any], match: str) -> None:
        a = JinaAdapter(ProviderSettings(api_key="k"))
        with pytest.raises(StreamError, match=match):  # (orjson writes NaN as null)
            a.parse_rerank(js({"results": results}), {}, req())

    def test_an_answer_without_results_is_the_provider_s_error(self) -> None:
        for a in (JinaAdapter(ProviderSettings(api_key="k")), CohereAdapter(ProviderSettings(api_key="k"))):
            with pytest.raises(UpstreamServerError, match="odd"):
                a.parse_rerank(b'{"message": "odd"}', {}, req())
        with pytest.raises(StreamError, match="malformed JSON"):
            JinaAdapter(ProviderSettings(api_key="k")).parse_rerank(b'{"results": [', {}, req())

    def test_usage_from_every_shape(self) -> None:
        assert rerank_usage({"usage": {"total_tokens": 5}}) == (Usage(5, 0, 5), None)
        assert rerank_usage({"usage": {"prompt_tokens": 6}}) == (Usage(6, 0, 6), None)
        meta = {"billed_units": {"search_units": 2, "input_tokens": 9}, "tokens": {"input_tokens": 11}}
        assert rerank_usage({"meta": meta}) == (Usage(9, 0, 9), 2)
        assert rerank_usage({"meta": {"tokens": {"input_tokens": 11.0}}}) == (Usage(11, 0, 11), None)
        assert rerank_usage({"meta": {"billed_units": {"search_units": 0.5}}}) == (None, 0.5)
        assert rerank_usage({"meta": {"billed_units": {"search_units": -1}}}) == (None, None)
        assert rerank_usage({}) == (None, None)
        with pytest.raises(ValueError):
            rerank_usage({"usage": {"total_tokens": 1e300}})


class TestErrors:
    def test_dashscope_codes(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key="k"))
        err = a.parse_error(
            401, {}, js({"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "r1"})
        )
        assert isinstance(err, AuthenticationError) and err.request_id == "r1" and err.code == "InvalidApiKey"
        err = a.parse_error(400, {}, js({"code": "InvalidParameter", "message": "Model not exist."}))
        assert isinstance(err, NotFoundError)

    def test_zhipu_codes(self) -> None:
        a = ZhipuAdapter(ProviderSettings(api_key="id.secret"))
        err = a.parse_error(429, {"retry-after": "2"}, js({"error": {"code": "1302", "message": "busy"}}))
        assert isinstance(err, RateLimitError) and err.retry_after == 2.0
        err = a.parse_error(429, {}, js({"error": {"code": "1113", "message": "arrears"}}))
        assert isinstance(err, PermissionDeniedError)

    def test_jina_fastapi_detail(self) -> None:
        a = JinaAdapter(ProviderSettings(api_key="k"))
        err = a.parse_error(401, {}, js({"detail": "Unauthorized: invalid API key"}))
        assert isinstance(err, AuthenticationError) and err.message == "Unauthorized: invalid API key"
        detail = [{"loc": ["body", "query"], "msg": "Field required", "type": "missing"}]
        err = a.parse_error(422, {}, js({"detail": detail}))
        assert isinstance(err, BadRequestError) and err.message == "body.query: Field required"
        err = a.parse_error(400, {}, js({"error": {"message": "bad", "type": "invalid_request_error"}}))
        assert isinstance(err, BadRequestError) and err.message == "bad"  # an OpenAI-shaped server (vLLM)
        err = a.parse_error(503, {}, b"<html>busy</html>")
        assert isinstance(err, UpstreamServerError) and "busy" in err.message

    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, BadRequestError),
            (401, AuthenticationError),
            (402, PermissionDeniedError),
            (404, NotFoundError),
            (422, BadRequestError),
            (429, RateLimitError),
            (500, UpstreamServerError),
            (503, UpstreamServerError),
        ],
    )
    def test_cohere_statuses(self, status: int, cls: type[Exception]) -> None:
        a = CohereAdapter(ProviderSettings(api_key="k"))
        err = a.parse_error(status, {"retry-after": "1"}, js({"id": "c-1", "message": f"said {status}"}))
        assert type(err) is cls and err.message == f"said {status}" and err.request_id == "c-1"
        assert err.provider == "cohere" and err.status_code == status and err.retry_after == 1.0

    def test_cohere_odd_bodies(self) -> None:
        a = CohereAdapter(ProviderSettings(api_key="k"))
        assert a.parse_error(500, {}, b"").message == "HTTP 500"
        assert a.parse_error(502, {}, b"bad gateway").message == "bad gateway"
        err = a.parse_error(400, {}, js({"error": {"message": "x", "code": "y"}}))
        assert err.message == "x" and err.code == "y"


class TestValidation:
    def test_documents_as_strings_or_text_objects(self) -> None:
        r = rerank_request("m", "q", ["a", {"text": "b", "id": 7}], top_n=5, return_documents=False, extra={"x": 1})
        assert r.documents == ["a", "b"] and r.top_n == 5 and r.return_documents is False and r.extra == {"x": 1}
        assert rerank_request("m", "q", ["a"]).return_documents is True  # Cohere v1's and Jina's default

    def test_reserved_fields_never_become_extras(self) -> None:
        r = rerank_request("m", "q", ["a"], extra={"model": "x", "documents": [], "instruct": "i"})
        assert r.extra == {"instruct": "i"}

    @pytest.mark.parametrize(
        ("query", "documents", "kw", "param"),
        [
            (None, ["a"], {}, "query"),
            ("", ["a"], {}, "query"),
            ("  ", ["a"], {}, "query"),
            (7, ["a"], {}, "query"),
            ("q", [], {}, "documents"),
            ("q", "a", {}, "documents"),
            ("q", None, {}, "documents"),
            ("q", ["a", 3], {}, "documents[1]"),
            ("q", ["a", {"text": 3}], {}, "documents[1].text"),
            ("q", ["a", {"image": "u"}], {}, "documents[1].text"),
            ("q", ["a"], {"top_n": 0}, "top_n"),
            ("q", ["a"], {"top_n": -2}, "top_n"),
            ("q", ["a"], {"top_n": 1.0}, "top_n"),
            ("q", ["a"], {"top_n": True}, "top_n"),
            ("q", ["a"], {"top_n": "3"}, "top_n"),
            ("q", ["a"], {"return_documents": "yes"}, "return_documents"),
            ("q", ["a"], {"return_documents": 1}, "return_documents"),
        ],
    )
    def test_bad_input_names_the_field(self, query: Any, documents: Any, kw: dict[str, Any], param: str) -> None:
        with pytest.raises(InvalidRequestError) as exc:
            rerank_request("m", query, documents, **kw)
        assert exc.value.param == param and exc.value.http_status == 400

    def test_the_document_cap(self) -> None:
        assert len(rerank_request("m", "q", ["d"] * 1000).documents) == 1000
        with pytest.raises(InvalidRequestError, match="at most 1000") as exc:
            rerank_request("m", "q", ["d"] * 1001)
        assert exc.value.param == "documents" and exc.value.code == "too_many_documents"

    def test_a_huge_top_n_means_all(self) -> None:
        assert rerank_request("m", "q", ["a", "b"], top_n=2**70).top_n == 2
        assert rerank_request("m", "q", ["a", "b"], top_n=7).top_n == 7
