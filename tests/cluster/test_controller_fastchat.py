"""``modelway serve`` as the controller of a real FastChat model worker (``fschat`` 0.2.36 from PyPI).

The worker (``fastchat_worker_proc.py``, a ``BaseModelWorker`` subclass answering canned text) runs in FastChat's
own virtualenv (``fastchat_env.py``; skipped, saying why, when it cannot be installed). It registers with the
gateway under the secret path prefix, is reached with the official openai SDK through ``/v1/chat/completions``
(stream and not), shows in ``/admin/deployments`` and ``/metrics``, and leaves rotation once killed (the
heartbeat expiration is shortened to 3 s). A worker given the controller address without the prefix is refused,
and so is a registration from outside ``cluster.allowed_networks``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from fastchat_env import FASTCHAT, VenvError, clean_env

MASTER = "sk-cluster-test"
PREFIX = "/cluster-s3cret"
MODEL = "canned-vicuna"
CANNED = "Hello from a FastChat worker, in five pieces."
EXPIRATION = 3.0
HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(what: str, check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:  # not listening yet
        return 0, b""


def _post(url: str, body: object) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.fixture(scope="module")
def fastchat_python() -> Path:
    try:
        return FASTCHAT.ensure()
    except VenvError as e:
        pytest.skip(f"fschat 0.2.36 could not be installed in a virtualenv of its own: {str(e)[:400]}")


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    tmp: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("controller")
    cfg = tmp / "gw.yaml"
    cfg.write_text(
        json.dumps(
            {
                "server": {"master_key": MASTER},
                "cluster": {"controller": True, "path_prefix": PREFIX, "heartbeat_expiration": EXPIRATION},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWAY_", "PROMETHEUS_"))}
    port = _free_port()
    with open(tmp / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelway.cli", "serve", "-c", str(cfg), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _until("modelway serve", lambda: proc.poll() is None and _get(url + "/health/readiness")[0] == 200, 30)
        yield Served(url, proc, tmp)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _start_worker(python: Path, controller: str, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    port = _free_port()
    log = tmp / f"{name}-params.jsonl"
    env = {**clean_env(), "FASTCHAT_WORKER_HEART_BEAT_INTERVAL": "1", "LOGDIR": str(tmp)}
    with open(tmp / f"{name}.log", "wb") as stderr:
        proc = subprocess.Popen(
            [str(python), str(HERE / "fastchat_worker_proc.py"), "--controller-address", controller,
             "--worker-address", f"http://127.0.0.1:{port}", "--port", str(port), "--model-names", MODEL,
             "--conv-template", "vicuna_v1.1", "--params-log", str(log)],
            env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    return proc, log


def _models(client: openai.OpenAI) -> list[str]:
    return [m.id for m in client.models.list().data]


def test_a_fastchat_worker_serves_through_the_gateway_and_leaves_when_killed(
    fastchat_python: Path, served: Served
) -> None:
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=MASTER, max_retries=0)
    worker, params_log = _start_worker(fastchat_python, served.url + PREFIX, served.tmp, "good")
    try:
        _until("the worker in /v1/models", lambda: MODEL in _models(client), 60)

        resp = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
            max_tokens=50,
        )
        assert resp.choices[0].message.content == CANNED
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None and resp.usage.completion_tokens == 8

        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, usage = [], None, None
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        assert "".join(pieces) == CANNED
        assert len([p for p in pieces if p]) > 1, "the cumulative text came as one piece"
        assert finish == "stop" and usage is not None and usage.completion_tokens == 8

        # what the worker received: the prompt rendered with its vicuna_v1.1 template, FastChat's parameters
        sent = [json.loads(line) for line in params_log.read_text().splitlines()]
        assert sent[0]["prompt"] == "Be brief. USER: Say hello ASSISTANT:"
        assert sent[0]["max_new_tokens"] == 50 and sent[0]["echo"] is False and sent[0]["model"] == MODEL
        assert sent[1]["prompt"].endswith(" USER: Say hello ASSISTANT:")
        assert sent[1]["prompt"].startswith("A chat between a curious user and an artificial intelligence")

        with pytest.raises(openai.APIStatusError) as failed:  # INTERNAL_ERROR 50001 → a typed upstream error
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "TRIGGER-ERROR-50001"}])
        assert failed.value.status_code == 502

        status, body = _get(served.url + "/admin/deployments", MASTER)
        assert status == 200
        (dep,) = [d for d in json.loads(body)["data"] if d["model"] == MODEL]
        assert dep["source"] == "fastchat" and dep["provider"] == "fastchat-worker"
        assert dep["address"].startswith("http://127.0.0.1:") and time.time() - dep["last_heartbeat"] < 10
        assert _get(served.url + "/admin/deployments")[0] == 401
        metrics = _get(served.url + "/metrics")[1].decode()
        assert f'modelway_cluster_workers{{model="{MODEL}"}} 1.0' in metrics
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

    started = time.monotonic()
    _until("the killed worker to leave /v1/models", lambda: MODEL not in _models(client), EXPIRATION + 10)
    assert time.monotonic() - started < EXPIRATION + 5
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_a_worker_without_the_path_prefix_is_refused(fastchat_python: Path, served: Served) -> None:
    worker, _ = _start_worker(fastchat_python, served.url, served.tmp, "no-prefix")
    try:
        code = worker.wait(timeout=60)  # FastChat asserts its registration answered 200: it exits
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code != 0
    assert "AssertionError" in (served.tmp / "no-prefix.log").read_text()
    assert _post(served.url + "/register_worker", {"worker_name": "http://127.0.0.1:1"}) == 404
    status, body = _get(served.url + "/admin/deployments", MASTER)
    assert status == 200 and json.loads(body)["data"] == []
