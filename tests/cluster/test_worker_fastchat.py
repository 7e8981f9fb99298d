"""``modelway worker`` in a real FastChat cluster: fschat 0.2.36's controller and OpenAI API server (subprocesses of
a cached virtualenv, ``fastchat_env.py``), the worker registered behind them over simulated Zhipu and DashScope
models, and the official ``openai`` SDK against FastChat's API server.

Skipped, with the reason, when fschat cannot be installed. Build the virtualenv ahead of time with
``python tests/cluster/fastchat_env.py``.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from fastchat_env import FASTCHAT, VenvError, clean_env

from modelway.testing import DashScopeSimulator, Reply, ZhipuSimulator

#: FastChat's controller drops a worker this many seconds after its last heartbeat (90 by default)
EXPIRATION = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _post(url: str, body: Any = None) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"null")
    except (urllib.error.URLError, OSError):
        return None


def _models(controller: str) -> list[str]:
    answer = _post(controller + "/list_models")
    return list(answer["models"]) if isinstance(answer, dict) else []


@pytest.fixture(scope="module")
def fastchat_python() -> Path:
    try:
        return FASTCHAT.ensure()
    except VenvError as e:
        pytest.skip(f"fschat 0.2.36 could not be installed in a virtualenv of its own: {str(e)[:400]}")


class Procs:
    """Subprocesses of one test, each with its log file; all ended at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def controller(self, python: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
        env = {**clean_env(), "FASTCHAT_CONTROLLER_HEART_BEAT_EXPIRATION": str(EXPIRATION), "LOGDIR": str(self.tmp)}
        cmd = [str(python), "-m", "fastchat.serve.controller", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.start("controller", cmd, env)
        url = f"http://127.0.0.1:{port}"
        _until("FastChat's controller", lambda: proc.poll() is None and _post(url + "/list_models") is not None, 60)
        return proc, url

    def worker(self, name: str, config: Path, controller: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
        cmd = [sys.executable, "-m", "modelway.cli", "worker", "-c", str(config), "--controller", controller,
               "--port", str(port), "--heartbeat-interval", "0.5", "--log-level", "info", *extra]  # fmt: skip
        return self.start(name, cmd, env), f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def procs(tmp: Path) -> Iterator[Procs]:
    p = Procs(tmp)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[ZhipuSimulator, DashScopeSimulator]]:
    with ZhipuSimulator() as zhipu, DashScopeSimulator() as dashscope:
        yield zhipu, dashscope


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, sims: tuple[ZhipuSimulator, DashScopeSimulator]) -> Path:
    zhipu, dashscope = sims
    path = tmp_path_factory.mktemp("worker") / "modelway.yaml"

    def dep(model: str, sim: Any) -> dict[str, Any]:
        return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url}

    path.write_text(
        json.dumps(
            {
                "server": {"max_retries": 0, "shutdown_timeout": 5},
                "models": [
                    {"name": "glm", "deployments": [dep("zhipu/glm-4-flash", zhipu)]},
                    {"name": "qwen", "deployments": [dep("dashscope/qwen-plus", dashscope)]},
                ],
            }
        )
    )
    return path


def test_the_openai_sdk_through_fastchat_reaches_the_simulated_providers(
    fastchat_python: Path, config: Path, sims: tuple[ZhipuSimulator, DashScopeSimulator], tmp_path: Path
) -> None:
    zhipu, dashscope = sims
    with procs(tmp_path) as p:
        _, controller = p.controller(fastchat_python, _free_port())
        api_port = _free_port()
        env = {**clean_env(), "LOGDIR": str(tmp_path)}
        api = p.start(
            "api",
            [str(fastchat_python), "-m", "fastchat.serve.openai_api_server", "--host", "127.0.0.1",
             "--port", str(api_port), "--controller-address", controller],
            env,
        )  # fmt: skip
        p.worker("worker", config, controller, "-m", "glm=glm-4-flash", "-m", "qwen=qwen-plus")
        _until("the worker's models at the controller", lambda: len(_models(controller)) == 2, 60)
        assert sorted(_models(controller)) == ["glm-4-flash", "qwen-plus"]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{api_port}/v1", api_key="none", max_retries=0)
        _until("FastChat's API server", lambda: api.poll() is None and _reachable(api_port), 60)

        zhipu.push(Reply("智谱的回答：你好"))
        messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"}]
        answer = client.chat.completions.create(model="glm-4-flash", messages=messages)
        assert answer.choices[0].message.content == "智谱的回答：你好"
        assert answer.usage is not None and answer.usage.total_tokens > 0
        sent = zhipu.requests[-1].json
        assert sent["model"] == "glm-4-flash"
        assert sent["messages"] == messages  # the roles survived FastChat's prompt template

        dashscope.push(Reply("Qwen streams this answer in pieces", chunk_size=5))
        stream = client.chat.completions.create(model="qwen-plus", messages=messages[1:], stream=True)
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Qwen streams this answer in pieces"
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert dashscope.requests[-1].json["input"]["messages"] == [{"role": "user", "content": "你好"}]

        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="no-such-model", messages=messages)
        assert "no-such-model" in str(bad.value)


def _reachable(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_heartbeats_recover_after_a_controller_restart_and_the_worker_leaves_when_it_stops(
    fastchat_python: Path, config: Path, tmp_path: Path
) -> None:
    with procs(tmp_path) as p:
        port = _free_port()
        controller_proc, controller = p.controller(fastchat_python, port)
        worker, _ = p.worker("worker", config, controller, "-m", "glm=glm-4-flash")
        _until("registration", lambda: _models(controller) == ["glm-4-flash"], 60)

        # the controller restarts with an empty registry: the next heartbeat hears exist: false, and re-registers
        controller_proc.send_signal(signal.SIGKILL)
        controller_proc.wait()
        time.sleep(1.0)  # heartbeats fail meanwhile (logged once)
        p.controller(fastchat_python, port)
        _until("re-registration", lambda: _models(controller) == ["glm-4-flash"], 30)
        log = p.log("worker")
        assert log.count("retrying until it answers") == 1, log
        assert "forgot this worker" in log or "answers again" in log, log

        # SIGTERM: the worker withdraws its models at once, finishes, exits 0
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
        assert _models(controller) == []
        assert "withdrew from the FastChat controller" in p.log("worker")

        # killed outright (no withdrawal): the controller drops it once its heartbeats stop
        killed, _ = p.worker("killed", config, controller, "-m", "qwen=qwen-plus")
        _until("registration", lambda: _models(controller) == ["qwen-plus"], 60)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        _until("expiry at the controller", lambda: _models(controller) == [], 4 * EXPIRATION + 5)
