"""``modelway worker`` in-process: the FastChat and DB-GPT worker APIs over simulated providers, registration and
heartbeats against test doubles of the two controllers (built from their protocols), error codes, usage labels,
queue length and the drain. The real FastChat and DB-GPT are in ``test_worker_fastchat.py`` and
``test_worker_dbgpt.py``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from modelway.cluster import worker as worker_module
from modelway.cluster.codes import ErrorCode
from modelway.cluster.worker import ServedModel, WorkerApp, WorkerSettings, create_worker_app
from modelway.config import parse_config
from modelway.server.runner import GatewayServer, serve_config
from modelway.testing import DashScopeSimulator, Fault, OpenAISimulator, Reply, ZhipuSimulator
from modelway.usage.records import UsageRecord

CHATML = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
MODELS = [
    ServedModel("glm-4-flash", "glm"),
    ServedModel("qwen-plus", "qwen"),
    ServedModel("text-embedding-3-small", "embed", embedding=True),
]


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeFastChatController:
    """FastChat's controller protocol (``/register_worker``, ``/receive_heart_beat``), recording what it got."""

    def __init__(self) -> None:
        self.registrations: list[dict[str, Any]] = []
        self.beats: list[dict[str, Any]] = []
        self.exist = True

    async def register(self, request: web.Request) -> web.Response:
        self.registrations.append(await request.json())
        self.exist = True
        return web.json_response(None)

    async def beat(self, request: web.Request) -> web.Response:
        self.beats.append(await request.json())
        return web.json_response({"exist": self.exist})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/register_worker", self.register)
        app.router.add_post("/receive_heart_beat", self.beat)
        return app


class FakeDbgptController:
    """DB-GPT's controller protocol (``/api/controller/models``, ``/api/controller/heartbeat``)."""

    def __init__(self) -> None:
        self.registrations: list[dict[str, Any]] = []
        self.beats: list[dict[str, Any]] = []
        self.deletions: list[dict[str, str]] = []

    async def register(self, request: web.Request) -> web.Response:
        self.registrations.append(await request.json())
        return web.json_response(True)

    async def beat(self, request: web.Request) -> web.Response:
        self.beats.append(await request.json())
        return web.json_response(True)

    async def delete(self, request: web.Request) -> web.Response:
        self.deletions.append(dict(request.query))
        return web.json_response(True)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/controller/models", self.register)
        app.router.add_delete("/api/controller/models", self.delete)
        app.router.add_post("/api/controller/heartbeat", self.beat)
        return app


@asynccontextmanager
async def serving(app: web.Application, sock: socket.socket | None = None) -> AsyncIterator[str]:
    sock = sock or _socket()
    # a handler still running at the end (a controller that hangs) is cancelled at the cleanup, not waited for
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


class Worker:
    def __init__(self, app: WorkerApp, url: str, server: GatewayServer, records: list[UsageRecord]) -> None:
        self.app = app
        self.url = url
        self.server = server
        self.records = records

    async def post(self, path: str, body: Any = None) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s, s.post(self.url + path, json=body) as r:
            return r.status, await r.read()

    async def json(self, path: str, body: Any = None) -> Any:
        status, raw = await self.post(path, body)
        assert status == 200, raw
        return orjson.loads(raw)

    async def frames(self, path: str, body: Any) -> list[dict[str, Any]]:
        status, raw = await self.post(path, body)
        assert status == 200, raw
        assert raw.endswith(b"\0"), raw
        return [orjson.loads(f) for f in raw.split(b"\0") if f]


@asynccontextmanager
async def worker(
    sims: dict[str, Any], tmp_path: Path, make: Callable[[str], WorkerSettings], **cfg: Any
) -> AsyncIterator[Worker]:
    zhipu, dashscope, openai = sims["zhipu"], sims["dashscope"], sims["openai"]

    def dep(model: str, sim: Any) -> dict[str, Any]:
        return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url}

    config = parse_config(
        {
            "server": {"max_retries": 0, "shutdown_timeout": 5},
            "store": {"url": f"sqlite:///{tmp_path}/usage.db"},
            "usage": {"spill_path": str(tmp_path / "spill.jsonl"), "journal_dir": str(tmp_path / "journal")},
            "models": [
                {"name": "glm", "deployments": [dep("zhipu/glm-4-flash", zhipu)]},
                {"name": "qwen", "deployments": [dep("dashscope/qwen-plus", dashscope)]},
                {"name": "embed", "deployments": [dep("openai/text-embedding-3-small", openai)]},
            ],
            **cfg,
        },
        env={},
    )
    sock = _socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_worker_app(config, make(url), env={})
    server = GatewayServer(serve_config(app, config, log_level="warning", lifespan="on", loop="asyncio", ws="none"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "the worker did not start"
            await asyncio.sleep(0.01)
    records: list[UsageRecord] = []
    assert app.gateway is not None and app.gateway.control.ledger is not None
    ledger = app.gateway.control.ledger
    record = ledger.record

    def capture(r: UsageRecord) -> None:
        records.append(r)
        record(r)

    ledger.record = capture  # type: ignore[method-assign, assignment]
    try:
        yield Worker(app, url, server, records)
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, Any]]:
    async with ZhipuSimulator() as z, DashScopeSimulator() as d, OpenAISimulator() as o:
        yield {"zhipu": z, "dashscope": d, "openai": o}


