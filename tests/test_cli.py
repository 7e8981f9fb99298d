from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelway.cli import main
from modelway.testing import Fault, ZhipuSimulator


def test_chat_demo_streams_and_labels_the_simulator() -> None:
    r = CliRunner().invoke(main, ["chat", "--demo", "-m", "zhipu/glm-4-flash", "--usage", "你好"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "You said: 你好\n"
    assert "local ZhipuSimulator, not from zhipu" in r.stderr and "usage: prompt" in r.stderr


def test_chat_against_a_provider_from_env_with_system_and_no_stream() -> None:
    with ZhipuSimulator() as sim:
        env = {"ZHIPUAI_API_KEY": sim.api_key, "ZHIPUAI_BASE_URL": sim.base_url}
        r = CliRunner(env=env).invoke(
            main,
            [
                "chat",
                "-m",
                "zhipu/glm-4-flash",
                "-s",
                "be brief",
                "-t",
                "0",
                "--max-tokens",
                "9",
                "--no-stream",
                "hello",
            ],
        )
        body = sim.requests[-1].json
    assert r.exit_code == 0, r.output
    assert r.stdout == "You said: hello\n"
    assert body["messages"][0] == {"role": "system", "content": "be brief"} and body["max_tokens"] == 9
    assert body["do_sample"] is False


def test_chat_reads_prompt_from_stdin() -> None:
    r = CliRunner().invoke(main, ["chat", "--demo", "-m", "openai/gpt-4o-mini"], input="from stdin\n")
    assert r.exit_code == 0 and r.stdout == "You said: from stdin\n"


def test_chat_errors_are_clear_and_exit_non_zero() -> None:
    with ZhipuSimulator() as sim:
        sim.push(Fault.http(401))
        env = {"ZHIPUAI_API_KEY": sim.api_key, "ZHIPUAI_BASE_URL": sim.base_url}
        r = CliRunner(env=env).invoke(main, ["chat", "-m", "zhipu/glm-4-flash", "hi"])
    assert r.exit_code == 1 and r.stderr.startswith("error: [zhipu 401")
    r = CliRunner(env={"ZHIPUAI_API_KEY": ""}).invoke(main, ["chat", "-m", "zhipu/glm-4-flash", "hi"])
    assert r.exit_code == 1 and "ZHIPUAI_API_KEY" in r.stderr
    r = CliRunner().invoke(main, ["chat", "-m", "glm-4", "hi"])
    assert r.exit_code == 1 and "provider/model" in r.stderr


def test_providers_lists_credentials() -> None:
    r = CliRunner(env={"ZHIPUAI_API_KEY": "a.b", "DASHSCOPE_API_KEY": ""}).invoke(main, ["providers"])
    assert r.exit_code == 0
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert "key found (ZHIPUAI_API_KEY)" in lines["zhipu"]
    assert "no key: set DASHSCOPE_API_KEY" in lines["dashscope"]
    assert "no key needed" in lines["ollama"]


def test_models_lists_what_the_environment_enables() -> None:
    r = CliRunner(env={"ZHIPUAI_API_KEY": "a.b", "DASHSCOPE_API_KEY": "", "OPENAI_API_KEY": ""}).invoke(
        main, ["models"]
    )
    assert r.exit_code == 0
    ids = r.stdout.split()
    assert "zhipu/glm-4-flash" in ids and not any(i.startswith("dashscope/") for i in ids)


def test_models_of_a_gateway() -> None:
    from modelway.testing import OpenAISimulator

    with OpenAISimulator(models=["m1", "m2"]) as sim:
        r = CliRunner().invoke(main, ["models", "--base-url", sim.base_url, "--api-key", sim.api_key])
    assert r.exit_code == 0 and r.stdout.split() == ["m1", "m2"]


def test_serve_refuses_an_invalid_config_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models:\n  - name: x\n    deployments:\n      - model: zhipu/glm-4\n        weight: -1\n")
    r = CliRunner().invoke(main, ["serve", "-c", str(cfg)])
    assert r.exit_code == 2 and "models[0].deployments[0].weight: must be a positive number" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_demo_process_answers_a_stream() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelway.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/health/readiness", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "modelway serve did not become ready"
            time.sleep(0.05)
        body = {"model": "demo/glm-4-flash", "stream": True, "messages": [{"role": "user", "content": "你好"}]}
        req = urllib.request.Request(
            url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert raw.endswith(b"data: [DONE]\n\n") and "你好".encode() in raw
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells how it ended
    assert proc.returncode in (0, -15) and b"Application shutdown complete" in err, err.decode()
    assert b"[demo]" in err


@pytest.mark.parametrize("args", [["--help"], ["chat", "--help"], ["serve", "--help"]])
def test_help_explains(args: list[str]) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0
    assert "provider/model" in r.stdout or "Examples" in r.stdout


def test_serve_warns_that_workers_without_a_store_do_not_share_responses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelway.server.runner as runner

    started: list[object] = []
    monkeypatch.setattr(runner, "run", started.append)
    for name in ("MODELWAY_CONFIG", "MODELWAY_DEMO"):  # serve sets them for its workers: restored after the test
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("MODELWAY_METRICS_DIR", str(tmp_path / "metrics"))
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("server:\n  port: 4000\n")
    r = CliRunner().invoke(main, ["serve", "-c", str(cfg), "--workers", "2"])
    assert r.exit_code == 0 and len(started) == 1
    assert "previous_response_id" in r.stderr and "store.url" in r.stderr
    r = CliRunner().invoke(main, ["serve", "-c", str(cfg)])
    assert "previous_response_id" not in r.stderr
