from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from modelway.cli import main
from modelway.testing import Fault, OpenAISimulator, ZhipuSimulator


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


def test_chat_demo_takes_the_demo_names_serve_demo_serves() -> None:
    r = CliRunner().invoke(main, ["chat", "--demo", "-m", "demo/qwen-plus", "--no-stream", "你好"])
    assert r.exit_code == 0 and r.stdout == "You said: 你好\n", r.output
    assert "local DashScopeSimulator, not from dashscope" in r.stderr
    r = CliRunner().invoke(main, ["chat", "--demo", "-m", "demo/claude-haiku-4-5", "hi"])
    assert r.exit_code == 0 and r.stdout == "You said: hi\n"
    r = CliRunner().invoke(main, ["chat", "--demo", "-m", "demo/nope", "hi"])
    assert r.exit_code == 2 and "demo/glm-4-flash" in r.stderr
    r = CliRunner(env={"MODELWAY_BASE_URL": ""}).invoke(main, ["chat", "-m", "demo/glm-4-flash", "hi"])
    assert r.exit_code == 2 and "add --demo" in r.stderr


def test_chat_through_a_gateway_without_a_key() -> None:
    """A gateway without a master key needs no key: none is sent (OPENAI_API_KEY is not asked for)."""
    with OpenAISimulator(check_auth=False) as sim:
        env = {"MODELWAY_API_KEY": "", "OPENAI_API_KEY": ""}
        r = CliRunner(env=env).invoke(main, ["chat", "--base-url", sim.base_url, "-m", "demo/glm-4-flash", "hi"])
        assert r.exit_code == 0 and r.stdout == "You said: hi\n", r.output
        assert "authorization" not in sim.last_request.headers
        env = {"MODELWAY_API_KEY": "mw-from-env"}
        r = CliRunner(env=env).invoke(main, ["chat", "--base-url", sim.base_url, "-m", "m", "--no-stream", "hi"])
        assert r.exit_code == 0 and sim.last_request.headers["authorization"] == "Bearer mw-from-env"
    with OpenAISimulator() as sim:  # a gateway that wants a key says how to give one
        r = CliRunner(env={"MODELWAY_API_KEY": ""}).invoke(main, ["chat", "--base-url", sim.base_url, "-m", "m", "x"])
    assert r.exit_code == 1 and "--api-key or MODELWAY_API_KEY" in r.stderr


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


def table(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines()]


def test_models_lists_what_the_environment_enables() -> None:
    r = CliRunner(env={"ZHIPUAI_API_KEY": "a.b", "DASHSCOPE_API_KEY": "", "OPENAI_API_KEY": ""}).invoke(
        main, ["models"]
    )
    assert r.exit_code == 0
    rows = table(r.stdout)
    assert rows[0] == ["name", "provider", "kind"]
    assert ["zhipu/glm-4-flash", "zhipu", "chat"] in rows and ["zhipu/embedding-3", "zhipu", "embedding"] in rows
    assert not any(row[0].startswith(("dashscope/", "demo/")) for row in rows)
    names = CliRunner(env={"ZHIPUAI_API_KEY": "a.b"}).invoke(main, ["models", "-q"]).stdout.split()
    assert "zhipu/glm-4-flash" in names and "name" not in names


def test_models_demo_and_none() -> None:
    keyless = {k: "" for k in ("ZHIPUAI_API_KEY", "DASHSCOPE_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY")}
    with_demo = table(CliRunner(env=keyless).invoke(main, ["models", "--demo"]).stdout)
    assert ["demo/glm-4-flash", "demo", "chat"] in with_demo and ["demo/gte-rerank-v2", "demo", "rerank"] in with_demo
    r = CliRunner(env={k: "" for k in os.environ if k.endswith("_API_KEY")}).invoke(main, ["models"])
    assert r.exit_code == 0 and r.stdout == "" and "--demo" in r.stderr