async def eventually(check: Callable[[], object], seconds: float) -> None:
    """Wait until ``check()`` is true (fails after ``seconds``)."""
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110  (the test doubles record into lists, not events)
            await asyncio.sleep(0.02)


def settings(**kw: Any) -> Callable[[str], WorkerSettings]:
    return lambda url: WorkerSettings(worker_address=url, models=list(MODELS), heartbeat_interval=0.2, **kw)


# -- FastChat worker API ------------------------------------------------------------------------------------------


async def test_fastchat_stream_is_cumulative_nul_delimited_json(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Reply("Hello from GLM", chunk_size=3))
    async with worker(sims, tmp_path, settings()) as w:
        body = {"model": "glm-4-flash", "prompt": CHATML, "temperature": 0.5, "max_new_tokens": 64, "echo": False}
        frames = await w.frames("/worker_generate_stream", body)
    texts = [f["text"] for f in frames]
    assert texts[-1] == "Hello from GLM"
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False)), texts
    assert all(f["error_code"] == 0 for f in frames)
    assert [f["finish_reason"] for f in frames[:-1]] == [None] * (len(frames) - 1)
    assert frames[-1]["finish_reason"] == "stop"
    usage = frames[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    sent = sims["zhipu"].requests[-1].json
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 64
    assert [(r.endpoint, r.model, r.status, r.stream) for r in w.records] == [("fastchat", "glm", 200, True)]


async def test_fastchat_generate_answers_the_last_frame(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["dashscope"].push(Reply("通义千问的回答"))
    async with worker(sims, tmp_path, settings()) as w:
        out = await w.json("/worker_generate", {"model": "qwen-plus", "prompt": "### Human: 你好\n### Assistant:"})
        echoed = await w.json("/worker_generate", {"model": "qwen-plus", "prompt": "plain", "echo": True})
    assert out["text"] == "通义千问的回答" and out["error_code"] == 0 and out["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] > 0
    assert echoed["text"] == "plainYou said: plain"
    assert sims["dashscope"].requests[0].json["input"]["messages"] == [{"role": "user", "content": "你好"}]
    assert {r.endpoint for r in w.records} == {"fastchat"}


async def test_fastchat_small_endpoints(sims: dict[str, Any], tmp_path: Path) -> None:
    async with worker(sims, tmp_path, settings(context_length=4096)) as w:
        status = await w.json("/worker_get_status")
        details = await w.json("/model_details", {"model": "glm-4-flash"})
        conv = await w.json("/worker_get_conv_template", {"model": "glm-4-flash"})
        count = await w.json("/count_token", {"model": "glm-4-flash", "prompt": "hello world " * 40})
        chinese = await w.json("/count_token", {"model": "glm-4-flash", "prompt": "你好世界" * 30})
        emb = await w.json("/worker_get_embeddings", {"model": "text-embedding-3-small", "input": ["a", "bb"]})
        b64 = await w.json(
            "/worker_get_embeddings",
            {"model": "text-embedding-3-small", "input": ["a"], "encoding_format": "base64"},
        )
    assert status == {
        "model_names": ["glm-4-flash", "qwen-plus", "text-embedding-3-small"],
        "speed": 1,
        "queue_length": 0,
    }
    assert details == {"context_length": 4096}
    assert conv["conv"]["sep_style"] == 9 and conv["conv"]["roles"] == ["<|im_start|>user", "<|im_start|>assistant"]
    # token estimates, not characters: 480 ASCII characters are ~120 tokens, 120 Chinese ones ~80
    assert count == {"count": 120, "error_code": 0}
    assert chinese == {"count": 80, "error_code": 0}
    assert len(emb["embedding"]) == 2 and all(isinstance(x, float) for x in emb["embedding"][0])
    assert emb["token_num"] > 0
    raw = base64.b64decode(b64["embedding"][0])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(emb["embedding"][0])


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.http(429, message="slow down"), ErrorCode.RATE_LIMIT),
        (Fault.http(500, message="upstream broke"), ErrorCode.INTERNAL_ERROR),
        (Fault.http(401, message="bad key sk-abcdefgh1234"), ErrorCode.INTERNAL_ERROR),
        (Fault.http(400, message="bad request"), ErrorCode.VALIDATION_TYPE_ERROR),
    ],
)
async def test_fastchat_errors_are_in_band(sims: dict[str, Any], tmp_path: Path, fault: Fault, code: int) -> None:
    async with worker(sims, tmp_path, settings()) as w:
        sims["zhipu"].push(fault)
        status, raw = await w.post("/worker_generate", {"model": "glm-4-flash", "prompt": "hi"})
        sims["zhipu"].push(fault)
        frames = await w.frames("/worker_generate_stream", {"model": "glm-4-flash", "prompt": "hi"})
    assert status == 200 and not raw.endswith(b"\0")
    answer = orjson.loads(raw)
    assert answer["error_code"] == code and answer["text"]
    assert "sk-abcdefgh1234" not in answer["text"]
    assert [f["error_code"] for f in frames] == [code]
    assert {r.status for r in w.records} >= {429} if code == ErrorCode.RATE_LIMIT else True
    assert all(r.endpoint == "fastchat" and r.status != 200 for r in w.records)


