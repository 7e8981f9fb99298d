"""The control plane through a running gateway: virtual keys, their limits and budgets, the usage ledger, metrics.

A real SQLite store in a temporary directory and the in-process limiter (the Redis limiter across worker
processes is in ``test_workers.py``). Upstreams are the OpenAI simulator, whose token counts are set per reply,
so every cost below is computed from known numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import OpenAISimulator, Reply
from services import PG_URL, redis_url

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
# per million tokens
PRICE_IN, PRICE_OUT = 2.0, 8.0


def cost(prompt: int, completion: int) -> float:
    return (prompt * PRICE_IN + completion * PRICE_OUT) / 1_000_000


async def call(
    gw: RunningGateway, method: str, path: str, body: Any = None, key: str | None = None, scheme: str = "Bearer"
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"{scheme} {key or MASTER_KEY}"}
    async with aiohttp.ClientSession() as s, s.request(method, gw.url + path, json=body, headers=headers) as r:
        text = await r.read()
        try:
            data: Any = await r.json(content_type=None)
        except ValueError:
            data = text.decode()
        return r.status, {k.lower(): v for k, v in r.headers.items()}, data


def chat(model: str = "gpt", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def new_key(gw: RunningGateway, **fields: Any) -> tuple[str, str]:
    status, _, body = await call(gw, "POST", "/admin/keys", {"name": "test", **fields})
    assert status == 201, body
    assert body["key"].startswith("mw-") and body["prefix"] == body["key"][:7]
    return body["key"], body["id"]


def cp_config(sim: OpenAISimulator, db: Path, **extra: Any) -> dict[str, Any]:
    dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
    return {
        "server": {"master_key": MASTER_KEY, "max_retries": 0},
        "store": {"url": f"sqlite:///{db}", "key_refresh": 3600},  # keys from elsewhere: looked up on a miss
        "usage": {"flush_interval": 0.05, "spill_path": str(db.parent / "spill.jsonl")},
        "models": [
            {"name": "gpt", "price": {"input": PRICE_IN, "output": PRICE_OUT}, "deployments": [dep]},
            {"name": "free", "deployments": [{**dep, "model": "openai/free-model"}]},
        ],
        # direct provider/model calls go to the simulator too
        "providers": {"openai": {"api_key": sim.api_key, "base_url": sim.base_url}},
        **extra,
    }


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cp") / "modelway.db"


@pytest.fixture(scope="module")
def cp(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, db: Path
) -> Iterator[RunningGateway]:
    yield start_gateway(cp_config(openai_sim, db))


class TestKeys:
    async def test_a_virtual_key_calls_and_its_usage_is_recorded(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp)
        openai_sim.push(Reply("hello", usage=(11, 7)))
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 200 and body["choices"][0]["message"]["content"] == "hello"
        status, _, usage = await call(cp, "GET", f"/admin/usage?group_by=key&key_id={key_id}")
        assert status == 200 and usage["currency"] == "USD"
        [row] = usage["data"]
        assert row["group"] == key_id and row["requests"] == 1 and row["errors"] == 0
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (11, 7, 18)
        assert row["cost"] == pytest.approx(cost(11, 7))
        status, _, records = await call(cp, "GET", f"/admin/usage/records?key_id={key_id}")
        [rec] = records["data"]
        assert rec["deployment"] == "openai/gpt-4o-mini" and rec["model"] == "gpt" and rec["endpoint"] == "chat"
        assert rec["status"] == 200 and rec["stream"] is False and rec["latency_ms"] > 0

    async def test_the_openai_sdk_works_with_a_virtual_key(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, _ = await new_key(cp)
        openai_sim.push(Reply("streamed answer", usage=(5, 3)))
        client = openai.AsyncOpenAI(api_key=secret, base_url=cp.base_url)
        async with client:
            stream = await client.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "x"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "streamed answer"

    async def test_stream_usage_is_recorded_even_when_the_caller_did_not_ask_for_it(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp)
        openai_sim.push(Reply("abc def", usage=(9, 4)))
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(stream=True), key=secret)
        assert status == 200 and '"usage"' not in body  # the caller did not ask for include_usage
        _, _, records = await call(cp, "GET", f"/admin/usage/records?key_id={key_id}")
        [rec] = records["data"]
        assert rec["stream"] is True and (rec["prompt_tokens"], rec["completion_tokens"]) == (9, 4)
        assert rec["cost"] == pytest.approx(cost(9, 4)) and rec["ttft_ms"] is not None

    async def test_a_model_outside_the_key_s_list_is_403(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, models=["free"])
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat("gpt"), key=secret)
        assert status == 403 and body["error"]["code"] == "model_not_allowed" and body["error"]["param"] == "model"
        assert "free" in body["error"]["message"]
        status, _, _ = await call(cp, "POST", "/v1/chat/completions", chat("free"), key=secret)
        assert status == 200

    async def test_wrong_revoked_and_expired_keys_are_401(self, cp: RunningGateway) -> None:
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key="mw-not-a-key")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        secret, key_id = await new_key(cp)
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200
        status, _, body = await call(cp, "DELETE", f"/admin/keys/{key_id}")
        assert status == 200 and body["revoked_at"] is not None
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 401 and body["error"]["code"] == "revoked_api_key"
        secret, _ = await new_key(cp, expires_in=0.3)
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200
        await asyncio.sleep(0.4)
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 401 and body["error"]["code"] == "expired_api_key"

    async def test_a_key_created_elsewhere_works_at_once(self, cp: RunningGateway, db: Path) -> None:
        """A key written to the store by another process (the CLI) is found on its first use."""
        from modelway.auth.keys import new_key as make
        from modelway.store.sql import SQLStore

        secret, key = make("from-cli")
        store = SQLStore(f"sqlite:///{db}")
        await store.open()
        try:
            await store.insert_key(key)
        finally:
            await store.aclose()
        status, _, _ = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 200

    async def test_the_admin_api_needs_the_master_key(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp)
        status, _, body = await call(cp, "GET", "/admin/keys", key=secret)
        assert status == 403 and body["error"]["code"] == "admin_only"
        status, _, body = await call(cp, "GET", "/admin/keys")
        assert status == 200 and all("key_hash" not in k and "key" not in k for k in body["data"])

    async def test_admin_validation_names_the_field(self, cp: RunningGateway) -> None:
        for body, param in (
            ({"name": "x", "rpm": 0}, "rpm"),
            ({"name": "x", "rpm": True}, "rpm"),
            ({"name": "x", "budget_period": "week"}, "budget_period"),
            ({"name": "x", "models": []}, "models"),
            ({"name": "x", "colour": "red"}, "colour"),
            ({"rpm": 5}, "name"),
            ({"name": "x", "tpm": 2**31}, "tpm"),  # stored as a 32-bit integer
            ({"name": "x", "models": ["a\u0000"]}, "models"),  # PostgreSQL cannot store NUL in text
            ({"name": "x", "expires_at": 2e9, "expires_in": 60}, "expires_in"),
        ):
            status, _, err = await call(cp, "POST", "/admin/keys", body)
            assert status == 400 and err["error"]["param"] == param, (body, err)
        status, _, body = await call(cp, "POST", "/admin/keys", {"name": "x", "rpm": 60.0})
        assert status == 201 and body["rpm"] == 60 and isinstance(body["rpm"], int)
        for q in ("/admin/keys?include_revoked=null", "/admin/usage/records?since=", "/admin/usage?group_by="):
            status, _, err = await call(cp, "GET", q)
            assert status == 400, (q, err)
        status, headers, _ = await call(cp, "PUT", "/admin/keys")
        assert status == 405 and headers["allow"] == "GET, POST"
        status, _, err = await call(cp, "GET", "/admin/keys/key_nope")
        assert status == 404 and err["error"]["code"] == "key_not_found"

    async def test_patch_changes_limits_at_once(self, cp: RunningGateway) -> None:
        secret, key_id = await new_key(cp, rpm=1)
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 429
        status, _, body = await call(cp, "PATCH", f"/admin/keys/{key_id}", {"rpm": None})
        assert status == 200 and body["rpm"] is None
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200


class TestLimits:
    async def test_rpm_refuses_the_request_over_the_limit_with_retry_after(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, rpm=3)
        if 60 - time.time() % 60 < 3:  # keep the three requests in one calendar minute
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
        statuses = [(await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert body["error"]["type"] == "rate_limit_error"
        assert 1 <= int(headers["retry-after"]) <= 60
        # the refusal is a record too
        _, _, summary = await call(cp, "GET", "/admin/usage?group_by=key")
        assert any(r["requests"] == 4 and r["errors"] == 1 for r in summary["data"])

    async def test_rate_limit_headers_say_what_is_left(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, rpm=10, tpm=100_000)
        if 60 - time.time() % 60 < 3:  # keep both requests in one calendar minute
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
        status, headers, _ = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "10"
        assert headers["x-ratelimit-remaining-requests"] == "9"
        assert headers["x-ratelimit-limit-tokens"] == "100000" and headers["x-ratelimit-remaining-tokens"] == "100000"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        status, headers, _ = await call(cp, "POST", "/v1/chat/completions", chat(stream=True), key=secret)
        assert status == 200 and headers["x-ratelimit-remaining-requests"] == "8"
        assert int(headers["x-ratelimit-remaining-tokens"]) < 100_000  # the first answer's tokens count
        unlimited, _ = await new_key(cp)
        _, headers, _ = await call(cp, "POST", "/v1/chat/completions", chat(), key=unlimited)
        assert not any(h.startswith("x-ratelimit") for h in headers)

    async def test_the_sdk_sees_its_own_rate_limit_error(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, rpm=1)
        client = openai.AsyncOpenAI(api_key=secret, base_url=cp.base_url, max_retries=0)
        async with client:
            await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
            with pytest.raises(openai.RateLimitError) as info:
                await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
        assert "requests per minute" in str(info.value)

    async def test_budget_refuses_once_spent(self, cp: RunningGateway, openai_sim: OpenAISimulator) -> None:
        # one request costs cost(1000, 1000) = 0.01; a budget of 0.015 lets two through, not three
        secret, key_id = await new_key(cp, budget=0.015, budget_period="day")
        for _ in range(2):
            openai_sim.push(Reply("x", usage=(1000, 1000)))
            assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200
        status, headers, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 429 and body["error"]["code"] == "budget_exceeded"
        assert "retry-after" in headers  # a daily budget starts again at midnight UTC
        status, _, info = await call(cp, "GET", f"/admin/keys/{key_id}")
        assert status == 200 and info["spend"] == pytest.approx(0.02) and info["period_end"] > time.time()

    async def test_the_key_list_gives_every_keys_spend_in_one_answer(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp, budget=5.0, budget_period="month")
        _, other = await new_key(cp)
        openai_sim.push(Reply("x", usage=(1000, 1000)))
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200  # spends 0.01
        status, _, listed = await call(cp, "GET", "/admin/keys?with_spend=true")
        assert status == 200
        by_id = {k["id"]: k for k in listed["data"]}
        for kid in (key_id, other):
            _, _, one = await call(cp, "GET", f"/admin/keys/{kid}")
            got = by_id[kid]
            assert (got["spend"], got["period_start"], got["period_end"]) == (
                one["spend"], one["period_start"], one["period_end"],
            )  # fmt: skip
        assert by_id[key_id]["spend"] == pytest.approx(0.01) and by_id[other]["spend"] == 0.0
        assert "spend" not in (await call(cp, "GET", "/admin/keys"))[2]["data"][0]
        status, _, body = await call(cp, "GET", "/admin/keys?with_spend=maybe")
        assert status == 400 and body["error"]["param"] == "with_spend"

    async def test_max_parallel_counts_streams_in_flight(self, cp: RunningGateway, openai_sim: OpenAISimulator) -> None:
        secret, _ = await new_key(cp, max_parallel=1)
        openai_sim.push(Reply("a b c d e f", chunk_size=1, chunk_delay=0.05))
        slow = asyncio.create_task(call(cp, "POST", "/v1/chat/completions", chat(stream=True), key=secret))
        await asyncio.sleep(0.15)
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 429 and body["error"]["code"] == "max_parallel_exceeded"
        assert (await slow)[0] == 200
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200

    async def test_a_caller_leaving_mid_stream_frees_its_place_and_is_recorded_499(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp, max_parallel=1)
        openai_sim.push(Reply("x " * 200, chunk_size=1, chunk_delay=0.02))
        async with aiohttp.ClientSession() as s:
            r = await s.post(
                cp.url + "/v1/chat/completions", json=chat(stream=True), headers={"Authorization": f"Bearer {secret}"}
            )
            await r.content.readline()
            r.close()
        for _ in range(100):  # the gateway notices the disconnect and finishes the ticket
            status, _, _ = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200
        _, _, records = await call(cp, "GET", f"/admin/usage/records?key_id={key_id}")
        assert sorted(r["status"] for r in records["data"]) == [200, 499]


class TestMetrics:
    async def test_metrics_count_requests_tokens_and_cost(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        async def sample(name: str, labels: str) -> float:
            _, _, text = await call(cp, "GET", "/metrics")
            for line in text.splitlines():
                if line.startswith(name + "{") and labels in line:
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        before = await sample("modelway_requests_total", 'endpoint="chat",model="gpt",status="200"')
        tokens_before = await sample("modelway_tokens_total", 'kind="completion",model="gpt"')
        secret, _ = await new_key(cp)
        openai_sim.push(Reply("x", usage=(10, 20)), Reply("y", usage=(1, 2)))
        for stream in (False, True):
            assert (await call(cp, "POST", "/v1/chat/completions", chat(stream=stream), key=secret))[0] == 200
        assert await sample("modelway_requests_total", 'endpoint="chat",model="gpt",status="200"') == before + 2
        assert await sample("modelway_tokens_total", 'kind="completion",model="gpt"') == tokens_before + 22
        await call(cp, "POST", "/v1/chat/completions", chat("no-such-model"), key=secret)
        _, headers, text = await call(cp, "GET", "/metrics")
        assert headers["content-type"].startswith("text/plain")
        assert 'model="no-such-model"' not in text and 'model="(unknown)"' in text
        assert "modelway_time_to_first_token_seconds_bucket" in text and "modelway_requests_in_flight 0.0" in text


def test_usage_is_flushed_at_shutdown(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, tmp_path: Path
) -> None:
    """Records still in memory when the gateway stops are written before it exits."""
    from modelway.store.sql import SQLStore

    db = tmp_path / "s.db"
    cfg = cp_config(openai_sim, db)
    cfg["usage"]["flush_interval"] = 3600  # never on time: only the shutdown flush can write them
    gw = start_gateway(cfg)
    import httpx

    with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
        for _ in range(5):
            assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    gw.stop()

    async def count() -> int:
        store = SQLStore(f"sqlite:///{db}")
        await store.open()
        try:
            return len(await store.usage_records(limit=100))
        finally:
            await store.aclose()

    assert asyncio.run(count()) == 5


def test_without_a_store_the_admin_api_says_how_to_get_one(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, tmp_path: Path
) -> None:
    import httpx

    cfg = cp_config(openai_sim, tmp_path / "x.db")
    del cfg["store"]
    gw = start_gateway(cfg)
    with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
        r = client.get("/admin/keys")
        assert r.status_code == 404 and "store.url" in r.json()["error"]["message"]
        assert client.get("/metrics").status_code == 200
    assert not (tmp_path / "x.db").exists()


class TestAbuse:
    """What a caller holding a key could do to the gateway's books, and why it does not work."""

    async def test_a_stream_abandoned_before_its_usage_is_charged_an_estimate(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp)
        openai_sim.push(Reply("word " * 400, chunk_size=20, chunk_delay=0.005, usage=(1000, 1000)))
        async with aiohttp.ClientSession() as s:
            r = await s.post(
                cp.url + "/v1/chat/completions", json=chat(stream=True), headers={"Authorization": f"Bearer {secret}"}
            )
            for _ in range(40):
                await r.content.readline()
            r.close()
        for _ in range(100):
            _, _, records = await call(cp, "GET", f"/admin/usage/records?key_id={key_id}")
            if records["data"]:
                break
            await asyncio.sleep(0.02)
        [rec] = records["data"]
        assert rec["status"] == 499 and rec["estimated"] is True
        assert rec["completion_tokens"] > 0 and rec["prompt_tokens"] > 0 and rec["cost"] > 0

    async def test_a_budget_set_later_counts_what_was_spent_before(
        self, cp: RunningGateway, openai_sim: OpenAISimulator
    ) -> None:
        secret, key_id = await new_key(cp, rpm=1000)
        openai_sim.push(Reply("x", usage=(1000, 1000)))
        assert (await call(cp, "POST", "/v1/chat/completions", chat(), key=secret))[0] == 200  # spends 0.01
        status, _, _ = await call(cp, "PATCH", f"/admin/keys/{key_id}", {"budget": 0.005, "budget_period": "total"})
        assert status == 200
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat(), key=secret)
        assert status == 429 and body["error"]["code"] == "budget_exceeded"

    async def test_a_budgeted_key_cannot_call_an_unpriced_model(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, budget=1.0)
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat("free"), key=secret)
        assert status == 403 and body["error"]["code"] == "model_not_priced"
        # the same upstream called directly costs what it costs behind its alias
        assert (await call(cp, "POST", "/v1/chat/completions", chat("openai/gpt-4o-mini"), key=secret))[0] == 200
        status, _, body = await call(cp, "POST", "/v1/chat/completions", chat("openai/unpriced-x"), key=secret)
        assert status == 403 and body["error"]["code"] == "model_not_priced"

    async def test_made_up_model_names_do_not_become_metric_labels(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp)
        for i in range(3):
            assert (await call(cp, "POST", "/v1/chat/completions", chat(f"openai/made-up-{i}"), key=secret))[0] == 200
        _, _, text = await call(cp, "GET", "/metrics")
        assert "made-up" not in text and 'model="openai/(other)"' in text

    async def test_a_refusal_for_the_model_list_is_recorded(self, cp: RunningGateway) -> None:
        secret, key_id = await new_key(cp, models=["gpt"])
        assert (await call(cp, "POST", "/v1/chat/completions", chat("free"), key=secret))[0] == 403
        _, _, records = await call(cp, "GET", f"/admin/usage/records?key_id={key_id}")
        assert [(r["status"], r["error"]) for r in records["data"]] == [(403, "model_not_allowed")]

    async def test_a_restricted_key_lists_only_its_models(self, cp: RunningGateway) -> None:
        secret, _ = await new_key(cp, models=["gpt"])
        status, _, body = await call(cp, "GET", "/v1/models", key=secret)
        assert status == 200 and [m["id"] for m in body["data"]] == ["gpt"]

    async def test_odd_admin_queries_are_400(self, cp: RunningGateway) -> None:
        for q in ("since=nan", "until=inf", "since=yesterday", "group_by=colour"):
            status, _, body = await call(cp, "GET", f"/admin/usage?{q}")
            assert status == 400, (q, body)

    async def test_the_master_key_works_with_a_lowercase_scheme(self, cp: RunningGateway) -> None:
        status, _, _ = await call(cp, "GET", "/admin/keys", key=None, scheme="bearer")
        assert status == 200


