"""A record's bodies through a running gateway (``request_log.bodies``), on SQLite and PostgreSQL: GET
/admin/usage/records/{record_id} gives the request's and the answer's bodies as the request log writes them (cut at
max_body_bytes, secrets masked), a stream's request only, a refused request's body; no secret reaches the table;
with bodies off the fields are null and the table stays empty."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from crashkit import drop_schema
from gw import MASTER_KEY, RunningGateway

import services
from modelway.config import parse_config
from modelway.server import create_app
from modelway.store import SQLStore
from modelway.testing import OpenAISimulator, Reply

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
BODY_SECRET = "sk-proj-callersecret987654321"
MEMBER_SECRET = "member-secret-value"
CAP = 600


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gw.db'}"
        return
    request.getfixturevalue("postgres_server")
    schema = "mw_bodies_" + secrets.token_hex(6)
    try:
        yield f"{services.PG_URL}?schema={schema}"
    finally:
        asyncio.run(drop_schema(services.PG_URL, schema))


def config(sim: OpenAISimulator, url: str, tmp: Path, request_log: dict[str, Any]) -> dict[str, Any]:
    dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
    return {
        "server": {"master_key": MASTER_KEY, "max_retries": 0},
        "store": {"url": url},
        "usage": {"flush_interval": 0.05, "spill_path": str(tmp / "spill.jsonl")},
        "request_log": request_log,
        "models": [{"name": "gpt", "deployments": [dep]}],
    }


@contextlib.contextmanager
def running(cfg: dict[str, Any]) -> Iterator[httpx.Client]:
    """A gateway (stopped before the test's database goes) and an admin client of it."""
    gw = RunningGateway(create_app(parse_config(cfg, env={}), env={})).start()
    try:
        with httpx.Client(base_url=gw.url, headers=ADMIN) as client:
            yield client
    finally:
        gw.stop()


def records(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """The gateway's records by request id, each as GET /admin/usage/records/{record_id} answers it."""
    page = client.get("/admin/usage/records", params={"limit": 100}).json()["data"]
    out = {}
    for r in page:
        one = client.get(f"/admin/usage/records/{r['record_id']}")
        assert one.status_code == 200, one.text
        out[r["request_id"]] = one.json()
    return out


def stored_bodies(url: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        store = SQLStore(url)
        await store.open()
        try:
            async with store._connect() as conn:
                rows = await conn.exec_driver_sql("SELECT * FROM mw_usage_bodies")
                return [tuple(r) for r in rows.all()]
        finally:
            await store.aclose()

    return asyncio.run(read())


def chat(content: str, **more: Any) -> dict[str, Any]:
    return {
        "model": "gpt",
        "messages": [{"role": "user", "content": content}],
        "metadata": {"api_key": MEMBER_SECRET},
        **more,
    }


def test_bodies_on_are_kept_with_the_record_capped_and_redacted(
    openai_sim: OpenAISimulator,
    store_url: str,
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "requests.log"
    rl = {"enabled": True, "path": str(log_path), "bodies": True, "max_body_bytes": CAP}
    openai_sim.push(Reply(text="hello there", usage=(7, 3)), Reply(text="streamed", usage=(5, 2)), Reply(text="ok"))
    long_text = "word " * 400 + BODY_SECRET
    with running(config(openai_sim, store_url, tmp_path, rl)) as client:
        sent = [
            ("b-whole", chat(f"keep {BODY_SECRET} safe")),
            ("b-stream", chat("stream it", stream=True, stream_options={"include_usage": True})),
            ("b-long", chat(long_text)),
        ]
        for rid, body in sent:
            r = client.post("/v1/chat/completions", json=body, headers={"x-request-id": rid})
            assert r.status_code == 200, r.text
        bad = b'{"model": "gpt", "api_key": "' + BODY_SECRET.encode() + b'", not json'
        r = client.post("/v1/chat/completions", content=bad, headers={"x-request-id": "b-bad"})
        assert r.status_code == 400
        deadline = time.monotonic() + 5
        while len(got := records(client)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)

    whole, stream, long, refused = (got[rid] for rid in ("b-whole", "b-stream", "b-long", "b-bad"))
    request = orjson.loads(whole["request_body"])
    assert request["messages"][0]["content"] == "keep [redacted] safe"
    assert request["metadata"] == {"api_key": "[redacted]"}
    assert orjson.loads(whole["response_body"])["choices"][0]["message"]["content"] == "hello there"

    assert stream["stream"] is True and "stream it" in stream["request_body"]
    assert stream["response_body"] is None  # a stream's answer is not kept

    size = len(orjson.dumps(chat(long_text)))
    assert long["request_body"].endswith(f"…({size} bytes)")
    assert len(long["request_body"].encode()) <= CAP + len(f"…({size} bytes)".encode())
    assert orjson.loads(long["response_body"])["choices"][0]["message"]["content"] == "ok"

    assert refused["status"] == 400 and refused["error"] == "invalid_json"
    assert refused["request_body"].startswith('{"model": "gpt", "api_key": "[redacted]"')
    assert refused["response_body"] is None

    # the same text as the request log's line, and no secret anywhere in the table
    line = next(orjson.loads(x) for x in log_path.read_text().splitlines() if '"b-whole"' in x)
    assert (line["request_body"], line["response_body"]) == (whole["request_body"], whole["response_body"])
    rows = stored_bodies(store_url)
    assert len(rows) == 4
    table = repr(rows)
    assert BODY_SECRET not in table and MEMBER_SECRET not in table and "callersecret" not in table


def test_bodies_off_leave_the_fields_null_and_the_table_empty(
    openai_sim: OpenAISimulator,
    store_url: str,
    tmp_path: Path,
) -> None:
    openai_sim.push(Reply(text="hello"))
    with running(config(openai_sim, store_url, tmp_path, {"enabled": True, "path": str(tmp_path / "r.log")})) as client:
        r = client.post("/v1/chat/completions", json=chat("hi"), headers={"x-request-id": "off-1"})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while not (got := records(client)) and time.monotonic() < deadline:
            time.sleep(0.05)
    record = got["off-1"]
    assert record["request_body"] is None and record["response_body"] is None
    assert stored_bodies(store_url) == []
    assert "request_body" not in (tmp_path / "r.log").read_text()


def test_bodies_are_kept_for_the_console_without_log_lines(
    openai_sim: OpenAISimulator,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    openai_sim.push(Reply(text="hello"))
    with running(config(openai_sim, url, tmp_path, {"bodies": True})) as client:  # request_log.enabled: false
        assert (
            client.post("/v1/chat/completions", json=chat("hi"), headers={"x-request-id": "quiet"}).status_code == 200
        )
        deadline = time.monotonic() + 5
        while not (got := records(client)) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert orjson.loads(got["quiet"]["request_body"])["messages"][0]["content"] == "hi"