async def test_fastchat_unknown_model_and_bad_input(sims: dict[str, Any], tmp_path: Path) -> None:
    async with worker(sims, tmp_path, settings()) as w:
        unknown = await w.json("/worker_generate", {"model": "gpt-5", "prompt": "hi"})
        no_prompt = await w.frames("/worker_generate_stream", {"model": "glm-4-flash"})
        images = await w.json("/worker_generate", {"model": "glm-4-flash", "prompt": "hi", "images": ["x"]})
        not_json = await w.post("/worker_generate", None)
    assert unknown["error_code"] == ErrorCode.INVALID_MODEL and "glm-4-flash" in unknown["text"]
    assert no_prompt == [{"text": no_prompt[0]["text"], "error_code": ErrorCode.PARAM_OUT_OF_RANGE}]
    assert images["error_code"] == ErrorCode.PARAM_OUT_OF_RANGE
    assert not_json[0] == 200 and orjson.loads(not_json[1])["error_code"] == ErrorCode.VALIDATION_TYPE_ERROR


async def test_a_stream_cut_midway_ends_with_an_error_frame(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Fault.cut_stream(after_chunks=2, reply=Reply("one two three four five", chunk_size=4)))
    async with worker(sims, tmp_path, settings()) as w:
        frames = await w.frames("/worker_generate_stream", {"model": "glm-4-flash", "prompt": "hi"})
    assert frames[0]["error_code"] == 0 and frames[0]["text"]
    assert frames[-1]["error_code"] == ErrorCode.INTERNAL_ERROR
    assert w.records[0].endpoint == "fastchat" and w.records[0].estimated


# -- DB-GPT worker API --------------------------------------------------------------------------------------------


async def test_dbgpt_generate_stream_and_generate(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Reply("first answer", chunk_size=5), Reply("second"))
    messages = [
        {"role": "system", "content": "Be brief.", "round_index": 0},
        {"role": "human", "content": "hi", "round_index": 1},
        {"role": "view", "content": "<rendered>", "round_index": 1},
        {"role": "ai", "content": "hello", "round_index": 1},
        {"role": "human", "content": "again", "round_index": 2},
    ]
    body = {"model": "glm-4-flash", "messages": messages, "temperature": 0.3, "max_new_tokens": 100, "echo": True}
    async with worker(sims, tmp_path, settings()) as w:
        frames = await w.frames("/api/worker/generate_stream", body)
        whole = await w.json("/api/worker/generate", body)
    keys = {"text", "error_code", "incremental", "model_context", "finish_reason", "usage", "metrics"}
    assert all(set(f) == keys for f in frames)
    assert frames[-1]["text"] == "first answer" and frames[-1]["finish_reason"] == "stop"
    assert all(f["incremental"] is False and f["error_code"] == 0 for f in frames)
    assert whole["text"] == "second" and whole["usage"]["total_tokens"] > 0
    sent = sims["zhipu"].requests[0].json
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["max_tokens"] == 100
    assert {r.endpoint for r in w.records} == {"dbgpt-worker"}