@pytest.mark.usefixtures("postgres_server")
def test_a_nul_in_a_model_name_cannot_poison_the_postgresql_ledger(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in text: a caller's model name with one must not block every later record."""
    import secrets as _secrets

    import httpx

    schema = "mw_test_" + _secrets.token_hex(6)
    cfg = cp_config(openai_sim, tmp_path / "unused.db")
    cfg["store"]["url"] = f"{PG_URL}?schema={schema}"
    try:
        gw = start_gateway(cfg)
        with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
            key = client.post("/admin/keys", json={"name": "n", "budget": 100.0}).json()
            r = client.post("/v1/chat/completions", json=chat("gpt\u0000"))
            assert r.status_code == 404
            time.sleep(0.2)  # a flush or two
            victim = {"Authorization": f"Bearer {key['key']}"}
            assert client.post("/v1/chat/completions", json=chat(), headers=victim).status_code == 200
            summary = client.get("/admin/usage?group_by=model")
            assert summary.status_code == 200
            assert {row["group"]: row["requests"] for row in summary.json()["data"]} == {"gpt": 2}
        gw.stop()
    finally:

        async def drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.mark.usefixtures("redis_server")
def test_budgets_survive_redis_losing_its_data(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator, tmp_path: Path
) -> None:
    """After Redis restarts empty, a key's spend is seeded again from the ledger, not started from 0."""
    import httpx
    import redis

    cfg = cp_config(openai_sim, tmp_path / "r.db")
    cfg["store"]["redis_url"] = redis_url(14)
    gw = start_gateway(cfg)
    with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
        key = client.post("/admin/keys", json={"name": "r", "budget": 0.015, "budget_period": "day"}).json()
        victim = {"Authorization": f"Bearer {key['key']}"}
        for _ in range(2):
            openai_sim.push(Reply("x", usage=(1000, 1000)))  # 0.01 each
            assert client.post("/v1/chat/completions", json=chat(), headers=victim).status_code == 200
        r = redis.Redis.from_url(redis_url(14))
        try:
            lost = [k for k in r.scan_iter(f"mw:{{{key['id']}}}:*")]
            assert lost and r.delete(*lost) == len(lost)
        finally:
            r.close()
        r2 = client.post("/v1/chat/completions", json=chat(), headers=victim)
        assert r2.status_code == 429 and r2.json()["error"]["code"] == "budget_exceeded"


def test_demo_models_are_free_so_budgeted_keys_can_try_them(tmp_path: Path) -> None:
    import httpx

    from modelway.config import parse_config
    from modelway.server import create_app

    cfg = {
        "server": {"master_key": MASTER_KEY},
        "store": {"url": f"sqlite:///{tmp_path / 'd.db'}"},
        "usage": {"spill_path": str(tmp_path / "spill.jsonl")},
    }
    gw = RunningGateway(create_app(parse_config(cfg, env={}), env={}, demo=True)).start()
    try:
        with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
            key = client.post("/admin/keys", json={"name": "d", "budget": 1.0}).json()
            r = client.post(
                "/v1/chat/completions",
                json=chat("demo/glm-4-flash"),
                headers={"Authorization": f"Bearer {key['key']}"},
            )
            assert r.status_code == 200 and "You said" in r.json()["choices"][0]["message"]["content"]
            info = client.get(f"/admin/keys/{key['id']}").json()
            assert info["spend"] == 0.0
    finally:
        gw.stop()