def test_models_of_a_gateway() -> None:
    with OpenAISimulator(models=["m1", "text-embedding-v3"]) as sim:
        r = CliRunner().invoke(main, ["models", "--base-url", sim.base_url, "--api-key", sim.api_key])
        quiet = CliRunner().invoke(main, ["models", "-q", "--base-url", sim.base_url, "--api-key", sim.api_key])
    assert r.exit_code == 0 and table(r.stdout)[1:] == [
        ["m1", "openai", "chat"],
        ["text-embedding-v3", "openai", "embedding"],
    ]
    assert quiet.stdout.split() == ["m1", "text-embedding-v3"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shells_script(shell: str) -> None:
    r = CliRunner().invoke(main, ["completion", shell])
    assert r.exit_code == 0 and "_MODELWAY_COMPLETE" in r.stdout and f"{shell}_complete" in r.stdout


def test_completion_completes_commands_and_models() -> None:
    def complete(words: str) -> list[str]:
        env = {"_MODELWAY_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        r = CliRunner(env=env).invoke(main, [], prog_name="modelway")
        return [line.split(",", 1)[1] for line in r.stdout.splitlines()]

    assert {"chat", "check", "completion"} <= set(complete("modelway c"))
    assert complete("modelway chat -m demo/gl") == ["demo/glm-4-flash"]
    r = CliRunner().invoke(main, ["completion", "--help"])
    assert "~/.bashrc" in r.stdout and "fish/completions" in r.stdout and "zshrc" in r.stdout


def test_serve_refuses_an_invalid_config_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models:\n  - name: x\n    deployments:\n      - model: zhipu/glm-4\n        weight: -1\n")
    r = CliRunner().invoke(main, ["serve", "-c", str(cfg)])
    assert r.exit_code == 2 and "models[0].deployments[0].weight: must be a positive number" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``modelway serve ARGS`` in a process, once it is ready."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWAY_") and not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelway.cli", "serve", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/health/readiness", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"modelway serve did not become ready: {proc.communicate()[1].decode()}")
        time.sleep(0.05)


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells how it ended
    assert proc.returncode in (0, -15) and b"Application shutdown complete" in err, err.decode()
    return err


def test_serve_demo_process_answers_a_stream() -> None:
    proc, url = _serving("--demo")
    try:
        body = {"model": "demo/glm-4-flash", "stream": True, "messages": [{"role": "user", "content": "你好"}]}
        status, headers, raw = _post(url + "/v1/chat/completions", body)
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        assert raw.endswith(b"data: [DONE]\n\n") and "你好".encode() in raw
    finally:
        err = _stop(proc)
    assert b"[demo]" in err


def test_serve_starts_the_simulators_of_a_configs_demo_deployments(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(
        "models:\n"
        "  - name: chat\n"
        "    routing: {strategy: priority}\n"
        "    deployments:\n"
        "      - {model: demo/glm-4-flash, tier: 0, options: {fail_every: 1}}\n"
        "      - {model: demo/qwen-plus, tier: 1}\n"
        "  - name: nokey\n"
        "    deployments: [zhipu/glm-4-flash]\n"
    )
    proc, url = _serving("-c", str(cfg))
    try:
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        status, headers, raw = _post(url + "/v1/chat/completions", body)
        assert status == 200 and b"You said: hi" in raw, raw
        # the failing one (retried in place once: server.max_retries), then the other
        assert headers["x-modelway-deployment"] == "demo/qwen-plus" and headers["x-modelway-attempts"] == "3"
        status, _, raw = _post(url + "/v1/chat/completions", {**body, "model": "nokey"})
        assert status == 503 and json.loads(raw)["error"]["code"] == "deployment_unavailable"
    finally:
        err = _stop(proc)
    assert b"deployment zhipu/glm-4-flash cannot work and is skipped" in err and b"ZHIPUAI_API_KEY" in err


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, cmd in sorted(group.commands.items()):
        out += _commands(cmd, (*path, name)) if isinstance(cmd, click.Group) else [(*path, name)]
    return out


@pytest.mark.parametrize("path", _commands(main), ids=lambda p: " ".join(p) or "modelway")
def test_help_explains_with_an_example(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0
    assert "Example:" in r.stdout or "Examples:" in r.stdout, r.stdout
    assert "modelway " + " ".join(path) in r.stdout.split("Example", 1)[1]


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