async def test_dbgpt_reasoning_travels_as_a_thinking_part(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Reply("42", reasoning="let me think"))
    async with worker(sims, tmp_path, settings()) as w:
        frames = await w.frames("/api/worker/generate_stream", {"model": "glm-4-flash", "prompt": "6*7?"})
    assert frames[-1]["content"] == [
        {"type": "thinking", "object": {"data": "let me think", "format": "text"}},
        {"type": "text", "object": {"data": "42", "format": "text"}},
    ]
    assert "text" not in frames[-1]


async def test_dbgpt_other_routes_and_errors(sims: dict[str, Any], tmp_path: Path) -> None:
    async with worker(sims, tmp_path, settings(context_length=8192)) as w:
        vectors = await w.json("/api/worker/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]})
        count = await w.json("/api/worker/count_token", {"prompt": "hello world " * 40})
        meta = await w.json("/api/worker/model_metadata", {"model": "qwen-plus"})
        unknown = await w.json("/api/worker/generate", {"model": "nope", "prompt": "hi"})
        bad_emb = await w.post("/api/worker/embeddings", {"model": "glm-4-flash", "input": ["a"]})
        sims["zhipu"].push(Fault.http(429))
        limited = await w.frames("/api/worker/generate_stream", {"model": "glm-4-flash", "prompt": "hi"})
    assert len(vectors) == 2 and isinstance(vectors[0][0], float)
    assert count == 120
    assert meta["model"] == "qwen-plus" and meta["context_length"] == 8192 and meta["chat_model"] is True
    assert unknown["error_code"] == ErrorCode.INVALID_MODEL and unknown["text"]
    assert bad_emb[0] == 404 and orjson.loads(bad_emb[1])["error"]["code"] == "model_not_found"
    assert [f["error_code"] for f in limited] == [ErrorCode.RATE_LIMIT]


# -- membership, queue length, drain ------------------------------------------------------------------------------


async def test_registration_heartbeats_and_reregistration(sims: dict[str, Any], tmp_path: Path) -> None:
    fc, db = FakeFastChatController(), FakeDbgptController()
    async with serving(fc.app()) as fc_url, serving(db.app()) as db_url:
        make = settings(controller=fc_url, dbgpt_controller=db_url)
        async with worker(sims, tmp_path, make) as w:
            await eventually(lambda: len(fc.beats) >= 2 and len(db.beats) >= 2, 5)
            fc.exist = False  # the controller restarted and forgot the worker
            await eventually(lambda: len(fc.registrations) >= 2, 5)
    first = fc.registrations[0]
    assert first == {
        "worker_name": w.url,
        "check_heart_beat": True,
        "worker_status": {
            "model_names": ["glm-4-flash", "qwen-plus", "text-embedding-3-small"],
            "speed": 1,
            "queue_length": 0,
        },
        "multimodal": False,
    }
    assert fc.beats[0] == {"worker_name": w.url, "queue_length": 0}
    # leaving: registered again with no models (FastChat has no deregistration), DB-GPT instances deleted
    assert fc.registrations[-1]["worker_status"]["model_names"] == []
    port = w.url.rsplit(":", 1)[1]
    keys = {r["model_name"] for r in db.registrations}
    assert keys == {"glm-4-flash@llm", "qwen-plus@llm", "text-embedding-3-small@text2vec"}
    assert all(r["host"] == "127.0.0.1" and r["port"] == int(port) and r["check_healthy"] for r in db.registrations)
    assert {(d["model_name"], d["port"], d["remove_from_registry"]) for d in db.deletions} == {
        (k, port, "true") for k in keys
    }


async def test_a_controller_that_is_down_is_retried_and_logged_once(
    sims: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelway.cluster")
    fc = FakeFastChatController()
    sock = _socket()  # the controller's address, not listening yet
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with worker(sims, tmp_path, settings(controller=url)):
        await asyncio.sleep(1.5)  # several failed tries
        assert fc.registrations == []
        async with serving(fc.app(), sock):
            await eventually(lambda: fc.beats, 5)
    down = [r for r in caplog.records if "retrying until it answers" in r.getMessage()]
    back = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(down) == 1 and len(back) == 1


async def test_queue_length_and_concurrency_limit(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Reply("slow one", chunk_delay=0.3), Reply("slow two", chunk_delay=0.3))
    async with worker(sims, tmp_path, settings(concurrency=1)) as w:
        body = {"model": "glm-4-flash", "prompt": "hi"}
        a = asyncio.create_task(w.frames("/worker_generate_stream", body))
        b = asyncio.create_task(w.frames("/worker_generate_stream", body))
        await asyncio.sleep(0.2)
        status = await w.json("/worker_get_status")
        answers = await asyncio.gather(a, b)
        after = await w.json("/worker_get_status")
    assert status["queue_length"] == 2  # one served, one waiting for the concurrency limit
    assert len(sims["zhipu"].requests) == 2
    assert sorted(x[-1]["text"] for x in answers) == ["slow one", "slow two"]
    assert after["queue_length"] == 0


async def test_draining_refuses_new_work_and_withdraws(sims: dict[str, Any], tmp_path: Path) -> None:
    fc, db = FakeFastChatController(), FakeDbgptController()
    async with (
        serving(fc.app()) as fc_url,
        serving(db.app()) as db_url,
        worker(sims, tmp_path, settings(controller=fc_url, dbgpt_controller=db_url)) as w,
    ):
        await eventually(lambda: fc.beats and db.beats, 5)
        sims["zhipu"].push(Reply("in flight", chunk_delay=0.2))
        body = {"model": "glm-4-flash", "prompt": "hi"}
        in_flight = asyncio.create_task(w.frames("/worker_generate_stream", body))
        await asyncio.sleep(0.1)
        w.app.lifecycle.draining = True  # what the server does on SIGTERM
        await eventually(lambda: db.deletions, 5)
        refused = await w.json("/worker_generate", {"model": "glm-4-flash", "prompt": "hi"})
        refused_db = await w.json("/api/worker/generate", {"model": "glm-4-flash", "prompt": "hi"})
        status = await w.json("/worker_get_status")
        beats = len(fc.beats)
        await asyncio.sleep(0.5)
        assert len(fc.beats) == beats  # heartbeats stopped
        assert (await in_flight)[-1]["text"] == "in flight"
    assert refused["error_code"] == refused_db["error_code"] == ErrorCode.ENGINE_OVERLOADED
    assert status["model_names"] == []
    assert fc.registrations[-1]["worker_status"]["model_names"] == []


async def test_demo_models(tmp_path: Path) -> None:
    config = parse_config({}, env={})
    sock = _socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_worker_app(
        config, WorkerSettings(worker_address=url, models=[ServedModel("glm-4", "demo/glm-4-flash")]), env={}, demo=True
    )
    server = GatewayServer(serve_config(app, config, log_level="warning", lifespan="on", loop="asyncio", ws="none"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, 10)
        async with (
            aiohttp.ClientSession() as s,
            s.post(url + "/worker_generate", json={"model": "glm-4", "prompt": "hi"}) as r,
        ):
            out = await r.json(content_type=None)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()
    assert out["error_code"] == 0 and out["text"] == "You said: hi"


# -- review regressions --------------------------------------------------------------------------------


async def test_queue_length_drops_when_a_client_goes_away_mid_stream(sims: dict[str, Any], tmp_path: Path) -> None:
    sims["zhipu"].push(Reply("a slow answer that takes a while to arrive", chunk_size=2, chunk_delay=0.1))
    async with worker(sims, tmp_path, settings()) as w:
        async with aiohttp.ClientSession() as s:
            body = {"model": "glm-4-flash", "prompt": "hi"}
            async with s.post(w.url + "/worker_generate_stream", json=body) as r:
                await r.content.readuntil(b"\0")  # one frame, then hang up
                assert w.app.queue == 1
        await eventually(lambda: w.app.queue == 0, 5)
        assert (await w.json("/worker_get_status"))["queue_length"] == 0


async def test_a_hanging_controller_does_not_hold_up_serving(
    sims: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the withdrawal at the end hangs too: cut it short (3 s by default; what is checked here is the serving)
    monkeypatch.setattr(worker_module, "LEAVE_TIMEOUT", 0.2)
    calls: list[str] = []

    async def hang(request: web.Request) -> web.Response:
        calls.append(request.path)
        await asyncio.sleep(6)  # past the worker's 5 s call timeout
        return web.json_response(None)

    app = web.Application()
    app.router.add_post("/register_worker", hang)
    app.router.add_post("/receive_heart_beat", hang)
    async with serving(app) as url, worker(sims, tmp_path, settings(controller=url)) as w:
        await eventually(lambda: calls, 5)
        t0 = time.monotonic()
        out = await w.json("/worker_generate", {"model": "glm-4-flash", "prompt": "hi"})
        assert out["error_code"] == 0 and time.monotonic() - t0 < 2
