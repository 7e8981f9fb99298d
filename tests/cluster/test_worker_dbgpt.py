"""``modelway worker --dbgpt-controller`` against DB-GPT 0.8.2's own model controller (its FastAPI router with the
embedded registry, in a cached virtualenv: ``dbgpt_cluster_env.py``), and DB-GPT's own ``RemoteModelWorker`` (the
client its worker manager uses for remote workers) calling the worker's generate stream.

Skipped, with the reason, when ``dbgpt[cli,framework]==0.8.2`` cannot be installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dbgpt_cluster_env import CONTROLLER_SCRIPT, DBGPT
from fastchat_env import VenvError, clean_env

from modelway.testing import OpenAISimulator, Reply, ZhipuSimulator

#: DB-GPT's RemoteModelWorker, as its worker manager drives it: list the healthy instances of glm-4@llm at the
#: controller, then stream from the first one
CLIENT_SCRIPT = """
import asyncio, json, sys
from dbgpt.model.cluster.controller.controller import ModelRegistryClient
from dbgpt.model.cluster.worker.remote_worker import RemoteModelWorker

async def main(controller):
    registry = ModelRegistryClient(controller)
    instances = await registry.get_all_instances("glm-4@llm", healthy_only=True)
    worker = RemoteModelWorker()
    worker.load_worker("glm-4", host=instances[0].host, port=instances[0].port)
    params = {"model": "glm-4", "messages": [{"role": "system", "content": "Be brief."},
              {"role": "human", "content": "hi"}], "temperature": 0.5, "max_new_tokens": 64}
    texts = []
    async for out in worker.async_generate_stream(params):
        texts.append([out.error_code, out.text, out.finish_reason, out.usage])
    whole = await worker.async_generate(params)
    count = await worker.async_count_token("hello world")
    meta = await worker.async_get_model_metadata({"model": "glm-4"})
    vectors = await worker.async_embeddings({"model": "embedding-3", "input": ["a", "b"]})
    print(json.dumps({"stream": texts, "whole": [whole.error_code, whole.text], "count": count,
                      "context_length": meta.context_length, "dims": [len(v) for v in vectors]}))

asyncio.run(main(sys.argv[1]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _instances(controller: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(controller + "/api/controller/models?healthy_only=true", timeout=5) as r:
            return list(json.loads(r.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return []


@pytest.fixture(scope="module")
def dbgpt_python() -> Path:
    try:
        return DBGPT.ensure()
    except VenvError as e:
        pytest.skip(f"dbgpt[cli,framework]==0.8.2 could not be installed in a virtualenv of its own: {str(e)[:400]}")


def test_registers_with_dbgpts_controller_and_streams_to_its_remote_worker_client(
    dbgpt_python: Path, tmp_path: Path
) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    with ZhipuSimulator() as zhipu, OpenAISimulator() as openai_sim:
        config = tmp_path / "modelway.yaml"
        config.write_text(
            json.dumps(
                {
                    "server": {"max_retries": 0, "shutdown_timeout": 5},
                    "models": [
                        {"name": "glm", "deployments": [
                            {"model": "zhipu/glm-4-flash", "api_key": zhipu.api_key, "api_base": zhipu.base_url}]},
                        {"name": "emb", "deployments": [{"model": "openai/text-embedding-3-small",
                            "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}]},
                    ],
                }
            )
        )  # fmt: skip
        try:
            port = _free_port()
            controller = f"http://127.0.0.1:{port}"
            script = tmp_path / "controller.py"
            script.write_text(CONTROLLER_SCRIPT)
            start("controller", [str(dbgpt_python), str(script), str(port)], clean_env())
            _until("DB-GPT's controller", lambda: _instances(controller) == [] and _health(controller), 60)

            worker_port = _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
            worker = start(
                "worker",
                [sys.executable, "-m", "modelway.cli", "worker", "-c", str(config), "--dbgpt-controller", controller,
                 "--port", str(worker_port), "-m", "glm=glm-4", "--embedding-model", "emb=embedding-3",
                 "--heartbeat-interval", "1", "--log-level", "info"],
                env,
            )  # fmt: skip
            _until("registration", lambda: len(_instances(controller)) == 2, 30)
            found = {i["model_name"]: i for i in _instances(controller)}
            assert set(found) == {"glm-4@llm", "embedding-3@text2vec"}
            assert found["glm-4@llm"]["port"] == worker_port and found["glm-4@llm"]["healthy"] is True

            zhipu.push(Reply("DB-GPT hears GLM", chunk_size=4), Reply("again"))
            client = tmp_path / "client.py"
            client.write_text(CLIENT_SCRIPT)
            run = subprocess.run(
                [str(dbgpt_python), str(client), controller],
                capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120, check=False,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr[-3000:]
            out = json.loads(run.stdout.strip().splitlines()[-1])
            stream = out["stream"]
            assert [s[0] for s in stream] == [0] * len(stream) and len(stream) > 2
            assert stream[-1][1] == "DB-GPT hears GLM" and stream[-1][2] == "stop"
            assert stream[-1][3]["total_tokens"] > 0
            assert out["whole"] == [0, "again"]
            assert out["count"] == 3 and out["context_length"] == 32768 and out["dims"][0] > 0
            sent = zhipu.requests[0].json
            assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

            # SIGTERM: deregistered (removed from the registry), exits 0
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
            assert _instances(controller) == []
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=20)


def _health(controller: str) -> bool:
    try:
        with urllib.request.urlopen(controller + "/api/health", timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False
